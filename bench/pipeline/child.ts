// One measurement in its own process: `node dist/bench/pipeline/child.js '<ChildRequest JSON>'`.
// Started by bench/pipeline/main.ts with an IPC channel; sends one result (or failure) and exits.
// Nothing here writes to stdout.
import { describeError, runChild, sendToParent } from '../child-process.js';
import type { ChildFailure, ChildRequest, ChildResult } from './protocol.js';

async function run(req: ChildRequest): Promise<ChildResult> {
  switch (req.kind) {
    case 'load': {
      const { runLoad } = await import('./load.js');
      const { baselineTarget, generatorTarget, oursTarget } = await import('./targets.js');
      const target = req.design === 'ours' ? oursTarget(req) : req.design === 'generator' ? generatorTarget(req) : await baselineTarget(req);
      return runLoad(req, target);  // not closed: the process exits right after sending the result
    }
    case 'tight': {
      const { runTight } = await import('./tight.js');
      return runTight(req);
    }
    case 'quality': {
      const { runQuality } = await import('./quality.js');
      return runQuality(req);
    }
  }
}

runChild<ChildRequest>('bench pipeline child', async (req) => {
  try {
    await sendToParent(await run(req) satisfies ChildResult);
    return 0;
  } catch (err) {
    await sendToParent({ kind: 'error', error: describeError(err) } satisfies ChildFailure);
    return 1;
  }
});
