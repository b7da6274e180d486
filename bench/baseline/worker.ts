// A pool worker of the predecessor gateway: holds sessions, processes each frame message as it
// arrives (in order per session, since one worker holds a session), posts each result back, and
// reports its event-loop utilization so the main thread can place new sessions and grow the pool.
import { performance } from 'node:perf_hooks';
import { parentPort } from 'node:worker_threads';
import type { FromWorker, ToWorker } from './protocol.js';
import { BaselineSession, loadBaselineLibs } from './session.js';

const REPORT_MS = 500;

async function main(): Promise<void> {
  const port = parentPort;
  if (!port) throw new Error('bench/baseline/worker.js must run in a worker thread');
  const libs = await loadBaselineLibs();
  const sessions = new Map<number, BaselineSession>();
  const post = (m: FromWorker, transfer?: ArrayBuffer[]): void => port.postMessage(m, transfer);

  port.on('message', (m: ToWorker) => {
    switch (m.t) {
      case 'open':
        sessions.set(m.s, new BaselineSession(libs, m.key, m.nonce));
        break;
      case 'up': {
        const s = sessions.get(m.s);
        if (!s) return;
        const pcm = s.uplink(m.d);
        if (!pcm) {
          post({ t: 'reject', s: m.s, tag: m.tag });
          return;
        }
        // LiveKit's output frames own their buffers: transfer them.
        post({ t: 'pcm', s: m.s, tag: m.tag, d: pcm }, pcm.map((p) => p.buffer as ArrayBuffer));
        break;
      }
      case 'down': {
        const s = sessions.get(m.s);
        if (!s) return;
        for (const out of s.downlink(m.d)) {
          // Small datagrams from Buffer.concat live in Node's shared pool: posted as a copy.
          post({ t: 'pkt', s: m.s, tag: m.tag, frame: out.frame, d: out.datagram });
        }
        break;
      }
      case 'close':
        sessions.get(m.s)?.close();
        sessions.delete(m.s);
        break;
    }
  });

  let last = performance.eventLoopUtilization();
  setInterval(() => {
    const now = performance.eventLoopUtilization();
    const delta = performance.eventLoopUtilization(now, last);
    last = now;
    post({ t: 'load', elu: delta.utilization, sessions: sessions.size });
  }, REPORT_MS).unref();
  post({ t: 'ready' });
}

main().catch((err: unknown) => {
  // Surfaces as the Worker's 'error' event in the pool.
  throw err;
});
