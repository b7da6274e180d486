// Errors at the JS <-> native boundary: TypeError for a wrong kind of value, RangeError for a wrong
// size or value, each with a stable `code` callers can branch on. Messages name the argument, what
// was expected and what was received.

export type CodedError = (TypeError | RangeError | Error) & { code: string };

export function typeError(code: string, message: string): CodedError {
  return Object.assign(new TypeError(message), { code });
}

export function rangeError(code: string, message: string): CodedError {
  return Object.assign(new RangeError(message), { code });
}

export function codedError(code: string, message: string, cause?: unknown): CodedError {
  return Object.assign(new Error(message, cause === undefined ? undefined : { cause }), { code });
}

/** A short description of a received value for error messages: "Float64Array(960)", "string \"x\"". */
export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'undefined';
  if (ArrayBuffer.isView(value)) {
    const name = value.constructor?.name ?? 'ArrayBufferView';
    const length = 'length' in value ? (value as { length: number }).length : value.byteLength;
    return `${name}(${length})`;
  }
  switch (typeof value) {
    case 'string': return `string ${JSON.stringify(value.length > 40 ? value.slice(0, 40) + '…' : value)}`;
    case 'number': return `number ${value}`;
    case 'bigint': return `bigint ${value}n`;
    case 'boolean': return `boolean ${value}`;
    case 'function': return 'function';
    default: return Array.isArray(value) ? `array(${value.length})` : (value as object).constructor?.name ?? 'object';
  }
}

type TypedArrayCtor<T> = { new (length: number): T; readonly name: string; prototype: T };

export function expectTypedArray<T extends ArrayBufferView>(
  name: string,
  value: unknown,
  ctor: TypedArrayCtor<T>,
  alsoAccept?: string,
): T {
  if (!(value instanceof (ctor as unknown as abstract new (...a: never[]) => unknown))) {
    throw typeError('ERR_INVALID_ARG_TYPE', `${name}: expected ${ctor.name}${alsoAccept ? ` ${alsoAccept}` : ''}, got ${describe(value)}`);
  }
  return value as T;
}

export function expectBytes(name: string, value: unknown, exactLength?: number): Uint8Array {
  const bytes = expectTypedArray(name, value, Uint8Array, '(or Buffer)');
  if (exactLength !== undefined && bytes.length !== exactLength) {
    throw rangeError('ERR_OUT_OF_RANGE', `${name}: expected ${exactLength} bytes, got ${bytes.length}`);
  }
  return bytes;
}

export function expectInteger(name: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number') {
    throw typeError('ERR_INVALID_ARG_TYPE', `${name}: expected an integer in [${min}, ${max}], got ${describe(value)}`);
  }
  if (!Number.isInteger(value) || value < min || value > max) {
    throw rangeError('ERR_OUT_OF_RANGE', `${name}: expected an integer in [${min}, ${max}], got ${value}`);
  }
  return value;
}

export function expectBoolean(name: string, value: unknown): boolean {
  if (typeof value !== 'boolean') throw typeError('ERR_INVALID_ARG_TYPE', `${name}: expected a boolean, got ${describe(value)}`);
  return value;
}

export function expectOneOf<T extends string>(name: string, value: unknown, allowed: readonly T[]): T {
  if (typeof value !== 'string' || !(allowed as readonly string[]).includes(value)) {
    const list = allowed.map((a) => `'${a}'`).join(', ');
    if (typeof value !== 'string') throw typeError('ERR_INVALID_ARG_TYPE', `${name}: expected one of ${list}, got ${describe(value)}`);
    throw rangeError('ERR_OUT_OF_RANGE', `${name}: expected one of ${list}, got '${value}'`);
  }
  return value as T;
}

export function expectOptions(name: string, value: unknown): Record<string, unknown> {
  if (value === null || typeof value !== 'object' || Array.isArray(value) || ArrayBuffer.isView(value) ||
      value instanceof ArrayBuffer || value instanceof SharedArrayBuffer) {
    throw typeError('ERR_INVALID_ARG_TYPE', `${name}: expected an options object, got ${describe(value)}`);
  }
  return value as Record<string, unknown>;
}

/** Rejects option keys the API does not know, so a typo ("bitRate") is not silently ignored. */
export function rejectUnknownKeys(name: string, options: Record<string, unknown>, known: readonly string[]): void {
  for (const key of Object.keys(options)) {
    if (!known.includes(key)) {
      throw rangeError('ERR_UNKNOWN_OPTION', `${name}: unknown option '${key}' (known: ${known.join(', ')})`);
    }
  }
}

export function sharesMemory(a: ArrayBufferView, b: ArrayBufferView): boolean {
  if (a.buffer !== b.buffer) return false;
  return a.byteOffset < b.byteOffset + b.byteLength && b.byteOffset < a.byteOffset + a.byteLength;
}
