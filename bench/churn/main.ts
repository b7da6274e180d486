// `xiaozhi-gateway bench churn`: does session churn stall the devices that are not churning?
//
// A gateway in its own process (the compiled CLI, echo agent) serves N devices, each from its own
// loopback address. Two thirds (by default) talk in turns: speak 1.5 s, listen stop, hear the echo.
// The rest churn: every few seconds all of them send goodbye and a new hello in the same instant.
// Measured on the steady devices: the gaps between consecutive downlink datagrams inside a played
// turn (the pacer sends one every 60 ms, so a stall shows up as a long gap), split into gaps that
// overlap a burst and the rest; on the gateway: event-loop delay p99/max during the bursts and
// between them (prom-client's histogram, reset by each scrape); on the churners: hello reply time.
import { spawn, type ChildProcess } from 'node:child_process';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { OpusEncoder } from '../../src/index.js';
import { synthesizeSpeech } from '../../src/sim/audio.js';
import { BenchDevice } from '../bench-device.js';

interface ChurnOptions {
  devices: number;
  fraction: number;
  bursts: number;
  intervalS: number;
  json: boolean;
}

const USAGE = `usage: xiaozhi-gateway bench churn [--devices N] [--fraction F] [--bursts K] [--interval S] [--json]
  --devices N    devices in all (default 300)
  --fraction F   share of them that churn (goodbye + hello, all at once) (default 0.33)
  --bursts K     churn bursts (default 6)
  --interval S   seconds between bursts (default 4)
Target: the steady devices' downlink gaps stay under 200 ms through the bursts.`;

const TARGET_GAP_MS = 200;
const BURST_WINDOW_MS = 1500;
const abs = () => performance.timeOrigin + performance.now();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function parse(argv: string[]): ChurnOptions | 'help' {
  const o: ChurnOptions = { devices: 300, fraction: 0.33, bursts: 6, intervalS: 4, json: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const num = (min: number, max: number): number => {
      const v = Number(argv[++i]);
      if (!Number.isFinite(v) || v < min || v > max) throw new RangeError(`${a}: expected a number in [${min}, ${max}], got ${argv[i]}`);
      return v;
    };
    switch (a) {
      case '-h': case '--help': return 'help';
      case '--devices': o.devices = Math.round(num(3, 5000)); break;
      case '--fraction': o.fraction = num(0.01, 0.9); break;
      case '--bursts': o.bursts = Math.round(num(1, 1000)); break;
      case '--interval': o.intervalS = num(1, 600); break;
      case '--json': o.json = true; break;
      default: throw new RangeError(`unknown option ${a}\n${USAGE}`);
    }
  }
  return o;
}

function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

async function startGateway(): Promise<{ child: ChildProcess; http: number; stderr: string[] }> {
  const cli = fileURLToPath(new URL('../../bin/xiaozhi-gateway.js', import.meta.url));
  // Every device has its own loopback address for MQTT and UDP, but OTA goes through fetch from
  // 127.0.0.1: raise the per-IP OTA and connect rates so the ramp is not throttled. Log level info:
  // the "ready" line is an info line (it carries the ports).
  const child = spawn(process.execPath, [cli, 'start', '--mqtt-port', '0', '--udp-port', '0', '--http-port', '0',
    '--public-host', '127.0.0.1', '--log-level', 'info', '--connects-per-ip-per-minute', '1000000', '--ota-per-ip-per-minute', '1000000'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const stderr: string[] = [];
  createInterface({ input: child.stderr! }).on('line', (l) => stderr.push(l));
  const http = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('gateway did not log "ready" within 30 s')), 30_000);
    child.once('exit', (code) => reject(new Error(`gateway exited early with ${code}: ${stderr.slice(-5).join('\n')}`)));
    createInterface({ input: child.stdout! }).on('line', (line) => {
      try {
        const e = JSON.parse(line) as { msg?: string; ports?: { http: number } };
        if (e.msg === 'ready' && e.ports) {
          clearTimeout(timer);
          resolve(e.ports.http);
        }
      } catch { /* not a log line */ }
    });
  });
  return { child, http, stderr };
}

async function eventLoop(http: number): Promise<{ p99: number; max: number; cpu: number }> {
  const text = await (await fetch(`http://127.0.0.1:${http}/metrics`)).text();
  const read = (name: string) => Number(new RegExp(`^${name}(?:\\{[^}]*\\})? ([0-9.e+-]+)`, 'm').exec(text)?.[1] ?? NaN);
  return { p99: read('nodejs_eventloop_lag_p99_seconds') * 1000, max: read('nodejs_eventloop_lag_max_seconds') * 1000, cpu: read('process_cpu_seconds_total') };
}

/** Local address of device i: 127.3.<i / 250>.<1..250> (all of 127/8 is loopback on Linux). */
const sourceOf = (i: number) => `127.3.${Math.floor(i / 250)}.${(i % 250) + 1}`;
const macOf = (i: number) => `02:cc:00:00:${((i >> 8) & 0xff).toString(16).padStart(2, '0')}:${(i & 0xff).toString(16).padStart(2, '0')}`;

export async function runChurnBench(argv: string[]): Promise<number> {
  const o = parse(argv);
  if (o === 'help') {
    console.log(USAGE);
    return 0;
  }
  const clip = (() => {
    const enc = new OpusEncoder({ sampleRate: 16000, channels: 1, application: 'voip', complexity: 3 });
    const pcm = synthesizeSpeech(1.5, 16000, 7);
    const frames: Uint8Array[] = [];
    for (let i = 0; i + 960 <= pcm.length; i += 960) frames.push(new Uint8Array(enc.encode(pcm.subarray(i, i + 960))));
    enc.close();
    return frames;
  })();
  const gw = await startGateway();
  const driverDelay = monitorEventLoopDelay({ resolution: 10 });
  const devices: BenchDevice[] = [];
  const churners = Math.max(1, Math.round(o.devices * o.fraction));
  const steadyCount = o.devices - churners;
  try {
    for (let i = 0; i < o.devices; i += 20) {
      const batch = [];
      for (let k = i; k < Math.min(o.devices, i + 20); k++) batch.push(BenchDevice.connect(gw.http, macOf(k), { listen: null, localAddress: sourceOf(k) }));
      devices.push(...(await Promise.all(batch)));
    }
    const steady = devices.slice(0, steadyCount);
    const churning = devices.slice(steadyCount);
    let running = true;
    const turns: Array<{ device: number; start: number; stop: number }> = [];
    const talk = async (d: BenchDevice, index: number): Promise<void> => {
      await sleep((index * 37) % 1500);
      while (running) {
        const m0 = d.messages.length;
        d.publish({ session_id: d.sessionId, type: 'listen', state: 'start', mode: 'manual' });
        for (const f of clip) {
          d.sendOpus(f);
          await sleep(60);
        }
        d.publish({ session_id: d.sessionId, type: 'listen', state: 'stop' });
        const t0 = abs();
        while (abs() - t0 < 10_000 && !d.messages.slice(m0).some((m) => m.type === 'tts' && m.state === 'stop')) await sleep(20);
        const start = d.messages.slice(m0).find((m) => m.type === 'tts' && m.state === 'start');
        const stop = d.messages.slice(m0).find((m) => m.type === 'tts' && m.state === 'stop');
        if (start && stop) turns.push({ device: index, start: start.at, stop: stop.at });
        await sleep(200 + ((index * 53) % 400));
      }
    };
    driverDelay.enable();
    const cpu0 = (await eventLoop(gw.http)).cpu;
    const t0 = abs();
    const talking = steady.map((d, i) => talk(d, i));
    await sleep(3000);
    const bursts: Array<{ at: number; loopP99: number; loopMax: number; helloMs: number[] }> = [];
    const quiet: Array<{ loopP99: number; loopMax: number }> = [];
    for (let b = 0; b < o.bursts; b++) {
      await eventLoop(gw.http);  // resets the gateway's event-loop histogram
      const at = abs();
      const hellos = churning.map(async (d) => {
        const sent = abs();
        d.publish({ session_id: d.sessionId, type: 'goodbye' });
        await d.hello(null);
        return abs() - sent;
      });
      const helloMs = await Promise.all(hellos);
      const left = BURST_WINDOW_MS - (abs() - at);
      if (left > 0) await sleep(left);
      const during = await eventLoop(gw.http);
      bursts.push({ at, loopP99: during.p99, loopMax: during.max, helloMs });
      await sleep(Math.max(0, o.intervalS * 1000 - BURST_WINDOW_MS - 500));
      const between = await eventLoop(gw.http);
      quiet.push({ loopP99: between.p99, loopMax: between.max });
      await sleep(500);
    }
    running = false;
    await Promise.all(talking);
    const elapsedS = (abs() - t0) / 1000;
    const cpu1 = (await eventLoop(gw.http)).cpu;
    driverDelay.disable();

    // Gaps between consecutive downlink datagrams inside each played turn of the steady devices.
    const inBurst: number[] = [];
    const outside: number[] = [];
    for (const t of turns) {
      const arrivals = steady[t.device]!.received.filter((x) => x >= t.start && x <= t.stop);
      for (let k = 1; k < arrivals.length; k++) {
        const gap = arrivals[k]! - arrivals[k - 1]!;
        const overlaps = bursts.some((b) => arrivals[k]! >= b.at && arrivals[k - 1]! <= b.at + BURST_WINDOW_MS);
        (overlaps ? inBurst : outside).push(gap);
      }
    }
    inBurst.sort((a, b) => a - b);
    outside.sort((a, b) => a - b);
    const hello = bursts.flatMap((b) => b.helloMs).sort((a, b) => a - b);
    const med = (xs: number[]) => quantile([...xs].sort((a, b) => a - b), 0.5);
    const result = {
      devices: o.devices, steady: steadyCount, churners, bursts: o.bursts, turns: turns.length,
      gapsInBursts: { n: inBurst.length, p50: quantile(inBurst, 0.5), p99: quantile(inBurst, 0.99), max: inBurst.at(-1) ?? NaN, over200: inBurst.filter((g) => g > TARGET_GAP_MS).length },
      gapsOutside: { n: outside.length, p50: quantile(outside, 0.5), p99: quantile(outside, 0.99), max: outside.at(-1) ?? NaN, over200: outside.filter((g) => g > TARGET_GAP_MS).length },
      gatewayLoopInBursts: { p99Median: med(bursts.map((b) => b.loopP99)), p99Max: Math.max(...bursts.map((b) => b.loopP99)), max: Math.max(...bursts.map((b) => b.loopMax)) },
      gatewayLoopBetween: { p99Median: med(quiet.map((q) => q.loopP99)), max: Math.max(...quiet.map((q) => q.loopMax)) },
      helloReplyMs: { p50: quantile(hello, 0.5), p99: quantile(hello, 0.99), max: hello.at(-1) ?? NaN },
      gatewayCpuPercent: ((cpu1 - cpu0) / elapsedS) * 100,
      driverLoopP99Ms: driverDelay.percentile(99) / 1e6,
      loadAverage: (await import('node:os')).loadavg().map((x) => Number(x.toFixed(2))),
      verdict: '',
    };
    const worst = Math.max(result.gapsInBursts.max, result.gapsOutside.max);
    result.verdict = worst < TARGET_GAP_MS ? `met: worst downlink gap ${worst.toFixed(0)} ms < ${TARGET_GAP_MS} ms` : `MISSED: worst downlink gap ${worst.toFixed(0)} ms >= ${TARGET_GAP_MS} ms`;
    if (o.json) {
      console.log(JSON.stringify(result, null, 2));
    } else {
      const f = (x: number) => x.toFixed(1);
      console.log(`bench churn: ${o.devices} devices (${steadyCount} steady, ${churners} churning), ${o.bursts} bursts every ${o.intervalS} s, load ${result.loadAverage.join(' ')}`);
      console.log(`  steady turns played: ${turns.length}`);
      console.log(`  downlink gaps overlapping a burst: n ${inBurst.length}, p50 ${f(result.gapsInBursts.p50)} ms, p99 ${f(result.gapsInBursts.p99)} ms, max ${f(result.gapsInBursts.max)} ms, > 200 ms: ${result.gapsInBursts.over200}`);
      console.log(`  downlink gaps outside bursts:      n ${outside.length}, p50 ${f(result.gapsOutside.p50)} ms, p99 ${f(result.gapsOutside.p99)} ms, max ${f(result.gapsOutside.max)} ms, > 200 ms: ${result.gapsOutside.over200}`);
      console.log(`  gateway event loop in bursts: p99 ${f(result.gatewayLoopInBursts.p99Median)} ms (median of bursts; worst ${f(result.gatewayLoopInBursts.p99Max)}), max ${f(result.gatewayLoopInBursts.max)} ms; between bursts: p99 ${f(result.gatewayLoopBetween.p99Median)} ms, max ${f(result.gatewayLoopBetween.max)} ms`);
      console.log(`  churners' hello reply (goodbye + hello sent together): p50 ${f(result.helloReplyMs.p50)} ms, p99 ${f(result.helloReplyMs.p99)} ms, max ${f(result.helloReplyMs.max)} ms`);
      console.log(`  gateway CPU ${f(result.gatewayCpuPercent)} % of a core; load driver event-loop p99 ${f(result.driverLoopP99Ms)} ms (its own noise in the gaps)`);
      console.log(`  verdict: ${result.verdict}`);
    }
    return worst < TARGET_GAP_MS ? 0 : 1;
  } finally {
    await Promise.all(devices.map((d) => d.close()));
    if (gw.child.exitCode === null) {
      const exited = new Promise((r) => gw.child.once('exit', r));
      gw.child.kill('SIGTERM');
      await exited;
    }
  }
}
