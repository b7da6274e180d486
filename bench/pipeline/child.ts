// One measurement in its own process: `node dist/bench/pipeline/child.js '<ChildRequest JSON>'`.
// Started by bench/pipeline/main.ts with an IPC channel; sends one result (or failure) and exits.
// Nothing here writes to stdout.
import type { ChildFailure, ChildRequest, ChildResult } from './protocol.js';

function send(message: ChildResult | ChildFailure): Promise<void> {
  return new Promise((resolve) => {
    if (!process.send) {
      process.stderr.write(JSON.stringify(message, null, 2) + '\n');
      resolve();
      return;
    }
    process.send(message, undefined, {}, () => resolve());
  });
}

async function run(req: ChildRequest): Promise<ChildResult> {
  switch (req.kind) {
    case 'load': {
      const { runLoad } = await import('./load.js');
      const { baselineTarget, oursTarget } = await import('./targets.js');
      const target = req.design === 'ours' ? oursTarget(req) : await baselineTarget(req);
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

async function main(): Promise<number> {
  try {
    const req = JSON.parse(process.argv[2] ?? '') as ChildRequest;
    await send(await run(req));
    return 0;
  } catch (err) {
    const e = err as Error & { code?: string };
    await send({ kind: 'error', error: `${e.code ? `[${e.code}] ` : ''}${e.stack ?? e.message ?? String(err)}` });
    return 1;
  }
}

// Exit explicitly: LiveKit's FFI runtime and worker threads keep handles that would hold the process.
main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`bench pipeline child: ${String(err)}\n`);
    process.exit(1);
  },
);
