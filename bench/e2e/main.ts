// `xiaozhi-gateway bench e2e`: what a LiveKit session costs the gateway and the latency it adds in
// each direction with a real livekit-server, at N concurrent sessions, beside the floor: bare
// rtc-node doing the same LiveKit work (floor.ts), measured in the same run the same way.
//   uplink:   UDP datagram sent by the device → its 60 ms frame captured into the LiveKit AudioSource
//   downlink: agent frame received from LiveKit (the one completing a 60 ms device frame) → the
//             device datagram built (gateway's own work), and → sent (adds the deliberate pacing)
// Conversation: turns.ts (device talks 40 % of the time, the agent answers, 40 %).
// Processes: the gateway (or the floor) alone in a child (its CPU is its own, priority 0); every
// bench agent in ONE child process at nice 10, livekit-server at nice 10 (so on a small machine the
// measured process gets the CPU first); devices here (priority 0).
// Clocks: performance.timeOrigin + performance.now() in every process (same machine).
import { fork, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { availableParallelism, cpus, setPriority } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { OpusEncoder } from '../../src/index.js';
import { BenchDevice } from '../bench-device.js';
import type { FromFloor, ToFloor } from './floor.js';
import type { ChildReport, FromAgents, FromChild, ToAgents, ToChild } from './protocol.js';
import { LEGACY } from './legacy.js';
import { AGENT_TALK, DEVICE_TALK, deviceTalking, TURN_PERIOD_MS, type TurnPlan } from './turns.js';

const USAGE = `Usage: xiaozhi-gateway bench e2e [options]

A LiveKit session's cost in the gateway and the latency the gateway adds between a device (UDP)
and LiveKit, each way, p50/p99, at N concurrent sessions against a local livekit-server (built
with Go on first use, see scripts/livekit-server.mjs). At every N the same run also measures the
floor: one bare @livekit/rtc-node process doing the same LiveKit work as N sessions (N rooms, each
publishing the device's speech at the same rate and frame size and reading one agent track), and
prints the gateway's CPU per session beside it. The conversation takes turns: each device talks
${DEVICE_TALK[1] - DEVICE_TALK[0]} ms of every ${TURN_PERIOD_MS} ms, its agent answers ${AGENT_TALK[1] - AGENT_TALK[0]} ms after a pause.
The measured process (gateway or floor) runs alone in a child at normal priority; livekit-server
and one process holding every bench agent run at nice 10. A row that is still not a valid
measurement (machine saturated, uplink frames dropped, event loop lagging) says so, with the reason.

Options:
  --sessions LIST  concurrent sessions per run (default 5,20); the first and last are compared
  --seconds S      measured seconds per run, after a 3 s warm-up (default 15: two turn cycles)
  --workers W      the gateway as W shared-nothing worker processes (default 1), as
                   \`start --workers W\` runs it: each owns its devices end to end (MQTT, UDP,
                   native streams, LiveKit rooms); devices are spread over them round-robin, CPU
                   is the sum of all of them, the event-loop p99 the worst one's. The primary's
                   only job, handing each new connection to a worker, is not on this path.
  --no-floor       skip the floor
  --ab LIST        A/B of cost cuts: at each N, one more gateway run per named cut with the old
                   behaviour back (${Object.keys(LEGACY).join(', ')}); printed as a ratio to the current gateway
  --profile DIR    the gateway child runs with --cpu-prof (profiles in DIR) and --perf-basic-prof
                   (/tmp/perf-<pid>.map, for perf record -g -p <pid>; its pid is on stderr)
  --json           results as JSON on stdout
  -h, --help       this help`;

interface Stat {
  p50: number;
  p99: number;
  n: number;
}

interface Row {
  sessions: number;
  /** Gateway worker processes the sessions were spread over. */
  workers: number;
  /** The busiest worker's main JS thread, % of a core: 100 is where one more process would help. */
  mainThreadMaxPct: number;
  /** The gateway's extra environment (an A/B row: the old behaviour of a cost cut switched back on). */
  env?: Record<string, string>;
  /** UDP datagram sent by the device → its 60 ms frame captured into the LiveKit AudioSource. */
  uplink: Stat;
  /** Agent frame received (the one completing a 60 ms device frame) → the datagram built (decoded from LiveKit, resampled, Opus-encoded, encrypted, handed to the pacer). */
  downlinkBuilt: Stat;
  /** Same start → the datagram sent by the pacer (adds the deliberate real-time pacing with its 2-frame lead). */
  downlinkSent: Stat;
  /** Same, for the datagrams that waited for the turn's `tts start` head start (not counted in downlinkSent). */
  turnStart: Stat;
  cpuPerSessionPct: number;
  cpuTotalPct: number;
  threads: Record<string, number>;
  threadTop: Record<string, number>;
  eventLoopP99Ms: number;
  eventLoopMaxMs: number;
  serverCpuPct: number;
  agentsCpuPct: number;
  driverCpuPct: number;
  machineBusyPct: number;
  cores: number;
  downlinkPacketsPerSession: number;
  uplinkDropped: number;
  uplinkShed: number;
  downlinkDropped: number;
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
/** After the turns begin, before the measured window. */
const WARMUP_MS = 3000;

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

function fork2<T extends { type: string }>(script: string, cfg: object, nice: number, env?: Record<string, string>, execArgv?: string[]): Promise<{ child: ChildProcess; first: T }> {
  const child = fork(join(here, script), [JSON.stringify(cfg)], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'], env: { ...process.env, NODE_ENV: 'production', ...env }, ...(execArgv ? { execArgv } : {}) });
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

/** CPU time (ms) of each thread of a process, by thread id, with its name (/proc/<pid>/task). */
function threadCpuMs(pid: number | undefined): Map<number, { name: string; ms: number }> {
  const out = new Map<number, { name: string; ms: number }>();
  if (!pid) return out;
  let tids: string[] = [];
  try {
    tids = readdirSync(`/proc/${pid}/task`);
  } catch {
    return out;
  }
  for (const tid of tids) {
    try {
      const f = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const name = f.slice(f.indexOf('(') + 1, f.lastIndexOf(')'));
      const fields = f.slice(f.lastIndexOf(')') + 2).split(' ');
      out.set(Number(tid), { name, ms: ((Number(fields[11]) + Number(fields[12])) * 1000) / 100 });
    } catch {}
  }
  return out;
}

/**
 * Where a process's CPU went, by thread kind, in % of a core over `wallMs`: the main JS thread, the
 * rtc-node FFI's tokio runtime threads, libwebrtc's threads (AudioEncoder, SyntheticAudioDevice,
 * AudioSourceCapture, network/worker threads), and Node's own other threads, unnamed on Node 20:
 * the libuv pool, where the gateway's native pipeline (Opus, AES, resampling) runs, and V8's.
 * Thread names as the kernel keeps them (15 characters).
 */
function threadSplit(pid: number, before: Map<number, { name: string; ms: number }>, after: Map<number, { name: string; ms: number }>, wallMs: number): Record<string, number> {
  const split: Record<string, number> = {};
  for (const [tid, a] of after) {
    const d = a.ms - (before.get(tid)?.ms ?? 0);
    if (d <= 0) continue;
    const kind = tid === pid ? 'main JS'
      : /tokio|livekit/i.test(a.name) ? 'rtc-node tokio'
      : /^(libuv|V8 |node$|DelayedTask|SignalInspector)/.test(a.name) ? 'node pool (gateway codec work, V8 GC)'
      : 'libwebrtc / other';
    split[kind] = (split[kind] ?? 0) + (d / wallMs) * 100;
  }
  return split;
}

/** Thread names and their CPU (% of a core), busiest first: the raw material of PROFILE.md. */
function threadTop(before: Map<number, { name: string; ms: number }>, after: Map<number, { name: string; ms: number }>, wallMs: number): Record<string, number> {
  const by: Record<string, number> = {};
  for (const [tid, a] of after) {
    const d = a.ms - (before.get(tid)?.ms ?? 0);
    if (d > 0) by[a.name.replace(/[0-9]+$/, '#')] = (by[a.name.replace(/[0-9]+$/, '#')] ?? 0) + (d / wallMs) * 100;
  }
  return Object.fromEntries(Object.entries(by).sort((x, y) => y[1] - x[1]).slice(0, 12).map(([k, v]) => [k, Math.round(v * 10) / 10]));
}

interface Measured {
  cpuPct: number;
  threads: Record<string, number>;
  threadTop: Record<string, number>;
  /** The busiest process's main JS thread (% of a core). */
  mainThreadMaxPct: number;
  serverCpuPct: number;
  agentsCpuPct: number;
  machineBusyPct: number;
  wallMs: number;
}

/** CPU of `pids` (all threads of each, /proc; summed) and of the rest over `seconds`, measured the same way for the gateway and the floor. */
async function measure(pids: number[], seconds: number, serverPid: number | undefined, agentsPid: number | undefined): Promise<Measured> {
  const p0 = pids.map(procCpuMs);
  const t0 = pids.map(threadCpuMs);
  const server0 = procCpuMs(serverPid);
  const agents0 = procCpuMs(agentsPid);
  const [busy0, total0] = machineJiffies();
  const wall0 = performance.now();
  await sleep(seconds * 1000);
  const wallMs = performance.now() - wall0;
  const p1 = pids.map(procCpuMs);
  const t1 = pids.map(threadCpuMs);
  const [busy1, total1] = machineJiffies();
  const sum = (rs: Array<Record<string, number>>) => {
    const out: Record<string, number> = {};
    for (const r of rs) for (const [k, v] of Object.entries(r)) out[k] = (out[k] ?? 0) + v;
    return out;
  };
  const splits = pids.map((pid, i) => threadSplit(pid, t0[i]!, t1[i]!, wallMs));
  const tops = sum(pids.map((_, i) => threadTop(t0[i]!, t1[i]!, wallMs)));
  return {
    cpuPct: (pids.reduce((a, _, i) => a + (p1[i]! - p0[i]!), 0) / wallMs) * 100,
    threads: sum(splits),
    threadTop: Object.fromEntries(Object.entries(tops).sort((x, y) => y[1] - x[1]).slice(0, 12)),
    mainThreadMaxPct: Math.max(...splits.map((sp) => sp['main JS'] ?? 0)),
    serverCpuPct: ((procCpuMs(serverPid) - server0) / wallMs) * 100,
    agentsCpuPct: ((procCpuMs(agentsPid) - agents0) / wallMs) * 100,
    machineBusyPct: ((busy1 - busy0) / (total1 - total0)) * 100,
    wallMs,
  };
}

async function stopAgents(agentsChild: ChildProcess | null): Promise<void> {
  if (agentsChild && agentsChild.exitCode === null) {
    agentsChild.send({ type: 'stop' } satisfies ToAgents);
    await Promise.race([new Promise((r) => agentsChild.once('exit', r)), sleep(30000)]);
    agentsChild.kill();
  }
}

/** The turn plan of a run: starts shortly after everyone is connected. */
function planFor(n: number): TurnPlan {
  return { t0: performance.timeOrigin + performance.now() + 200, sessions: n };
}

interface GatewayOptions {
  /** Extra environment for the gateway child (the A/B switches of a cost cut). */
  env?: Record<string, string>;
  /** Node options of the gateway child (profiling). */
  execArgv?: string[];
  /** Worker processes (default 1). */
  workers?: number;
}

/** The reports of W workers as one: per-session maps joined (sessions are disjoint), counts summed, the worst event loop. */
function mergeReports(rs: ChildReport[]): ChildReport {
  const join = <K extends 'uplinkCaptured' | 'downlinkForwarded' | 'downlinkBuilt' | 'downlinkSent' | 'turnEnds'>(k: K) => Object.assign({}, ...rs.map((r) => r[k])) as ChildReport[K];
  const total = (k: 'cpuUserUs' | 'cpuSystemUs' | 'uplinkDropped' | 'uplinkShed' | 'downlinkDropped' | 'livekitSessions') => rs.reduce((a, r) => a + r[k], 0);
  return {
    type: 'report',
    uplinkCaptured: join('uplinkCaptured'), downlinkForwarded: join('downlinkForwarded'), downlinkBuilt: join('downlinkBuilt'), downlinkSent: join('downlinkSent'), turnEnds: join('turnEnds'),
    cpuUserUs: total('cpuUserUs'), cpuSystemUs: total('cpuSystemUs'), wallMs: Math.max(...rs.map((r) => r.wallMs)),
    eventLoopP99Ms: Math.max(...rs.map((r) => r.eventLoopP99Ms)), eventLoopMaxMs: Math.max(...rs.map((r) => r.eventLoopMaxMs)),
    uplinkDropped: total('uplinkDropped'), uplinkShed: total('uplinkShed'), downlinkDropped: total('downlinkDropped'), livekitSessions: total('livekitSessions'),
  };
}

async function stopGateway(child: ChildProcess): Promise<void> {
  if (child.exitCode === null) {
    child.send({ type: 'stop' } satisfies ToChild);
    await Promise.race([new Promise((r) => child.once('exit', r)), sleep(30000)]);
    child.kill();
  }
}

async function runGateway(n: number, seconds: number, server: { url: string; apiKey: string; apiSecret: string; pid?: number }, opts: GatewayOptions = {}): Promise<Row> {
  const cfg = { livekitUrl: server.url, apiKey: server.apiKey, apiSecret: server.apiSecret };
  const workers = opts.workers ?? 1;
  const started = await Promise.allSettled(Array.from({ length: workers }, () => fork2<Extract<FromChild, { type: 'ready' }>>('gateway-child.js', cfg, 0, opts.env, opts.execArgv)));
  const gateways = started.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
  if (gateways.length < workers) {
    await Promise.all(gateways.map((g) => stopGateway(g.child)));
    throw (started.find((r) => r.status === 'rejected') as PromiseRejectedResult).reason;
  }
  const children = gateways.map((g) => g.child);
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
      const batch = await Promise.all(Array.from({ length: Math.min(5, n - i) }, async (_, k) => {
        const idx = i + k;
        const mac = `02:00:00:02:${(idx >> 8).toString(16).padStart(2, '0')}:${(idx & 0xff).toString(16).padStart(2, '0')}`;
        return BenchDevice.connect(gateways[idx % workers]!.first.ports.http, mac);
      }));
      devices.push(...batch);
    }
    // A device's first datagrams prove its UDP address (3 in a row; nothing is sent to it before):
    // a real one sends audio as soon as it listens, before its agent can answer.
    for (let k = 0; k < 3; k++) {
      for (const d of devices) d.sendOpus(packets[k]!);
      await sleep(60);
    }
    const rooms = devices.map((d, i) => ({ room: `xiaozhi-${d.mac.replace(/:/g, '')}-${d.sessionId}`, identity: `bench-agent-${i}` }));
    await ask(agentsChild, { type: 'join', rooms } satisfies ToAgents, 'joined');
    process.stderr.write(`bench e2e: gateway (pid ${children.map((c) => c.pid).join(', ')}), ${n} device(s) and agent(s) connected (${((performance.now() - setupStart) / 1000).toFixed(0)} s)\n`);
    const plan = planFor(n);
    // Devices send at their real cadence (each on its own phase) while they talk (turns.ts).
    loops = devices.map(async (d, i) => {
      await sleep((i * 60) / devices.length);
      const start = performance.now();
      for (let k = 0; streaming; k++) {
        const wait = start + k * 60 - performance.now();
        if (wait > 0) await sleep(wait);
        if (deviceTalking(plan, i, performance.timeOrigin + performance.now())) d.sendOpus(packets[k % packets.length]!);
      }
    });
    agentsChild.send({ type: 'speak', plan } satisfies ToAgents);
    await sleep(WARMUP_MS);
    for (const c of children) c.send({ type: 'mark' } satisfies ToChild);
    const markAbs = performance.timeOrigin + performance.now();
    const driver0 = process.cpuUsage();
    const m = await measure(children.map((c) => c.pid!), seconds, server.pid, agentsChild.pid);
    const report = mergeReports(await Promise.all(children.map((c) => ask<ChildReport>(c, { type: 'collect' } satisfies ToChild, 'report'))));
    const endAbs = performance.timeOrigin + performance.now();
    const du = process.cpuUsage(driver0);
    const driverCpuPct = ((du.user + du.system) / 1000 / m.wallMs) * 100;
    const cores = availableParallelism();
    streaming = false;
    await Promise.all(loops);

    const up: number[] = [];
    const built: number[] = [];
    const sent: number[] = [];
    const turnStart: number[] = [];
    let uplinkUnmatched = 0;
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
      matchDownlink(report, d.sessionId, markAbs, endAbs, built, sent, turnStart);
    }
    const invalid: string[] = [];
    if (report.uplinkDropped > 0) invalid.push(`the bridge dropped ${report.uplinkDropped} uplink frames (the AudioSource pushed back: the LiveKit side did not keep up)`);
    if (uplinkUnmatched > 0) invalid.push(`${uplinkUnmatched} captured frames carry no sequence the device sent`);
    if (report.livekitSessions !== n) invalid.push(`${report.livekitSessions} of ${n} LiveKit sessions open in the gateway`);
    if (m.machineBusyPct > 95) invalid.push(`the machine was saturated (${m.machineBusyPct.toFixed(0)} % of ${cores} cores busy): figures include waiting for a CPU`);
    if (report.eventLoopP99Ms > 50) invalid.push(`the gateway's event loop lagged (p99 ${report.eventLoopP99Ms.toFixed(0)} ms${workers > 1 ? ', worst worker' : ''})`);
    return {
      sessions: n,
      workers,
      mainThreadMaxPct: m.mainThreadMaxPct,
      env: opts.env,
      uplink: stat(up),
      downlinkBuilt: stat(built),
      downlinkSent: stat(sent),
      turnStart: stat(turnStart),
      cpuPerSessionPct: m.cpuPct / n,
      cpuTotalPct: m.cpuPct,
      threads: m.threads,
      threadTop: m.threadTop,
      eventLoopP99Ms: report.eventLoopP99Ms,
      eventLoopMaxMs: report.eventLoopMaxMs,
      serverCpuPct: m.serverCpuPct,
      agentsCpuPct: m.agentsCpuPct,
      driverCpuPct,
      machineBusyPct: m.machineBusyPct,
      cores,
      downlinkPacketsPerSession: built.length / n / seconds,
      uplinkDropped: report.uplinkDropped,
      uplinkShed: report.uplinkShed,
      downlinkDropped: report.downlinkDropped,
      invalid,
    };
  } finally {
    streaming = false;
    await Promise.all(loops);
    await stopAgents(agentsChild);
    await Promise.allSettled(devices.map((d) => d.close()));
    await Promise.all(children.map(stopGateway));
  }
}

/**
 * Downlink of one session, turn by turn (a turn ends where the pacer was told so): datagram j of a
 * turn carries forwarded samples [j*2880, (j+1)*2880) of that turn (48 kHz) and is due when the
 * agent frame completing them was received. Datagrams that arrived while the turn's `tts start`
 * head start ran (sent together with the turn's first) are the turn start, reported apart: that
 * hold is the protocol's, not the pacer's lead.
 */
function matchDownlink(report: ChildReport, sid: string, from: number, to: number, built: number[], sent: number[], turnStart: number[]): void {
  const fwd = report.downlinkForwarded[sid] ?? [];
  const b = report.downlinkBuilt[sid] ?? [];
  const s = report.downlinkSent[sid] ?? [];
  const ends = [...(report.turnEnds[sid] ?? []), Infinity];
  let fi = 0;
  let bi = 0;
  let fwdBase = 0;
  for (const end of ends) {
    const firstFwd = fi;
    while (fi < fwd.length && fwd[fi]![1] < end) fi++;
    const turnFwd = fwd.slice(firstFwd, fi);
    const firstBuilt = bi;
    while (bi < b.length && b[bi]! < end) bi++;
    const firstSent = s[firstBuilt];
    let f = 0;
    for (let j = firstBuilt; j < bi; j++) {
      const need = fwdBase + (j - firstBuilt + 1) * 2880;
      while (f < turnFwd.length && turnFwd[f]![0] < need) f++;
      if (f >= turnFwd.length) break;  // the turn's padded last datagram
      const due = turnFwd[f]![1];
      if (due < from || due > to) continue;
      if (j >= s.length) continue;
      if (firstSent !== undefined && b[j]! <= firstSent) turnStart.push(s[j]! - due);
      else {
        built.push(b[j]! - due);
        sent.push(s[j]! - due);
      }
    }
    if (turnFwd.length) fwdBase = turnFwd[turnFwd.length - 1]![0];
    if (fi >= fwd.length && bi >= b.length) break;
  }
}

interface FloorRow {
  sessions: number;
  cpuPerSessionPct: number;
  cpuTotalPct: number;
  threads: Record<string, number>;
  threadTop: Record<string, number>;
  serverCpuPct: number;
  agentsCpuPct: number;
  machineBusyPct: number;
  /** Uplink frames the floor could not hand to its AudioSource in time (same bound as the gateway's). */
  uplinkDropped: number;
  captureErrors: number;
  agentFramesPerSession: number;
  subscribed: number;
}

/** The same LiveKit work as `n` gateway sessions, by bare rtc-node (floor.ts), with its agents, measured as the gateway is. */
async function runFloor(n: number, seconds: number, server: { url: string; apiKey: string; apiSecret: string; pid?: number }): Promise<FloorRow> {
  const cfg = { livekitUrl: server.url, apiKey: server.apiKey, apiSecret: server.apiSecret };
  const floor = (await fork2<FromFloor>('floor.js', cfg, 0)).child;
  let agentsChild: ChildProcess | null = null;
  try {
    const setupStart = performance.now();
    agentsChild = (await fork2<FromAgents>('agents-child.js', cfg, NICE)).child;
    const tag = Math.random().toString(36).slice(2, 8);
    const rooms = Array.from({ length: n }, (_, i) => ({ room: `floor-${tag}-${i}`, identity: `floor-device-${i}` }));
    await ask(floor, { type: 'join', rooms } satisfies ToFloor, 'joined');
    await ask(agentsChild, { type: 'join', rooms: rooms.map((r, i) => ({ room: r.room, identity: `bench-agent-${i}` })) } satisfies ToAgents, 'joined');
    process.stderr.write(`bench e2e: floor (pid ${floor.pid}), ${n} room(s) and agent(s) connected (${((performance.now() - setupStart) / 1000).toFixed(0)} s)\n`);
    const plan = planFor(n);
    floor.send({ type: 'speak', plan } satisfies ToFloor);
    agentsChild.send({ type: 'speak', plan } satisfies ToAgents);
    await sleep(WARMUP_MS);
    const r0 = await ask<Extract<FromFloor, { type: 'report' }>>(floor, { type: 'collect' } satisfies ToFloor, 'report');
    const m = await measure([floor.pid!], seconds, server.pid, agentsChild.pid);
    const r1 = await ask<Extract<FromFloor, { type: 'report' }>>(floor, { type: 'collect' } satisfies ToFloor, 'report');
    return {
      sessions: n,
      cpuPerSessionPct: m.cpuPct / n,
      cpuTotalPct: m.cpuPct,
      threads: m.threads,
      threadTop: m.threadTop,
      serverCpuPct: m.serverCpuPct,
      agentsCpuPct: m.agentsCpuPct,
      machineBusyPct: m.machineBusyPct,
      uplinkDropped: r1.dropped - r0.dropped,
      captureErrors: r1.captureErrors - r0.captureErrors,
      agentFramesPerSession: (r1.agentFrames - r0.agentFrames) / n / seconds,
      subscribed: r1.subscribed,
    };
  } finally {
    await stopAgents(agentsChild);
    if (floor.exitCode === null) {
      floor.send({ type: 'stop' } satisfies ToFloor);
      await Promise.race([new Promise((r) => floor.once('exit', r)), sleep(30000)]);
      floor.kill();
    }
  }
}

type Server = { url: string; apiKey: string; apiSecret: string; pid?: number };

/** One N: the gateway, the floor, and the A/B rows. */
interface Level {
  sessions: number;
  gateway: Row | Failed;
  floor?: FloorRow | Failed;
  ab: Record<string, Row | Failed>;
}

async function attempt<T>(n: number, what: string, f: () => Promise<T>): Promise<T | Failed> {
  process.stderr.write(`bench e2e: ${what}, ${n} session(s)...\n`);
  try {
    const r = await f();
    process.stderr.write(`bench e2e: ${what} ${n}: ${JSON.stringify(r)}\n`);
    return r;
  } catch (err) {
    // Not silently skipped: the row says why it could not be measured.
    process.stderr.write(`bench e2e: ${what}, ${n} session(s) could not be run: ${(err as Error).stack ?? err}\n`);
    return { sessions: n, error: (err as Error).message.split('\n')[0]! };
  }
}

export async function runE2eBenchCli(argv: string[]): Promise<number> {
  let sessions = [5, 20];
  let seconds = 15;
  let json = false;
  let floor = true;
  let ab: string[] = [];
  let workers = 1;
  let execArgv: string[] | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '-h' || a === '--help') {
      process.stdout.write(USAGE + '\n');
      return 0;
    } else if (a === '--json') json = true;
    else if (a === '--no-floor') floor = false;
    else if (a === '--sessions') sessions = (argv[++i] ?? '').split(',').map(Number);
    else if (a === '--seconds') seconds = Number(argv[++i]);
    else if (a === '--workers') workers = Number(argv[++i]);
    else if (a === '--ab') ab = (argv[++i] ?? '').split(',').filter(Boolean);
    else if (a === '--profile') {
      const dir = argv[++i] ?? '.';
      // --perf-basic-prof also turns on V8's code log: kept with the profiles, not in the cwd.
      execArgv = ['--cpu-prof', `--cpu-prof-dir=${dir}`, '--perf-basic-prof', '--no-logfile-per-isolate', `--logfile=${join(dir, 'v8.log')}`];
    }
    else {
      process.stderr.write(`xiaozhi-gateway bench e2e: unknown option '${a}'\n\n${USAGE}\n`);
      return 2;
    }
  }
  if (!sessions.every((s) => Number.isInteger(s) && s > 0) || !(seconds > 0) || !(Number.isInteger(workers) && workers > 0)) {
    process.stderr.write(`xiaozhi-gateway bench e2e: --sessions and --workers take positive integers, --seconds a positive number\n`);
    return 2;
  }
  const unknown = ab.filter((x) => !(x in LEGACY));
  if (unknown.length) {
    process.stderr.write(`xiaozhi-gateway bench e2e: --ab knows ${Object.keys(LEGACY).join(', ')} (not ${unknown.join(', ')})\n`);
    return 2;
  }
  const lk = (await import(pathToFileURL(join(root, 'scripts', 'livekit-server.mjs')).href)) as {
    startLivekitServer(o?: object): Promise<Server & { stop(): Promise<void> }>;
    LIVEKIT_SERVER_VERSION: string;
  };
  process.stderr.write(`bench e2e: starting livekit-server ${lk.LIVEKIT_SERVER_VERSION} (built with Go on first use)\n`);
  const server = await lk.startLivekitServer({});
  if (server.pid) {
    try {
      setPriority(server.pid, NICE);
    } catch {}
  }
  const srv: Server = { url: server.url, apiKey: server.apiKey, apiSecret: server.apiSecret, pid: server.pid };
  const levels: Level[] = [];
  const started = performance.now();
  try {
    for (const n of sessions) {
      const level: Level = { sessions: n, gateway: await attempt(n, 'gateway', () => runGateway(n, seconds, srv, { execArgv, workers })), ab: {} };
      if (floor) level.floor = await attempt(n, 'floor', () => runFloor(n, seconds, srv));
      for (const cut of ab) level.ab[cut] = await attempt(n, `gateway with ${cut} reverted`, () => runGateway(n, seconds, srv, { env: { XZ_BENCH_LEGACY: cut }, workers }));
      levels.push(level);
    }
  } finally {
    await server.stop();
  }
  const failed = levels.some((l) => 'error' in l.gateway || (l.floor && 'error' in l.floor) || Object.values(l.ab).some((r) => 'error' in r));
  const machine = `${cpus()[0]?.model ?? 'cpu'} × ${availableParallelism()}, node ${process.version}`;
  const ok = <T extends object>(r: T | Failed | undefined): T | undefined => (r && !('error' in r) ? r : undefined);
  const first = levels[0];
  const last = levels[levels.length - 1];
  const flat = (pick: (l: Level) => { cpuPerSessionPct: number } | undefined) => {
    const a = first && pick(first);
    const b = last && pick(last);
    return a && b && last !== first ? b.cpuPerSessionPct / a.cpuPerSessionPct : NaN;
  };
  const summary = {
    /** Gateway CPU per session ÷ floor CPU per session, per N (target ≤ 1.25). */
    ratioToFloor: Object.fromEntries(levels.map((l) => [l.sessions, (ok(l.gateway)?.cpuPerSessionPct ?? NaN) / (ok(l.floor)?.cpuPerSessionPct ?? NaN)])),
    /** Per-session CPU at the largest N ÷ at the first N (target ≤ 1.15). */
    gatewayFlatness: flat((l) => ok(l.gateway)),
    floorFlatness: flat((l) => ok(l.floor)),
    /** A/B: CPU per session with the cut reverted ÷ the current gateway's, per N. */
    ab: Object.fromEntries(ab.map((cut) => [cut, Object.fromEntries(levels.map((l) => [l.sessions, (ok(l.ab[cut])?.cpuPerSessionPct ?? NaN) / (ok(l.gateway)?.cpuPerSessionPct ?? NaN)]))])),
    runSeconds: (performance.now() - started) / 1000,
  };
  if (json) {
    process.stdout.write(JSON.stringify({ machine, livekitServer: lk.LIVEKIT_SERVER_VERSION, workers, seconds, nice: NICE, turns: { periodMs: TURN_PERIOD_MS, device: DEVICE_TALK, agent: AGENT_TALK }, levels, summary }, null, 2) + '\n');
    return failed ? 1 : 0;
  }
  const f = (x: number | undefined, d = 1) => (x !== undefined && Number.isFinite(x) ? x.toFixed(d) : '–');
  const pp = (st: Stat) => `${f(st.p50).padStart(5)} / ${f(st.p99).padStart(5)}`;
  const split = (t: Record<string, number>) => Object.entries(t).sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ${v.toFixed(1)}`).join(', ');
  const lines = [
    `bench e2e — ${machine}; livekit-server ${lk.LIVEKIT_SERVER_VERSION} --dev on loopback; ${seconds} s measured per row; run took ${f(summary.runSeconds / 60)} min`,
    `Turns: each device talks ${DEVICE_TALK[1] - DEVICE_TALK[0]} ms of every ${TURN_PERIOD_MS} ms, its agent answers for ${AGENT_TALK[1] - AGENT_TALK[0]} ms (both ${f(((DEVICE_TALK[1] - DEVICE_TALK[0]) / TURN_PERIOD_MS) * 100, 0)} % of the time).`,
    `Processes: the gateway${workers > 1 ? ` as ${workers} worker processes (sessions spread round-robin; CPU summed)` : ''} or the floor (nice 0, measured, all threads from /proc) | livekit-server and one process with every bench agent (nice ${NICE}) | this driver with the devices (nice 0).`,
    '',
    '| sessions | gateway CPU / session | floor CPU / session | ratio to floor | uplink ms p50 / p99 | downlink ms p50 / p99, gateway | downlink ms p50 / p99, incl. pacing | turn start ms p50 / p99 | drops up / shed / down | loop p99 | machine busy | valid |',
    '| -------: | --------------------: | ------------------: | -------------: | -----------------: | -----------------------------: | ----------------------------------: | ----------------------: | ---------------------: | -------: | -----------: | :---- |',
  ];
  const notes: string[] = [];
  for (const l of levels) {
    const g = l.gateway;
    const fl = ok(l.floor);
    if ('error' in g) {
      lines.push(`| ${l.sessions} | not measured | ${f(fl?.cpuPerSessionPct, 2)} % | | | | | | | | | no: ${g.error} |`);
      continue;
    }
    lines.push(
      `| ${l.sessions} | ${f(g.cpuPerSessionPct, 2)} % | ${f(fl?.cpuPerSessionPct, 2)} % | ${f(summary.ratioToFloor[l.sessions], 2)}× | ${pp(g.uplink)} | ${pp(g.downlinkBuilt)} | ${pp(g.downlinkSent)} | ${pp(g.turnStart)} | ${g.uplinkDropped} / ${g.uplinkShed} / ${g.downlinkDropped} | ${f(g.eventLoopP99Ms)} ms | ${f(g.machineBusyPct, 0)} % of ${g.cores} | ${g.invalid.length ? 'no, see below' : 'yes'} |`,
    );
    for (const why of g.invalid) notes.push(`- ${l.sessions} sessions: ${why}.`);
    if (l.floor && 'error' in l.floor) notes.push(`- ${l.sessions} sessions: the floor could not be measured: ${l.floor.error}.`);
    if (fl && (fl.uplinkDropped > 0 || fl.captureErrors > 0)) notes.push(`- ${l.sessions} sessions: the floor dropped ${fl.uplinkDropped} uplink frames (${fl.captureErrors} capture errors).`);
    if (fl && fl.subscribed < l.sessions) notes.push(`- ${l.sessions} sessions: the floor read ${fl.subscribed} of ${l.sessions} agent tracks.`);
  }
  lines.push(
    '',
    `Per-session CPU at ${last?.sessions} ÷ at ${first?.sessions} sessions: gateway ${f(summary.gatewayFlatness, 2)}×, floor ${f(summary.floorFlatness, 2)}× (target for the gateway ≤ 1.15×; ratio to floor target ≤ 1.25×).`,
    '',
    'CPU by thread (% of one core, whole process):',
  );
  for (const l of levels) {
    const g = ok(l.gateway);
    const fl = ok(l.floor);
    if (g) lines.push(`- gateway ${l.sessions}: ${split(g.threads)} | busiest: ${split(g.threadTop)} | busiest main thread ${g.mainThreadMaxPct.toFixed(1)}`);
    if (fl) lines.push(`- floor ${l.sessions}: ${split(fl.threads)} | busiest: ${split(fl.threadTop)}`);
  }
  if (ab.length) {
    lines.push('', '| cost cut (old behaviour back) | sessions | CPU / session, old | CPU / session, now | old ÷ now |', '| :-- | --: | --: | --: | --: |');
    for (const cut of ab) {
      for (const l of levels) {
        const old = ok(l.ab[cut]);
        lines.push(`| ${cut}: ${LEGACY[cut]} | ${l.sessions} | ${f(old?.cpuPerSessionPct, 2)} % | ${f(ok(l.gateway)?.cpuPerSessionPct, 2)} % | ${f(summary.ab[cut]?.[l.sessions], 2)}× |`);
      }
    }
  }
  lines.push(
    '',
    'CPU per session: % of one core over the measured window, every thread of the process (/proc/<pid>/stat), the gateway and the floor measured the same way.',
    'floor: one bare @livekit/rtc-node process doing the LiveKit work of N sessions and nothing else (bench/e2e/floor.ts).',
    'uplink: UDP datagram sent by the device → its 60 ms frame captured into the LiveKit AudioSource (decrypt, Opus decode, resample 16→48 kHz, capture).',
    'downlink, gateway: agent frame received from LiveKit (the one completing a 60 ms device frame) → the device datagram built (resample 48→24 kHz, Opus encode, encrypt, handed to the pacer).',
    'downlink, incl. pacing: same start → the datagram sent; adds the deliberate real-time pacing (60 ms cadence, 2-frame lead) the device needs (PROTOCOL.md §3.3).',
    "turn start: the datagrams that waited for the turn's `tts start` head start (150 ms, MQTT races UDP), left out of the pacing column.",
    'drops: uplink frames dropped by the bridge (AudioSource pushed back) / shed (standing backlog) / downlink frames dropped (barge-in discards, pacer backlog).',
  );
  if (notes.length) lines.push('', 'Rows that are not a valid measurement of the gateway alone:', ...notes);
  process.stdout.write(lines.join('\n') + '\n');
  return failed ? 1 : 0;
}

// Direct use: node dist/bench/e2e/main.js [options] (until `bench e2e` is wired in bench/main.ts).
if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  runE2eBenchCli(process.argv.slice(2)).then((c) => (process.exitCode = c), (e: Error) => {
    process.stderr.write(`bench e2e: ${e.stack ?? e.message}\n`);
    process.exitCode = 1;
  });
}
