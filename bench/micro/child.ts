// One stage's benchmark, in its own process: `node --expose-gc dist/bench/micro/child.js '<ChildRequest JSON>'`.
// Started by bench/main.ts with an IPC channel; sends one ChildResult (or ChildFailure) and exits.
// Nothing here writes to stdout, so a baseline that logs cannot corrupt the result.
import { measure } from './harness.js';
import type { ChildFailure, ChildRequest, ChildResult } from './protocol.js';
import { setupStage } from './variants.js';

function send(message: ChildResult | ChildFailure): Promise<void> {
  return new Promise((resolve) => {
    if (!process.send) {
      // Run by hand: print instead.
      process.stderr.write(JSON.stringify(message, null, 2) + '\n');
      resolve();
      return;
    }
    process.send(message, undefined, {}, () => resolve());
  });
}

async function main(): Promise<number> {
  const req = JSON.parse(process.argv[2] ?? '') as ChildRequest;
  const started = performance.now();
  try {
    const setup = await setupStage(req.stage);
    const variants = measure(setup.variants, req.settings);
    const warnings = [...setup.warnings];
    if (typeof (globalThis as { gc?: unknown }).gc !== 'function') {
      warnings.push('run without --expose-gc: garbage of one variant may be collected in another one\'s block');
    }
    await send({ stage: req.stage, run: req.run, variants, facts: setup.facts, warnings, elapsedMs: performance.now() - started });
    return 0;
  } catch (err) {
    const e = err as Error & { code?: string };
    await send({ stage: req.stage, run: req.run, error: `${e.code ? `[${e.code}] ` : ''}${e.stack ?? e.message ?? String(err)}` });
    return 1;
  }
}

// Exit explicitly: some baselines (LiveKit's FFI runtime) keep handles that would hold the process.
main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`bench child: ${String(err)}\n`);
    process.exit(1);
  },
);
