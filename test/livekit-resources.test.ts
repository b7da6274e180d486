// Resources of the LiveKit backend over many sessions, against a real livekit-server (built from
// the Go module proxy on first run, like the e2e tier). A file of its own: in the e2e file the
// devices, gateway and agent of earlier tests were still active while it measured, and the JS heap
// grew by 9–17 MB over the 500 sessions from their activity (alone: -0.7 to +8.4 MB). Files run one at a
// time (vitest.config.ts), so what is measured here is what the sessions leave behind.
import { randomUUID } from 'node:crypto';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LivekitAgentBackend } from '../src/livekit/livekit-backend.js';
import { agentSpeech, startLivekit, type LivekitServerHandle } from './helpers/livekit-harness.js';

setFlagsFromString('--expose-gc');

let server: LivekitServerHandle;

beforeAll(async () => {
  server = await startLivekit();
}, 900_000);

afterAll(async () => {
  await server?.stop();
});

describe('resources', () => {
  it('500 sessions opened and closed leave no growth in handles, memory or native counters', async () => {
    const backend = new LivekitAgentBackend({
      url: server.url, apiKey: server.apiKey, apiSecret: server.apiSecret, roomTemplate: 'leak-{device}-{session}',
      agentName: 'leak-test-nobody', dispatch: 'token', agentJoinTimeoutMs: 600000, mcpMethod: 'xiaozhi.mcp', mcpTimeoutMs: 1000, reconnectBufferMs: 1000,
      // 2-core CI machines: server, both peer connections and this process share the CPU.
      connectTimeoutMs: 60000,
    });
    const logger = pino({ level: 'silent' });
    const pcm = agentSpeech(0.06);
    let n = 0;
    const cycle = async () => {
      const i = n++;
      const s = await backend.createSession({
        deviceId: `02:00:00:01:${((i >> 8) & 0xff).toString(16).padStart(2, '0')}:${(i & 0xff).toString(16).padStart(2, '0')}`,
        clientId: `leak-${i}`, sessionId: randomUUID(), features: { mcp: true }, inputSampleRate: 48000, logger,
      });
      // A little microphone audio through the source, as a real session would.
      for (let k = 0; k < 3; k++) s.pushAudio(pcm, 48000);
      await new Promise((r) => setTimeout(r, 20));
      await s.close('test');
    };
    const run = async (count: number, concurrency: number) => {
      const queue = Array.from({ length: count }, () => cycle);
      await Promise.all(Array.from({ length: concurrency }, async () => {
        while (queue.length) await queue.pop()!();
      }));
    };
    const gc = runInNewContext('gc') as () => void;
    const snapshot = async () => {
      await new Promise((r) => setTimeout(r, 500));
      for (let i = 0; i < 3; i++) {
        gc();
        await new Promise((r) => setTimeout(r, 50));
      }
      const st = backend.stats();
      return { heap: process.memoryUsage().heapUsed, rss: process.memoryUsage().rss, resources: process.getActiveResourcesInfo().length, ffi: st.ffiListeners, st };
    };
    await run(40, 4);  // warm-up: lazy FFI init, connection pools, JIT
    const before = await snapshot();
    const t0 = performance.now();
    await run(500, 4);
    const elapsed = performance.now() - t0;
    const after = await snapshot();
    const mb = (b: number) => (b / 1048576).toFixed(1);
    const perSession = (after.rss - before.rss) / 500;
    console.log(`500 sessions in ${(elapsed / 1000).toFixed(1)} s: heap ${mb(before.heap)} → ${mb(after.heap)} MB, rss ${mb(before.rss)} → ${mb(after.rss)} MB (${(perSession / 1024).toFixed(0)} KB/session), active resources ${before.resources} → ${after.resources}, FFI listeners ${before.ffi} → ${after.ffi}`);
    expect(after.st).toMatchObject({ sessions: 0, rooms: 0, sources: 0, tracks: 0, streams: 0 });
    expect(after.ffi).toBeLessThanOrEqual(before.ffi);
    expect(after.resources).toBeLessThanOrEqual(before.resources + 2);
    // JS heap: -0.7, -0.6, +2.0 and +8.4 MB over 500 sessions in four runs of this file alone. That
    // noise is as large as what a backend keeping every closed session reachable adds (+9.5 MB, 19 KB
    // per session, checked by mutation), so this bound catches only larger retention (a Room object
    // graph kept per session); closed sessions left registered are caught by the counters above.
    expect(after.heap - before.heap).toBeLessThan(16 * 1048576);
    // Native memory. @livekit/rtc-node 1.1.0 (FFI 0.12.73) keeps native memory for every Room it
    // connected, however it is closed (upstream, reported with a repro); measured here in rounds of
    // 100 Rooms (connect, publish a microphone, 3 frames, leave, close): 0.2–1.5 MB per Room from
    // round to round, bare connect/disconnect Rooms alike, and 0.8–1.4 MB per session of ours over
    // six CI runs. A Room that is never left keeps 6.2 MB (40 measured). The bound, half of that,
    // fails a session that leaks its Room and passes rtc-node's own varying retention. (Sources,
    // tracks and streams left open are caught exactly by the counters above.)
    expect(perSession).toBeLessThan(3 * 1048576);
    await backend.close();
  }, 600_000);
});
