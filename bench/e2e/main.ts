// `xiaozhi-gateway bench e2e`: the latency the gateway adds in each direction with a real
// livekit-server, at 1, 10 and 50 concurrent sessions, and its CPU per session.
//   uplink:   UDP datagram sent by the device → its 60 ms frame captured into the LiveKit AudioSource
//   downlink: agent frame received from LiveKit (the one completing a 60 ms device frame) → the
//             UDP datagram carrying it received by the device
// The gateway runs in a child process (its CPU is measured alone); devices and agents run here.
// Clocks: performance.timeOrigin + performance.now() in both processes (same machine).
import { fork, type ChildProcess } from 'node:child_process';
import { availableParallelism, cpus } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { OpusEncoder } from '../../src/index.js';
import { BenchAgent } from './agent.js';
import { BenchDevice } from './device.js';
import type { ChildReport, FromChild, ToChild } from './protocol.js';

const USAGE = `Usage: xiaozhi-gateway bench e2e [options]

Latency the gateway adds between a device (UDP) and LiveKit, each way, p50/p99, at N concurrent
sessions against a local livekit-server (built with Go on first use, see scripts/livekit-server.mjs),
and the gateway's CPU per session.

Options:
  --sessions LIST  concurrent sessions per run (default 1,10,50)
  --seconds S      measured seconds per run, after a 3 s warm-up (default 10)
  --json           results as JSON on stdout
  -h, --help       this help`;

interface Row {
  sessions: number;
  uplink: { p50: number; p99: number; n: number };
  downlink: { p50: number; p99: number; n: number };
  cpuPerSessionPct: number;
  cpuTotalPct: number;
  eventLoopP99Ms: number;
  downlinkPacketsPerSession: number;
  uplinkDropped: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..', '..');

function percentile(sorted: number[], p: number): number {
  if (!sorted.length) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

function uplinkPackets(): Buffer[] {
  const enc = new OpusEncoder({ sampleRate: 16000, channels: 1, application: 'voip', bitrate: 24000 });
  const out: Buffer[] = [];
  for (let f = 0; f < 50; f++) {
    const pcm = new Int16Array(960);
    for (let i = 0; i < 960; i++) {
      const n = f * 960 + i;
      pcm[i] = Math.round((5000 + 2500 * Math.sin((2 * Math.PI * 4 * n) / 16000)) * Math.sin((2 * Math.PI * 180 * n) / 16000));
    }
    out.push(Buffer.from(enc.encode(pcm)));
  }
  return out;
}

async function startChild(cfg: { livekitUrl: string; apiKey: string; apiSecret: string }): Promise<{ child: ChildProcess; ports: { http: number } }> {
  const child = fork(join(here, 'gateway-child.js'), [JSON.stringify(cfg)], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'], env: { ...process.env, NODE_ENV: 'production' } });
  const ports = await new Promise<{ http: number }>((resolve, reject) => {
    child.once('message', (m: FromChild) => (m.type === 'ready' ? resolve(m.ports) : reject(new Error(m.type === 'error' ? m.message : 'unexpected message'))));
    child.once('exit', (code) => reject(new Error(`gateway child exited (${code})`)));
  });
  return { child, ports };
}

function ask(child: ChildProcess, m: ToChild): Promise<ChildReport> {
  return new Promise((resolve) => {
    child.once('message', (r: FromChild) => resolve(r as ChildReport));
    child.send(m);
  });
}

async function run(n: number, seconds: number, server: { url: string; apiKey: string; apiSecret: string }): Promise<Row> {
  const { child, ports } = await startChild({ livekitUrl: server.url, apiKey: server.apiKey, apiSecret: server.apiSecret });
  const devices: BenchDevice[] = [];
  const agents: BenchAgent[] = [];
  const packets = uplinkPackets();
  let streaming = true;
  try {
    // Sessions open a few at a time (each joins a room: two peer connections).
    for (let i = 0; i < n; i += 5) {
      await Promise.all(Array.from({ length: Math.min(5, n - i) }, async (_, k) => {
        const idx = i + k;
        const mac = `02:00:00:02:${(idx >> 8).toString(16).padStart(2, '0')}:${(idx & 0xff).toString(16).padStart(2, '0')}`;
        const d = await BenchDevice.connect(ports.http, mac);
        devices.push(d);
        const a = await BenchAgent.join(server.url, server.apiKey, server.apiSecret, `xiaozhi-${mac.replace(/:/g, '')}-${d.sessionId}`, `bench-agent-${idx}`);
        agents.push(a);
      }));
    }
    process.stderr.write(`bench e2e: ${n} device(s) and agent(s) connected\n`);
    // Devices stream at their real cadence (each on its own phase), agents speak without pause.
    const t0 = performance.now();
    const loops = devices.map(async (d, i) => {
      await sleep((i * 60) / devices.length);
      const start = performance.now();
      for (let k = 0; streaming; k++) {
        const wait = start + k * 60 - performance.now();
        if (wait > 0) await sleep(wait);
        d.sendOpus(packets[k % packets.length]!);
      }
    });
    for (const a of agents) a.speak();
    await sleep(3000);
    child.send({ type: 'mark' } satisfies ToChild);
    const markAbs = performance.timeOrigin + performance.now();
    await sleep(seconds * 1000);
    const report = await ask(child, { type: 'collect' });
    const endAbs = performance.timeOrigin + performance.now();
    streaming = false;
    await Promise.all(loops);
    void t0;

    const up: number[] = [];
    const down: number[] = [];
    let downPackets = 0;
    for (const d of devices) {
      // Uplink: the k-th datagram becomes the k-th captured frame (no loss on loopback).
      const cap = report.uplinkCaptured[d.sessionId] ?? [];
      for (let k = 0; k < Math.min(cap.length, d.sent.length); k++) {
        if (d.sent[k]! >= markAbs && cap[k]! <= endAbs) up.push(cap[k]! - d.sent[k]!);
      }
      // Downlink: datagram j carries forwarded samples [j*2880, (j+1)*2880) of the turn.
      const fwd = report.downlinkForwarded[d.sessionId] ?? [];
      let f = 0;
      for (let j = 0; j < d.received.length; j++) {
        const need = (j + 1) * 2880;
        while (f < fwd.length && fwd[f]![0] < need) f++;
        if (f >= fwd.length) break;
        const at = d.received[j]!;
        if (at >= markAbs && at <= endAbs) {
          down.push(at - fwd[f]![1]);
          downPackets++;
        }
      }
    }
    up.sort((a, b) => a - b);
    down.sort((a, b) => a - b);
    const cpuPct = ((report.cpuUserUs + report.cpuSystemUs) / 1000 / report.wallMs) * 100;
    return {
      sessions: n,
      uplink: { p50: percentile(up, 50), p99: percentile(up, 99), n: up.length },
      downlink: { p50: percentile(down, 50), p99: percentile(down, 99), n: down.length },
      cpuPerSessionPct: cpuPct / n,
      cpuTotalPct: cpuPct,
      eventLoopP99Ms: report.eventLoopP99Ms,
      downlinkPacketsPerSession: downPackets / n / seconds,
      uplinkDropped: report.uplinkDropped,
    };
  } finally {
    streaming = false;
    await Promise.allSettled(agents.map((a) => a.leave()));
    await Promise.allSettled(devices.map((d) => d.close()));
    child.send({ type: 'stop' } satisfies ToChild);
    await new Promise((r) => child.once('exit', r));
  }
}

export async function runE2eBenchCli(argv: string[]): Promise<number> {
  let sessions = [1, 10, 50];
  let seconds = 10;
  let json = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '-h' || a === '--help') {
      process.stdout.write(USAGE + '\n');
      return 0;
    } else if (a === '--json') json = true;
    else if (a === '--sessions') sessions = (argv[++i] ?? '').split(',').map(Number);
    else if (a === '--seconds') seconds = Number(argv[++i]);
    else {
      process.stderr.write(`xiaozhi-gateway bench e2e: unknown option '${a}'\n\n${USAGE}\n`);
      return 2;
    }
  }
  if (!sessions.every((s) => Number.isInteger(s) && s > 0) || !(seconds > 0)) {
    process.stderr.write(`xiaozhi-gateway bench e2e: --sessions takes positive integers, --seconds a positive number\n`);
    return 2;
  }
  const lk = (await import(pathToFileURL(join(root, 'scripts', 'livekit-server.mjs')).href)) as {
    startLivekitServer(o?: object): Promise<{ url: string; apiKey: string; apiSecret: string; stop(): Promise<void> }>;
    LIVEKIT_SERVER_VERSION: string;
  };
  process.stderr.write(`bench e2e: starting livekit-server ${lk.LIVEKIT_SERVER_VERSION} (built with Go on first use)\n`);
  const server = await lk.startLivekitServer({});
  const rows: Row[] = [];
  try {
    for (const n of sessions) {
      process.stderr.write(`bench e2e: ${n} session(s), ${seconds} s measured...\n`);
      const row = await run(n, seconds, server);
      rows.push(row);
      process.stderr.write(`bench e2e: ${JSON.stringify(row)}\n`);
    }
  } finally {
    await server.stop();
  }
  const machine = `${cpus()[0]?.model ?? 'cpu'} × ${availableParallelism()}, node ${process.version}`;
  if (json) {
    process.stdout.write(JSON.stringify({ machine, livekitServer: lk.LIVEKIT_SERVER_VERSION, seconds, rows }, null, 2) + '\n');
    return 0;
  }
  const f = (x: number) => (Number.isFinite(x) ? x.toFixed(1) : '–');
  const lines = [
    `bench e2e — ${machine}; livekit-server ${lk.LIVEKIT_SERVER_VERSION} --dev on loopback; ${seconds} s measured per row`,
    '',
    'sessions | uplink p50 / p99 ms (datagram → captured) | downlink p50 / p99 ms (agent frame → datagram) | gateway CPU per session | total | loop p99',
    '-------: | ---------------------------------------: | ---------------------------------------------: | ----------------------: | ----: | -------:',
    ...rows.map((r) => `${r.uplinkDropped ? `(uplink: ${r.uplinkDropped} frames dropped under load: uplink figures not valid) ` : ''}${String(r.sessions).padStart(8)} | ${f(r.uplink.p50).padStart(8)} / ${f(r.uplink.p99).padEnd(8)} (n=${r.uplink.n}) | ${f(r.downlink.p50).padStart(8)} / ${f(r.downlink.p99).padEnd(8)} (n=${r.downlink.n}) | ${f(r.cpuPerSessionPct)} % of a core | ${f(r.cpuTotalPct)} % | ${f(r.eventLoopP99Ms)} ms`),
    '',
    'Downlink includes the 60 ms frame assembly only from the frame that completes a device frame, and the',
    'pacer (real-time cadence, 2-frame lead); both are measured where the device receives the datagram.',
  ];
  process.stdout.write(lines.join('\n') + '\n');
  return 0;
}

// Direct use: node dist/bench/e2e/main.js [options] (until `bench e2e` is wired in bench/main.ts).
if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  runE2eBenchCli(process.argv.slice(2)).then((c) => (process.exitCode = c), (e: Error) => {
    process.stderr.write(`bench e2e: ${e.stack ?? e.message}\n`);
    process.exitCode = 1;
  });
}
