// `xiaozhi-gateway bench e2e`: the latency the gateway adds in each direction with a real
// livekit-server, at 1, 10 and 50 concurrent sessions, and its CPU per session.
//   uplink:   UDP datagram sent by the device → its 60 ms frame captured into the LiveKit AudioSource
//   downlink: agent frame received from LiveKit (the one completing a 60 ms device frame) → the
//             device datagram built (gateway's own work), and → sent (adds the deliberate pacing)
// Processes: the gateway alone in a child (its CPU is its own, priority 0); every bench agent in
// ONE child process at nice 10, livekit-server at nice 10 (so on a small machine the gateway gets
// the CPU first and its own latency is what is measured); devices here (priority 0).
// Clocks: performance.timeOrigin + performance.now() in every process (same machine).
import { fork, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { availableParallelism, cpus, setPriority } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { OpusEncoder } from '../../src/index.js';
import { BenchDevice } from '../bench-device.js';
import type { ChildReport, FromAgents, FromChild, ToAgents, ToChild } from './protocol.js';

const USAGE = `Usage: xiaozhi-gateway bench e2e [options]

Latency the gateway adds between a device (UDP) and LiveKit, each way, p50/p99, at N concurrent
sessions against a local livekit-server (built with Go on first use, see scripts/livekit-server.mjs),
and the gateway's CPU per session. The gateway runs alone in a child process at normal priority;
livekit-server and one process holding every bench agent run at nice 10, so that on a small
machine the gateway gets the CPU first. A row that is still not a valid measurement of the gateway
(machine saturated, uplink frames dropped, event loop lagging) says so, with the reason.

Options:
  --sessions LIST  concurrent sessions per run (default 1,10,50)
  --seconds S      measured seconds per run, after a 3 s warm-up (default 10)
  --json           results as JSON on stdout
  -h, --help       this help`;

interface Stat {
  p50: number;
  p99: number;
  n: number;
}

interface Row {
  sessions: number;
  /** UDP datagram sent by the device → its 60 ms frame captured into the LiveKit AudioSource. */
  uplink: Stat;
  /** Agent frame received (the one completing a 60 ms device frame) → the datagram built (decoded from LiveKit, resampled, Opus-encoded, encrypted, handed to the pacer). */
  downlinkBuilt: Stat;
  /** Same start → the datagram sent by the pacer (adds the deliberate real-time pacing with its 2-frame lead). */
  downlinkSent: Stat;
  cpuPerSessionPct: number;
  cpuTotalPct: number;
  eventLoopP99Ms: number;
  eventLoopMaxMs: number;
  serverCpuPct: number;
  agentsCpuPct: number;
  driverCpuPct: number;
  machineBusyPct: number;
  cores: number;
  downlinkPacketsPerSession: number;
  uplinkDropped: number;
  /** Empty when the row is a valid measurement of the gateway; otherwise why not. */
  invalid: string[];
}

interface Failed {
  sessions: number;
  error: string;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..', '..');
/** Niceness of livekit-server and of the agents process: the gateway (0) gets the CPU first. */
const NICE = 10;

function percentile(sorted: number[], p: number): number {
  if (!sorted.length) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

function stat(xs: number[]): Stat {
  xs.sort((a, b) => a - b);
  return { p50: percentile(xs, 50), p99: percentile(xs, 99), n: xs.length };
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

/** CPU time of a process (ms) from /proc; NaN where there is no /proc. */
function procCpuMs(pid: number | undefined): number {
  if (!pid) return NaN;
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = f.slice(f.lastIndexOf(')') + 2).split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / 100; // utime + stime, USER_HZ 100
  } catch {
    return NaN;
  }
}

/** Whole-machine [busy, total] jiffies from /proc/stat. */
function machineJiffies(): [number, number] {
  try {
    const v = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
    const total = v.reduce((a, b) => a + b, 0);
    const idle = (v[3] ?? 0) + (v[4] ?? 0);
    return [total - idle, total];
  } catch {
    return [NaN, NaN];
  }
}

function fork2<T extends { type: string }>(script: string, cfg: object, nice: number): Promise<{ child: ChildProcess; first: T }> {
  const child = fork(join(here, script), [JSON.stringify(cfg)], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'], env: { ...process.env, NODE_ENV: 'production' } });
  if (nice && child.pid) {
    try {
      setPriority(child.pid, nice);
    } catch {}
  }
  return new Promise((resolve, reject) => {
    child.once('message', (m: T & { message?: string }) => (m.type === 'error' ? reject(new Error(m.message)) : resolve({ child, first: m })));
    child.once('exit', (code) => reject(new Error(`${script} exited (${code})`)));
  });
}

/** Sends `m` and waits for the reply of `type`; rejects on an error reply or if the child dies first. */
function ask<T>(child: ChildProcess, m: object, type: string): Promise<T> {
  return new Promise((resolve, reject) => {
    const done = (): void => {
      child.off('message', on);
      child.off('exit', onExit);
    };
    const on = (r: { type: string; message?: string }) => {
      if (r.type === type) {
        done();
        resolve(r as T);
      } else if (r.type === 'error') {
        done();
        reject(new Error(r.message));
      }
    };
    const onExit = (code: number | null, signal: string | null) => {
      done();
      reject(new Error(`${child.spawnfile} child exited (${signal ?? `code ${code}`}) before replying '${type}'`));
    };
    if (child.exitCode !== null || child.signalCode !== null) {
      onExit(child.exitCode, child.signalCode);
      return;
    }
    child.on('message', on);
    child.once('exit', onExit);
    child.send(m, (err) => {
      if (err) {
        done();
        reject(err);
      }
    });
  });
}

async function run(n: number, seconds: number, server: { url: string; apiKey: string; apiSecret: string; pid?: number }): Promise<Row> {
  const cfg = { livekitUrl: server.url, apiKey: server.apiKey, apiSecret: server.apiSecret };
  const gwp = await fork2<Extract<FromChild, { type: 'ready' }>>('gateway-child.js', cfg, 0);
  const child = gwp.child;
  const ports = gwp.first.ports;
  let agentsChild: ChildProcess | null = null;
  const devices: BenchDevice[] = [];
  const packets = uplinkPackets();
  let streaming = true;
  let loops: Promise<void>[] = [];
  try {
    const setupStart = performance.now();
    agentsChild = (await fork2<FromAgents>('agents-child.js', cfg, NICE)).child;
    // Devices say hello a few at a time (each session joins a room: two peer connections).
    for (let i = 0; i < n; i += 5) {
      await Promise.all(Array.from({ length: Math.min(5, n - i) }, async (_, k) => {
        const idx = i + k;
        const mac = `02:00:00:02:${(idx >> 8).toString(16).padStart(2, '0')}:${(idx & 0xff).toString(16).padStart(2, '0')}`;
        devices.push(await BenchDevice.connect(ports.http, mac));
      }));
    }
    const rooms = devices.map((d, i) => ({ room: `xiaozhi-${d.mac.replace(/:/g, '')}-${d.sessionId}`, identity: `bench-agent-${i}` }));
    await ask(agentsChild, { type: 'join', rooms } satisfies ToAgents, 'joined');
    process.stderr.write(`bench e2e: ${n} device(s) and agent(s) connected (${((performance.now() - setupStart) / 1000).toFixed(0)} s)\n`);
    // Devices stream at their real cadence (each on its own phase), agents speak without pause.
    loops = devices.map(async (d, i) => {
      await sleep((i * 60) / devices.length);
      const start = performance.now();
      for (let k = 0; streaming; k++) {
        const wait = start + k * 60 - performance.now();
        if (wait > 0) await sleep(wait);
        d.sendOpus(packets[k % packets.length]!);
      }
    });
    agentsChild.send({ type: 'speak' } satisfies ToAgents);
    await sleep(3000);
    child.send({ type: 'mark' } satisfies ToChild);
    const markAbs = performance.timeOrigin + performance.now();
    const server0 = procCpuMs(server.pid);
    const agents0 = procCpuMs(agentsChild.pid);
    const driver0 = process.cpuUsage();
    const [busy0, total0] = machineJiffies();
    const wall0 = performance.now();
    await sleep(seconds * 1000);
    const report = await ask<ChildReport>(child, { type: 'collect' } satisfies ToChild, 'report');
    const wallMs = performance.now() - wall0;
    const endAbs = performance.timeOrigin + performance.now();
    const serverCpuPct = ((procCpuMs(server.pid) - server0) / wallMs) * 100;
    const agentsCpuPct = ((procCpuMs(agentsChild.pid) - agents0) / wallMs) * 100;
    const du = process.cpuUsage(driver0);
    const driverCpuPct = ((du.user + du.system) / 1000 / wallMs) * 100;
    const [busy1, total1] = machineJiffies();
    const cores = availableParallelism();
    const machineBusyPct = ((busy1 - busy0) / (total1 - total0)) * 100;
    streaming = false;
    await Promise.all(loops);

    const up: number[] = [];
    const built: number[] = [];
    const sent: number[] = [];
    let uplinkUnmatched = 0;
    let turnsCut = 0;
    for (const d of devices) {
      // Uplink: matched by the datagram's sequence (the device sends 1, 2, 3...: d.sent[seq - 1]),
      // so a frame the bridge dropped costs its own sample, not the alignment of every later one.
      const cap = report.uplinkCaptured[d.sessionId] ?? [];
      for (const [seq, at] of cap) {
        const sentAt = d.sent[seq - 1];
        if (sentAt === undefined) {
          uplinkUnmatched++;
          continue;
        }
        if (sentAt >= markAbs && at <= endAbs) up.push(at - sentAt);
      }
      // Downlink: datagram j carries forwarded samples [j*2880, (j+1)*2880) of the turn (48 kHz);
      // it is due when the agent frame completing them has been received.
      const fwd = report.downlinkForwarded[d.sessionId] ?? [];
      const b = report.downlinkBuilt[d.sessionId] ?? [];
      const s = report.downlinkSent[d.sessionId] ?? [];
      // One continuous turn is matched: after a turn end (the agent's audio paused, e.g. under
      // load) the device frames restart from a padded partial frame, so matching stops there.
      const turnEnd = report.turnEnds[d.sessionId]?.[0] ?? Infinity;
      if (turnEnd < endAbs) turnsCut++;
      let f = 0;
      for (let j = 0; j < b.length && b[j]! < turnEnd; j++) {
        const need = (j + 1) * 2880;
        while (f < fwd.length && fwd[f]![0] < need) f++;
        if (f >= fwd.length) break;
        const due = fwd[f]![1];
        if (due < markAbs || due > endAbs) continue;
        built.push(b[j]! - due);
        if (j < s.length) sent.push(s[j]! - due);
      }
    }
    const cpuPct = ((report.cpuUserUs + report.cpuSystemUs) / 1000 / report.wallMs) * 100;
    const invalid: string[] = [];
    if (report.uplinkDropped > 0) invalid.push(`the bridge dropped ${report.uplinkDropped} uplink frames (the AudioSource pushed back: the LiveKit side did not keep up)`);
    if (uplinkUnmatched > 0) invalid.push(`${uplinkUnmatched} captured frames carry no sequence the device sent`);
    if (turnsCut > 0) invalid.push(`in ${turnsCut} session(s) the agent's audio paused (turn ended) before the end of the window: downlink matched up to there only`);
    if (report.livekitSessions !== n) invalid.push(`${report.livekitSessions} of ${n} LiveKit sessions open in the gateway`);
    if (machineBusyPct > 95) invalid.push(`the machine was saturated (${machineBusyPct.toFixed(0)} % of ${cores} cores busy): figures include waiting for a CPU`);
    if (report.eventLoopP99Ms > 50) invalid.push(`the gateway's event loop lagged (p99 ${report.eventLoopP99Ms.toFixed(0)} ms)`);
    return {
      sessions: n,
      uplink: stat(up),
      downlinkBuilt: stat(built),
      downlinkSent: stat(sent),
      cpuPerSessionPct: cpuPct / n,
      cpuTotalPct: cpuPct,
      eventLoopP99Ms: report.eventLoopP99Ms,
      eventLoopMaxMs: report.eventLoopMaxMs,
      serverCpuPct,
      agentsCpuPct,
      driverCpuPct,
      machineBusyPct,
      cores,
      downlinkPacketsPerSession: built.length / n / seconds,
      uplinkDropped: report.uplinkDropped,
      invalid,
    };
  } finally {
    streaming = false;
    await Promise.all(loops);
    if (agentsChild && agentsChild.exitCode === null) {
      agentsChild.send({ type: 'stop' } satisfies ToAgents);
      await Promise.race([new Promise((r) => agentsChild!.once('exit', r)), sleep(30000)]);
      agentsChild.kill();
    }
    await Promise.allSettled(devices.map((d) => d.close()));
    if (child.exitCode === null) {
      child.send({ type: 'stop' } satisfies ToChild);
      await Promise.race([new Promise((r) => child.once('exit', r)), sleep(30000)]);
      child.kill();
    }
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
    startLivekitServer(o?: object): Promise<{ url: string; apiKey: string; apiSecret: string; pid?: number; stop(): Promise<void> }>;
    LIVEKIT_SERVER_VERSION: string;
  };
  process.stderr.write(`bench e2e: starting livekit-server ${lk.LIVEKIT_SERVER_VERSION} (built with Go on first use)\n`);
  const server = await lk.startLivekitServer({});
  if (server.pid) {
    try {
      setPriority(server.pid, NICE);
    } catch {}
  }
  const rows: Array<Row | Failed> = [];
  try {
    for (const n of sessions) {
      process.stderr.write(`bench e2e: ${n} session(s), ${seconds} s measured...\n`);
      try {
        const row = await run(n, seconds, { ...server, pid: server.pid });
        rows.push(row);
        process.stderr.write(`bench e2e: ${JSON.stringify(row)}\n`);
      } catch (err) {
        // Not silently skipped: the row says why it could not be measured.
        rows.push({ sessions: n, error: (err as Error).message.split('\n')[0]! });
        process.stderr.write(`bench e2e: ${n} session(s) could not be run: ${(err as Error).stack ?? err}\n`);
      }
    }
  } finally {
    await server.stop();
  }
  const machine = `${cpus()[0]?.model ?? 'cpu'} × ${availableParallelism()}, node ${process.version}`;
  if (json) {
    process.stdout.write(JSON.stringify({ machine, livekitServer: lk.LIVEKIT_SERVER_VERSION, seconds, nice: NICE, rows }, null, 2) + '\n');
    return rows.some((r) => 'error' in r) ? 1 : 0;
  }
  const f = (x: number) => (Number.isFinite(x) ? x.toFixed(1) : '–');
  const pp = (st: Stat) => `${f(st.p50).padStart(5)} / ${f(st.p99).padStart(5)}`;
  const lines = [
    `bench e2e — ${machine}; livekit-server ${lk.LIVEKIT_SERVER_VERSION} --dev on loopback; ${seconds} s measured per row`,
    `Processes: the gateway (nice 0, measured) | livekit-server and one process with every bench agent (nice ${NICE}) | this driver with the devices (nice 0).`,
    '',
    '| sessions | uplink ms p50 / p99 | downlink ms p50 / p99, gateway | downlink ms p50 / p99, incl. pacing | gateway CPU / session | gateway total | loop p99 | server | agents | machine busy | valid |',
    '| -------: | -----------------: | -----------------------------: | ----------------------------------: | --------------------: | ------------: | -------: | -----: | -----: | -----------: | :---- |',
  ];
  const notes: string[] = [];
  for (const r of rows) {
    if ('error' in r) {
      lines.push(`| ${r.sessions} | not measured | | | | | | | | | no: ${r.error} |`);
      continue;
    }
    lines.push(
      `| ${r.sessions} | ${pp(r.uplink)} | ${pp(r.downlinkBuilt)} | ${pp(r.downlinkSent)} | ${f(r.cpuPerSessionPct)} % of a core | ${f(r.cpuTotalPct)} % | ${f(r.eventLoopP99Ms)} ms | ${f(r.serverCpuPct)} % | ${f(r.agentsCpuPct)} % | ${f(r.machineBusyPct)} % of ${r.cores} | ${r.invalid.length ? 'no, see below' : 'yes'} |`,
    );
    for (const why of r.invalid) notes.push(`- ${r.sessions} sessions: ${why}.`);
  }
  lines.push(
    '',
    'uplink: UDP datagram sent by the device → its 60 ms frame captured into the LiveKit AudioSource (decrypt, Opus decode, resample 16→48 kHz, capture).',
    'downlink, gateway: agent frame received from LiveKit (the one completing a 60 ms device frame) → the device datagram built (resample 48→24 kHz, Opus encode, encrypt, handed to the pacer).',
    'downlink, incl. pacing: same start → the datagram sent; adds the deliberate real-time pacing (60 ms cadence, 2-frame lead) the device needs (PROTOCOL.md §3.3).',
    `CPU in % of one core over the measured window (server/agents: whole process, /proc); "machine busy" is all processes together.`,
  );
  if (notes.length) lines.push('', 'Rows that are not a valid measurement of the gateway alone:', ...notes);
  process.stdout.write(lines.join('\n') + '\n');
  return rows.some((r) => 'error' in r) ? 1 : 0;
}

// Direct use: node dist/bench/e2e/main.js [options] (until `bench e2e` is wired in bench/main.ts).
if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  runE2eBenchCli(process.argv.slice(2)).then((c) => (process.exitCode = c), (e: Error) => {
    process.stderr.write(`bench e2e: ${e.stack ?? e.message}\n`);
    process.exitCode = 1;
  });
}
