// Assertions for the coded errors of the native layer: the constructor (TypeError / RangeError),
// the stable `code`, and optionally words the message must contain (the argument's name).
import { expect } from 'vitest';

type ErrorCtor = typeof TypeError | typeof RangeError | typeof Error;

export function thrown(fn: () => unknown): unknown {
  let result: unknown;
  try {
    result = fn();
  } catch (err) {
    return err;
  }
  const shown = ArrayBuffer.isView(result) ? `${result.constructor.name}(${result.byteLength} bytes)` : typeof result === 'object' && result !== null ? result.constructor?.name ?? 'object' : String(result);
  throw new Error(`expected the call to throw, but it returned normally (${shown})`);
}

/**
 * Runs fn, requires it to throw an instance of `kind` whose `code` is `code` and whose message
 * contains every string in `mentions`. Returns the error for further checks.
 */
export function expectCoded(
  fn: () => unknown,
  kind: ErrorCtor,
  code: string,
  ...mentions: string[]
): Error & { code: string } {
  const err = thrown(fn) as Error & { code?: unknown };
  expect(err, `threw ${String(err)}`).toBeInstanceOf(kind);
  // A TypeError is not a RangeError and vice versa: the constructor must be exactly the one asked for.
  if (kind !== Error) expect(err.constructor, `threw ${err.constructor?.name}: ${err.message}`).toBe(kind);
  expect(err.code, `code of "${err.message}"`).toBe(code);
  for (const m of mentions) expect(err.message, `message should name ${m}`).toContain(m);
  return err as Error & { code: string };
}
