// Deterministic control of the libuv threadpool for scheduler tests.
//
// occupyThreadpool(): every threadpool thread blocks in open(2) on a named pipe (fs.open of a FIFO
// for reading waits for a writer), so threadpool work queued afterwards (the pipeline's tasks)
// cannot start until release() opens the write ends. libuv runs queued work FIFO, so anything
// queued after the blockers waits for them. Used to make "everything pushed before any worker
// runs" exact instead of racing the workers.
//
// cpuLoad(): real CPU work on the threadpool (pbkdf2), competing with the pipeline's tasks.
import { execFileSync } from 'node:child_process';
import { pbkdf2 } from 'node:crypto';
import { closeSync, mkdtempSync, open, openSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export function threadpoolSize(): number {
  const n = Number.parseInt(process.env.UV_THREADPOOL_SIZE ?? '', 10);
  return Number.isFinite(n) && n > 0 ? Math.min(n, 1024) : 4;
}

export interface ThreadpoolGate {
  /** Unblocks every blocked thread; resolves once their open() calls returned. */
  release(): Promise<void>;
}

export function occupyThreadpool(threads = threadpoolSize()): ThreadpoolGate {
  const dir = mkdtempSync(join(tmpdir(), 'xz-gate-'));
  const fifos: string[] = [];
  const opened: Promise<number>[] = [];
  for (let i = 0; i < threads; i++) {
    const path = join(dir, `fifo-${i}`);
    execFileSync('mkfifo', [path]);
    fifos.push(path);
    opened.push(new Promise((resolve, reject) => open(path, 'r', (err, fd) => (err ? reject(err) : resolve(fd)))));
  }
  let released = false;
  return {
    async release() {
      if (released) return;
      released = true;
      // The reader is already waiting in open(2), so opening the write end returns at once.
      const writers = fifos.map((p) => openSync(p, 'w'));
      const readers = await Promise.all(opened);
      for (const fd of [...writers, ...readers]) closeSync(fd);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * Keeps `concurrency` pbkdf2 jobs of about `iterations` rounds running on the threadpool until
 * stop() is called. Returns how many jobs completed.
 */
export function cpuLoad(concurrency: number, iterations = 20_000): { stop(): Promise<number> } {
  let running = true;
  let done = 0;
  const inflight = new Set<Promise<void>>();
  const spawn = (): void => {
    const p: Promise<void> = new Promise((resolve) => {
      pbkdf2('password', 'salt', iterations, 32, 'sha256', () => {
        done++;
        inflight.delete(p);
        resolve();
        if (running) spawn();
      });
    });
    inflight.add(p);
  };
  for (let i = 0; i < concurrency; i++) spawn();
  return {
    async stop() {
      running = false;
      while (inflight.size > 0) await Promise.all([...inflight]);
      return done;
    },
  };
}
