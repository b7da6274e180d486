// The gateway's memory stays flat over many LiveKit sessions when workers are recycled. rtc-node
// keeps native memory for every Room it joined (README "Talk to LiveKit agents"; upstream
// node-sdks#514): a long-running worker grows ~0.4–0.8 MB per session however well we release.
// `--recycle-after-sessions K` replaces a worker after K sessions (drained: conversations finish,
// idle devices reconnect to the replacement), so the gateway's total RSS, primary and every
// worker together, is a sawtooth instead of a ramp.
// Here: the compiled CLI with agent 'livekit' and a real livekit-server; DEVICES devices hold
// conversations back to back (hello, 1.2 s of speech while the gateway joins the room and publishes
// the microphone, goodbye, 1.2 s idle), reconnecting the way the firmware does when a drain closes
// their idle connection. Asserted: the total RSS peak over the second half of the sessions ≤ the
// first half's + 10 %; with ≥ 6 whole recycle cycles in the last 60 % (the full run), the
// least-squares slope of the per-cycle mean RSS ≤ 50 KB per session; every recycle drained
// (exit 0); no device closed during a conversation; no worker died.
// CI: XIAOZHI_LK_RECYCLE_SESSIONS (default 200) with K = XIAOZHI_LK_RECYCLE_AFTER (default 25).
// Full run: `npm run test:livekit-recycle` (5 000 sessions, K = 250).
import { spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deviceSpeech, startLivekit, streamPackets, type LivekitServerHandle } from './helpers/livekit-harness.js';
import { RawDevice } from './helpers/raw-device.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const SESSIONS = Number(process.env.XIAOZHI_LK_RECYCLE_SESSIONS ?? 200);
const RECYCLE_AFTER = Number(process.env.XIAOZHI_LK_RECYCLE_AFTER ?? 25);
const DEVICES = 6;
const MAX_SLOPE_KB = 50;
const MIN_CYCLES_FOR_SLOPE = 6;

type LogLine = Record<string, unknown> & { msg?: string };

let server: LivekitServerHandle;
let gateway: ChildProcess;
const logs: LogLine[] = [];
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
  gateway = spawn(process.execPath, [
    join(root, 'dist', 'bin', 'xiaozhi-gateway.js'), 'start', '--agent', 'livekit', '--recycle-after-sessions', String(RECYCLE_AFTER),
    '--auth', 'open', '--mqtt-port', '0', '--udp-port', '0', '--http-port', '0', '--public-host', '127.0.0.1', '--log-level', 'info',
  ], {
    stdio: ['ignore', 'pipe', 'inherit'],
    // NODE_ENV=production: rtc-node logs its debug lines otherwise.
    env: { ...process.env, NODE_ENV: 'production', LIVEKIT_URL: server.url, LIVEKIT_API_KEY: server.apiKey, LIVEKIT_API_SECRET: server.apiSecret, MALLOC_ARENA_MAX: '2' },
  });
  createInterface({ input: gateway.stdout! }).on('line', (line) => {
    try {
      logs.push(JSON.parse(line) as LogLine);
    } catch {}
  });
  const started = performance.now();
  while (!logs.some((l) => l.msg === 'ready' && l.role === 'primary')) {
    if (gateway.exitCode !== null || performance.now() - started > 30_000) throw new Error(`gateway did not start: ${JSON.stringify(logs.slice(-5))}`);
    await sleep(20);
  }
  http = (logs.find((l) => l.msg === 'ready') as LogLine & { ports: { http: number } }).ports.http;
});

afterAll(async () => {
  if (gateway && gateway.exitCode === null && gateway.signalCode === null) {
    const exited = new Promise((r) => gateway.once('exit', r));
    gateway.kill('SIGTERM');
    await exited;
  }
  await server?.stop();
});

describe(`LiveKit sessions with --recycle-after-sessions ${RECYCLE_AFTER}`, () => {
  it(`${SESSIONS} sessions: the gateway's total RSS does not grow with sessions (≤ ${MAX_SLOPE_KB} KB per session), every recycle drains`, async () => {
    let done = 0;
    let reconnects = 0;
    let closedInConversation = 0;
    let interrupted = 0;
    const samples: Array<{ done: number; kb: number; recycled: number }> = [];
    const recycledCount = () => logs.filter((l) => l.msg === 'recycled worker drained and exited').length;
    const mac = (i: number) => `02:00:00:00:0f:${i.toString(16).padStart(2, '0')}`;

    const device = async (i: number) => {
      let d: RawDevice | undefined;
      let inConversation = false;
      while (done < SESSIONS) {
        if (!d || !d.mqtt.connected) {
          if (d) reconnects++;
          const dev = await RawDevice.connect(http, mac(i));
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
          samples.push({ done, kb: treeRssKb(gateway.pid!).kb, recycled: recycledCount() });
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
    await Promise.all(Array.from({ length: DEVICES }, (_, i) => device(i)));
    const seconds = (performance.now() - t0) / 1000;

    // Bounded: the peak over the second half of the sessions is no higher than over the first half
    // (+10 %). Without recycling, rtc-node's retention alone (≥ 0.4 MB per session) breaks it.
    const peak = (pick: (s: { done: number }) => boolean) => Math.max(...samples.filter(pick).map((s) => s.kb));
    const firstPeak = peak((s) => s.done <= SESSIONS / 2);
    const secondPeak = peak((s) => s.done > SESSIONS / 2);
    // Flat: the slope of the mean RSS of each whole recycle cycle in the last 60 % of the run
    // (between two completed recycles, averaging the sawtooth), once there are enough cycles to
    // fit (the full run); at CI's size the cycles' spread (±20 MB) is larger than 50 KB × 100.
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
    const died = logs.filter((l) => l.msg === 'worker died' || l.msg === 'recycled worker died while draining' || l.level === 60);
    console.log(
      `livekit recycle: ${done} sessions in ${seconds.toFixed(0)} s, K ${RECYCLE_AFTER}, ${recycledCount()} recycles drained, ` +
      `${reconnects} reconnects, ${interrupted} hellos crossed a drain; total RSS ${(samples[0]!.kb / 1024).toFixed(0)} → ${(samples.at(-1)!.kb / 1024).toFixed(0)} MB ` +
      `(peak ${(firstPeak / 1024).toFixed(0)} MB in the first half, ${(secondPeak / 1024).toFixed(0)} MB in the second); cycle means ${ys.map((y) => (y / 1024).toFixed(0)).join(', ')} MB; slope ${perSessionKb.toFixed(1)} KB per session`,
    );
    if (process.env.XIAOZHI_TEST_DEBUG) console.log(logs.filter((l) => /recycl|replacement|drain|stopping/.test(String(l.msg))).map((l) => JSON.stringify(l)).join("\n"));
    expect(died, 'no worker died').toEqual([]);
    expect(closedInConversation, 'no device closed during a conversation').toBe(0);
    expect(recycledCount(), 'recycles').toBeGreaterThanOrEqual(Math.floor(SESSIONS / RECYCLE_AFTER) - 2);
    expect(secondPeak, 'peak RSS, second half vs first half').toBeLessThanOrEqual(firstPeak * 1.1);
    if (whole.length >= MIN_CYCLES_FOR_SLOPE) expect(perSessionKb, 'RSS slope per session over whole cycles').toBeLessThanOrEqual(MAX_SLOPE_KB);
    else console.log(`livekit recycle: slope not judged: ${whole.length} whole cycles in the last 60 % (needs ${MIN_CYCLES_FOR_SLOPE}: npm run test:livekit-recycle)`);
    // A hello crossing the drain's close is a narrow race: far rarer than the reconnects.
    expect(interrupted).toBeLessThanOrEqual(recycledCount());
  }, SESSIONS * 3000 + 120_000);
});
