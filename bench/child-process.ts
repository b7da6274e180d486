// The scaffolding of a benchmark child process (bench/micro/child.ts, bench/pipeline/child.ts):
// one measurement per process, its request as JSON in argv[2], one result (or failure) sent back
// over the IPC channel the parent opened, then an explicit exit. Nothing here writes to stdout, so
// a baseline that logs cannot corrupt the result.

/** Sends `message` to the parent (or prints it to stderr when run by hand) and waits until it is out. */
export function sendToParent(message: unknown): Promise<void> {
  return new Promise((resolve) => {
    if (!process.send) {
      process.stderr.write(JSON.stringify(message, null, 2) + '\n');
      resolve();
      return;
    }
    process.send(message, undefined, {}, () => resolve());
  });
}

/** `[code] stack` of a thrown value, for a failure message. */
export function describeError(err: unknown): string {
  const e = err as Error & { code?: string };
  return `${e.code ? `[${e.code}] ` : ''}${e.stack ?? e.message ?? String(err)}`;
}

/**
 * Runs `main` with the parsed request and exits with its code. The exit is explicit: some
 * baselines (LiveKit's FFI runtime, worker threads) keep handles that would hold the process.
 */
export function runChild<Req>(name: string, main: (req: Req) => Promise<number>): void {
  Promise.resolve()
    .then(() => main(JSON.parse(process.argv[2] ?? '') as Req))
    .then(
      (code) => process.exit(code),
      (err: unknown) => {
        process.stderr.write(`${name}: ${String(err)}\n`);
        process.exit(1);
      },
    );
}
