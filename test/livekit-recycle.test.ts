// The gateway's memory stays flat over many LiveKit sessions when workers are recycled. rtc-node
// keeps native memory for every Room it joined (README "Talk to LiveKit agents"; upstream
// node-sdks#514): a long-running worker grows ~0.4–0.8 MB per session however well we release.
// `--recycle-after-sessions K` replaces a worker after K sessions (drained: conversations finish,
// idle devices reconnect to the replacement), so the gateway's total RSS, primary and every
// worker together, is a sawtooth instead of a ramp.
// Here: the compiled CLI with agent 'livekit' and a real livekit-server; DEVICES devices hold
// conversations back to back (hello, 1.2 s of speech while the gateway joins the room and publishes
// the microphone, goodbye, 1.2 s idle), reconnecting the way the firmware does when a drain closes
// their idle connection. Asserted: over the last 60 % of the run (≥ 6 whole recycle cycles), the
// least-squares slope of the per-cycle mean RSS ≤ 50 KB per session in the full run (150 in CI,
// see MAX_SLOPE_KB); every recycle drained (exit 0); no device closed during a conversation; no
// worker died.
// CI: XIAOZHI_LK_RECYCLE_SESSIONS (default 360) with K = XIAOZHI_LK_RECYCLE_AFTER (default 20).
// Full run: `npm run test:livekit-recycle` (5 000 sessions, K = 250, slope bound 50 KB).
import { readdirSync, readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGatewayProcess, type GatewayProcess } from './helpers/gateway-process.js';
import { deviceSpeech, startLivekit, streamPackets, type LivekitServerHandle } from './helpers/livekit-harness.js';
import { RawDevice } from './helpers/raw-device.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const SESSIONS = Number(process.env.XIAOZHI_LK_RECYCLE_SESSIONS ?? 360);
const RECYCLE_AFTER = Number(process.env.XIAOZHI_LK_RECYCLE_AFTER ?? 20);
// The bound on the slope. The target is 50 KB per session (the full run). At CI's size the fitted
// slope's own spread is ~40 KB (cycle means scatter by ±10 MB over ~240 sessions), so CI holds it
// to 150: far below the ≥ 400 KB per session of a gateway that does not recycle, which it catches.
const MAX_SLOPE_KB = Number(process.env.XIAOZHI_LK_RECYCLE_MAX_SLOPE_KB ?? 150);
const DEVICES = 6;
const MIN_CYCLES = 6;

let server: LivekitServerHandle;
let gateway: GatewayProcess;
let http = 0;
const speech = deviceSpeech(1.2).packets;

/** Resident memory (KB) of a process and of all its descendants, from /proc. */
function treeRssKb(rootPid: number): { kb: number; pids: number[] } {
  const parent = new Map<number, number>();
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = readFileSync(`/proc/${e}/stat`, 'utf8');
      parent.set(Number(e), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
    } catch {}
  }
  const pids = [rootPid];
  for (let i = 0; i < pids.length; i++) for (const [pid, ppid] of parent) if (ppid === pids[i]) pids.push(pid);
  let kb = 0;
  for (const pid of pids) {
    try {
      kb += Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
    } catch {}
  }
  return { kb, pids };
}

function slope(xs: number[], ys: number[]): number {
  const mx = xs.reduce((a, b) => a + b, 0) / xs.length;
  const my = ys.reduce((a, b) => a + b, 0) / ys.length;
  let num = 0;
  let den = 0;
  for (let i = 0; i < xs.length; i++) {
    num += (xs[i]! - mx) * (ys[i]! - my);
    den += (xs[i]! - mx) ** 2;
  }
  return num / den;
}

beforeAll(async () => {
  server = await startLivekit();
  gateway = await startGatewayProcess([
    // A session every ~3 s per device for minutes on one connection: above the default 20 hellos
    // per connection per minute, which this test is not about.
    '--agent', 'livekit', '--recycle-after-sessions', String(RECYCLE_AFTER), '--hellos-per-minute', '120',
    '--auth', 'open', '--mqtt-port', '0', '--udp-port', '0', '--http-port', '0', '--public-host', '127.0.0.1', '--log-level', 'info',
  ], {
    // NODE_ENV=production: rtc-node logs its debug lines otherwise.
    env: { ...process.env, NODE_ENV: 'production', LIVEKIT_URL: server.url, LIVEKIT_API_KEY: server.apiKey, LIVEKIT_API_SECRET: server.apiSecret, MALLOC_ARENA_MAX: '2' },
    echoStderr: true,
  });
  http = gateway.ready.ports.http;
});

afterAll(async () => {
  await gateway?.stop();
  await server?.stop();
});

describe(`LiveKit sessions with --recycle-after-sessions ${RECYCLE_AFTER}`, () => {
  it(`${SESSIONS} sessions: the gateway's total RSS does not grow with sessions (≤ ${MAX_SLOPE_KB} KB per session), every recycle drains`, async () => {
    let done = 0;
    let reconnects = 0;
    let closedInConversation = 0;
    let interrupted = 0;
    let connectResets = 0;
    let stopped = false;
    const samples: Array<{ done: number; kb: number; recycled: number }> = [];
    const recycledCount = () => gateway.logs.filter((l) => l.msg === 'recycled worker drained and exited').length;
    const mac = (i: number) => `02:00:00:00:0f:${i.toString(16).padStart(2, '0')}`;

    const device = async (i: number) => {
      let d: RawDevice | undefined;
      let inConversation = false;
      while (done < SESSIONS && !stopped) {
        if (!d || !d.mqtt.connected) {
          if (d) reconnects++;
          let dev: RawDevice;
          try {
            dev = await RawDevice.connect(http, mac(i));
          } catch (err) {
            // A connection handed to a worker in the instant it closed its listeners is reset; the
            // firmware retries a failed OTA or MQTT connect, and so does this device (counted).
            if ((err as NodeJS.ErrnoException).code !== 'ECONNRESET' && !/ECONNRESET|socket hang up|fetch failed/.test(String((err as Error).message))) throw err;
            connectResets++;
            await sleep(500);
            continue;
          }
          d = dev;
          dev.mqtt.once('close', () => {
            // A hello refused as busy (admission) ends with the gateway's goodbye: no conversation then.
            const refused = dev.hello !== null && dev.messages.some((m) => m.type === 'goodbye' && m.session_id === dev.hello!.session_id);
            if (inConversation && !refused) closedInConversation++;
          });
        }
        try {
          await d.sayHello();
          inConversation = true;
          await streamPackets(d, speech);
          d.publish({ session_id: d.session(), type: 'goodbye' });
          inConversation = false;
          done++;
          samples.push({ done, kb: treeRssKb(gateway.child.pid!).kb, recycled: recycledCount() });
        } catch (err) {
          inConversation = false;
          // A hello that crossed the drain's close of this idle connection: the firmware would retry it.
          if (d.mqtt.connected) throw err;
          interrupted++;
        }
        await sleep(1200);
      }
      await d?.close();
    };
    const t0 = performance.now();
    // A worker that dies fails the test at once, with its log lines, instead of leaving the devices
    // to retry against a gateway that lost them.
    const deaths = () => gateway.logs.filter((l) => l.msg === 'worker died' || l.msg === 'recycled worker died while draining' || l.level === 60);
    let watching = true;
    const watchdog = new Promise<never>((_, reject) => {
      const check = () => {
        if (!watching) return;
        if (deaths().length > 0) {
          watching = false;
          return reject(new Error(`a worker died after ${done} sessions: ${deaths().map((l) => JSON.stringify(l)).join('; ')}`));
        }
        setTimeout(check, 500);
      };
      check();
    });
    try {
      await Promise.race([Promise.all(Array.from({ length: DEVICES }, (_, i) => device(i))), watchdog]);
    } finally {
      watching = false;
      stopped = true;  // ends the device loops left running when the watchdog fired
    }
    const seconds = (performance.now() - t0) / 1000;

    // Flat: the slope of the mean RSS of each whole recycle cycle (between two completed recycles:
    // the mean averages the sawtooth) in the last 60 % of the run.
    const cycles = new Map<number, { x: number[]; kb: number[] }>();
    for (const s of samples) {
      if (s.recycled < 1 || s.done <= SESSIONS * 0.4) continue;
      const c = cycles.get(s.recycled) ?? { x: [], kb: [] };
      c.x.push(s.done);
      c.kb.push(s.kb);
      cycles.set(s.recycled, c);
    }
    const last = Math.max(...cycles.keys());
    const whole = [...cycles.entries()].filter(([k]) => k !== last).map(([, c]) => c);
    const mean = (v: number[]) => v.reduce((a, b) => a + b, 0) / v.length;
    const xs = whole.map((c) => mean(c.x));
    const ys = whole.map((c) => mean(c.kb));
    const perSessionKb = whole.length >= 2 ? slope(xs, ys) : NaN;
    console.log(
      `livekit recycle: ${done} sessions in ${seconds.toFixed(0)} s, K ${RECYCLE_AFTER}, ${recycledCount()} recycles drained, ` +
      `${reconnects} reconnects (${connectResets} connects reset, retried), ${interrupted} hellos crossed a drain; total RSS ${(samples[0]!.kb / 1024).toFixed(0)} → ${(samples.at(-1)!.kb / 1024).toFixed(0)} MB ` +
      `(max ${(Math.max(...samples.map((s) => s.kb)) / 1024).toFixed(0)}); cycle means in the last 60 % ${ys.map((y) => (y / 1024).toFixed(0)).join(', ')} MB; slope ${perSessionKb.toFixed(1)} KB per session`,
    );
    if (process.env.XIAOZHI_TEST_DEBUG) console.log(gateway.logs.filter((l) => /recycl|replacement|drain|stopping/.test(String(l.msg))).map((l) => JSON.stringify(l)).join("\n"));
    expect(deaths(), 'no worker died').toEqual([]);
    expect(closedInConversation, 'no device closed during a conversation').toBe(0);
    expect(whole.length, 'whole recycle cycles in the last 60 % of the run').toBeGreaterThanOrEqual(MIN_CYCLES);
    expect(perSessionKb, 'RSS slope per session over whole cycles').toBeLessThanOrEqual(MAX_SLOPE_KB);
    // A hello crossing the drain's close, or a connect crossing its listener's close, is a narrow
    // race: at most about one per recycle.
    expect(interrupted + connectResets).toBeLessThanOrEqual(recycledCount());
  }, SESSIONS * 3000 + 120_000);
});
