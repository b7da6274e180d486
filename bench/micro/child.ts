// One stage's benchmark, in its own process: `node --expose-gc dist/bench/micro/child.js '<ChildRequest JSON>'`.
// Started by bench/main.ts with an IPC channel; sends one ChildResult (or ChildFailure) and exits.
// Nothing here writes to stdout, so a baseline that logs cannot corrupt the result.
import { describeError, runChild, sendToParent } from '../child-process.js';
import { measure } from './harness.js';
import type { ChildFailure, ChildRequest, ChildResult } from './protocol.js';
import { setupStage } from './variants.js';

runChild<ChildRequest>('bench child', async (req) => {
  const started = performance.now();
  try {
    const setup = await setupStage(req.stage);
    const variants = measure(setup.variants, req.settings);
    const warnings = [...setup.warnings];
    if (typeof (globalThis as { gc?: unknown }).gc !== 'function') {
      warnings.push('run without --expose-gc: garbage of one variant may be collected in another one\'s block');
    }
    await sendToParent({ stage: req.stage, run: req.run, variants, missingBaselines: setup.missingBaselines, facts: setup.facts, warnings, elapsedMs: performance.now() - started } satisfies ChildResult);
    return 0;
  } catch (err) {
    await sendToParent({ stage: req.stage, run: req.run, error: describeError(err) } satisfies ChildFailure);
    return 1;
  }
});
