// Runs N simulated devices against a gateway for a while and sums up what they saw.
import { createHash } from 'node:crypto';
import { cpus, platform } from 'node:os';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { buildUplinkClip, type UplinkClip } from './audio.js';
import { Scheduler } from './clock.js';
import { createDecodeService, type DecodeService } from './decoder.js';
import { SimDevice } from './device.js';
import { firmwareRules, type FirmwareProfileName, type ListeningMode } from './firmware.js';
import { GatewayMonitor, type GatewayResourceReport } from './gateway-metrics.js';
import type { DeviceIdentity } from './ota.js';
import { DROP_REASONS, type DropReason } from './receiver.js';
import { distribution, emptyDrops, emptyFailures, FAILURE_KINDS, type Distribution, type FailureKind } from './stats.js';

export interface SimulationOptions {
  /** OTA URL of the gateway, e.g. http://127.0.0.1:8003/xiaozhi/ota/ */
  gateway: string;
  devices: number;
  /** Run time in seconds (devices stop starting new turns after it, then finish the current one). */
  durationS: number;
  firmware?: FirmwareProfileName;
  mode?: ListeningMode;
  /** Devices power on spread over this many ms (default min(10 s, 25 ms × devices)). */
  rampMs?: number;
  speakMs?: number;
  pauseMs?: number;
  /** Barge in every N-th turn (0 = never, default). */
  abortEvery?: number;
  abortAfterMs?: number;
  /** New session (goodbye + hello) every N turns (0 = one session for the whole run, default). */
  turnsPerSession?: number;
  /** Raw s16le mono 16 kHz speech; default synthesised speech. */
  audioFile?: string;
  /** Opus decode threads for the downlink (default: 0 below 20 devices, else 1–2). */
  decodeThreads?: number;
  /** Decode downlink Opus at all (decode-failure drops, echo fidelity). Default true. */
  decode?: boolean;
  seed?: number;
  board?: string;
  language?: string;
  /** Accept self-signed TLS (OTA https, MQTT on 8883). */
  insecure?: boolean;
  /**
   * Give every device its own source address, as real devices have (gateways limit connects and
   * bind UDP per IP). 'auto' (default): on Linux, devices talking to a loopback gateway use
   * 127.<n>.x.y; 'off': the OS picks (all devices share one address).
   */
  sourceAddresses?: 'auto' | 'off';
  replyTimeoutMs?: number;
  ttsStopTimeoutMs?: number;
  /** After the duration, how long devices may take to finish their turn (default speak+pause+reply timeouts). */
  drainTimeoutMs?: number;
  /** Scrape the gateway's /metrics (default true). */
  gatewayMetrics?: boolean;
  progressIntervalMs?: number;
  onProgress?: (p: SimulationProgress) => void;
  log?: (line: string) => void;
  /** Pre-built clip (tests reuse one). */
  clip?: UplinkClip;
}

export interface SimulationProgress {
  elapsedS: number;
  durationS: number;
  phase: 'ramp' | 'run' | 'drain';
  devices: number;
  mqttConnected: number;
  inSession: number;
  sessionsOpened: number;
  turnsCompleted: number;
  uplinkPackets: number;
  downlinkDatagrams: number;
  deviceDrops: number;
  violations: number;
  failures: number;
  latencyP50Ms: number | null;
  gatewayCpuPercent: number | null;
  gatewayRssBytes: number | null;
}

export interface SimulationSummary {
  ok: boolean;
  /** Human-readable reasons for !ok. */
  problems: string[];
  config: {
    gateway: string;
    devices: number;
    durationS: number;
    firmware: FirmwareProfileName;
    mode: ListeningMode;
    rampMs: number;
    speakMs: number;
    pauseMs: number;
    abortEvery: number;
    turnsPerSession: number;
    audio: string;
    decode: string;
    /** Where the round-trip latency starts: the device's listen stop, or (realtime) the end of its speech. */
    latencyFrom: 'listen stop' | 'end of speech';
  };
  elapsedS: number;
  sessions: { opened: number; helloSent: number; closedByServer: number; closedByDevice: number; devicesWithSession: number };
  turns: { started: number; completed: number; bargeIns: number };
  latencyMs: Distribution;
  ttsStartMs: Distribution;
  uplink: { packets: number; bytes: number };
  downlink: {
    datagrams: number;
    bytes: number;
    queued: number;
    played: number;
    lost: number;
    reordered: number;
    duplicates: number;
    lossPercent: number;
    reorderPercent: number;
    maxQueueDepth: number;
  };
  deviceDrops: Record<DropReason, number> & { total: number };
  violations: { ttsStopBeforeLastAudio: number };
  failures: Record<FailureKind, number> & { total: number };
  abort: { bargeIns: number; stopDelayMs: Distribution; packetsLaterThanOneFrame: number };
  echo: { fidelity: Distribution; completeness: Distribution };
  messages: Record<string, number>;
  mcp: { requests: number; replies: number };
  reboots: number;
  gateway: GatewayResourceReport;
  simulator: {
    cpuPercent: number;
    rssBytes: number;
    maxTimerLatenessMs: number;
    /** The simulator's own event-loop delay: its latency numbers include this much noise. */
    eventLoopDelayP99Ms: number;
    eventLoopDelayMaxMs: number;
    decode: string;
  };
  /** Things to know when reading the numbers (not failures). */
  notes: string[];
  /** Per-device failure notes (first 20). */
  deviceErrors: string[];
}

const round1 = (x: number): number => Math.round(x * 10) / 10;

function identityFor(index: number, seed: number, board: string, version: string, language: string): DeviceIdentity {
  const h = createHash('sha256').update(`xiaozhi-sim:${seed}:${index}`).digest();
  const s = seed & 0xff;
  // Locally administered unicast MAC: 02:<seed>:<index as 4 bytes>, unique per run seed.
  const mac = [0x02, s, (index >>> 24) & 0xff, (index >>> 16) & 0xff, (index >>> 8) & 0xff, index & 0xff]
    .map((b) => b.toString(16).padStart(2, '0'))
    .join(':');
  const u = Buffer.from(h.subarray(0, 16));
  u[6] = (u[6]! & 0x0f) | 0x40;
  u[8] = (u[8]! & 0x3f) | 0x80;
  const x = u.toString('hex');
  const uuid = `${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20)}`;
  return { mac, uuid, board, version, language, chip: 'esp32s3' };
}

/** 127.<100 + seed % 100>.<i / 250>.<2 + i % 250>: unique per device, all on the loopback interface. */
export function loopbackAddressFor(index: number, seed: number): string {
  return `127.${100 + (seed % 100)}.${Math.floor(index / 250) % 256}.${2 + (index % 250)}`;
}

export function defaultDecodeThreads(devices: number): number {
  if (devices < 20) return 0;
  return Math.max(1, Math.min(2, cpus().length - 1));
}

export async function runSimulation(opts: SimulationOptions): Promise<SimulationSummary> {
  if (!Number.isInteger(opts.devices) || opts.devices < 1) throw new RangeError(`devices: expected an integer ≥ 1, got ${opts.devices}`);
  if (!(opts.durationS > 0)) throw new RangeError(`durationS: expected a positive number, got ${opts.durationS}`);
  const rules = firmwareRules(opts.firmware ?? 'v2.4');
  const mode = opts.mode ?? 'auto';
  const speakMs = opts.speakMs ?? 3000;
  const pauseMs = opts.pauseMs ?? 1000;
  const rampMs = opts.rampMs ?? Math.min(10_000, 25 * opts.devices);
  const seed = opts.seed ?? 1;
  const replyTimeoutMs = opts.replyTimeoutMs ?? 15_000;
  const ttsStopTimeoutMs = opts.ttsStopTimeoutMs ?? 10_000;
  const drainTimeoutMs = (opts.drainTimeoutMs ?? speakMs + pauseMs + replyTimeoutMs + ttsStopTimeoutMs) + rampMs;
  const decode = opts.decode ?? true;
  const threads = decode ? (opts.decodeThreads ?? defaultDecodeThreads(opts.devices)) : 0;
  const perDeviceAddress = (opts.sourceAddresses ?? 'auto') === 'auto' && platform() === 'linux';
  const clip = opts.clip ?? buildUplinkClip({ ...(opts.audioFile ? { audioFile: opts.audioFile } : {}), seed });

  const scheduler = new Scheduler();
  const decoder: DecodeService = await createDecodeService(threads);
  const devices: SimDevice[] = [];
  decoder.onResult = (r) => devices[r.device]?.sink.decoded(r);
  const monitor = opts.gatewayMetrics === false ? null : new GatewayMonitor(opts.gateway, { insecure: opts.insecure ?? false });
  if (monitor) {
    await monitor.sample();
    monitor.start(2000);
  }
  const eld = monitorEventLoopDelay({ resolution: 10 });
  eld.enable();
  const cpu0 = process.cpuUsage();
  const t0 = scheduler.now();
  const durationMs = opts.durationS * 1000;
  let phase: SimulationProgress['phase'] = 'ramp';

  for (let i = 0; i < opts.devices; i++) {
    const d = new SimDevice(
      {
        index: i,
        otaUrl: opts.gateway,
        identity: identityFor(i, seed, opts.board ?? 'bread-compact-wifi', rules.version, opts.language ?? 'zh-CN'),
        rules,
        mode,
        speakMs,
        pauseMs,
        abortEvery: opts.abortEvery ?? 0,
        abortAfterMs: opts.abortAfterMs ?? 600,
        turnsPerSession: opts.turnsPerSession ?? 0,
        replyTimeoutMs,
        ttsStopTimeoutMs,
        // Spread devices over the clip so they do not all say the same syllable at once.
        clipOffset: Math.floor((i * clip.speech.length) / Math.max(1, opts.devices)) + i * 7,
        insecure: opts.insecure ?? false,
        decode,
        ...(perDeviceAddress ? { localAddress: loopbackAddressFor(i, seed) } : {}),
        ...(opts.log ? { log: opts.log } : {}),
      },
      { scheduler, clip, decoder },
    );
    devices.push(d);
    const startAt = t0 + (opts.devices > 1 ? (rampMs * i) / (opts.devices - 1) : 0);
    scheduler.at(startAt, () => d.start());
  }
  scheduler.at(t0 + rampMs, () => {
    if (phase === 'ramp') phase = 'run';
  });
  // The simulator's own event-loop delay is judged in steady state: connection set-up during the
  // ramp (OTA, MQTT, TLS) is bursty by nature.
  if (rampMs + 2000 < durationMs) scheduler.at(t0 + rampMs + 2000, () => eld.reset());

  const progress = (): SimulationProgress => {
    let mqttConnected = 0, inSession = 0, sessionsOpened = 0, turnsCompleted = 0, up = 0, down = 0, drops = 0, violations = 0, failures = 0;
    const lat: number[] = [];
    for (const d of devices) {
      const s = d.stats;
      if (d.mqttConnected) mqttConnected++;
      if (d.inSession) inSession++;
      sessionsOpened += s.sessionsOpened;
      turnsCompleted += s.turnsCompleted;
      up += s.uplinkPackets;
      down += s.downlinkDatagrams;
      for (const r of DROP_REASONS) drops += s.drops[r];
      violations += s.ttsStopViolations;
      for (const f of FAILURE_KINDS) failures += s.failures[f];
      for (const x of s.latencyMs.slice(-20)) lat.push(x);
    }
    const g = monitor?.report();
    return {
      elapsedS: round1((scheduler.now() - t0) / 1000),
      durationS: opts.durationS,
      phase,
      devices: devices.length,
      mqttConnected,
      inSession,
      sessionsOpened,
      turnsCompleted,
      uplinkPackets: up,
      downlinkDatagrams: down,
      deviceDrops: drops,
      violations,
      failures,
      latencyP50Ms: distribution(lat).p50,
      gatewayCpuPercent: g?.available ? (g.cpuPercent ?? null) : null,
      gatewayRssBytes: monitor?.latest?.rssBytes ?? null,
    };
  };
  const progressTimer = opts.onProgress ? setInterval(() => opts.onProgress!(progress()), opts.progressIntervalMs ?? 1000) : null;

  // Run, then drain: no new turns, finish the current one, goodbye. Devices wind down spread over
  // the ramp time, as they came up: a mass goodbye would load the gateway in a way the run did not.
  await new Promise<void>((resolve) => scheduler.at(t0 + durationMs, resolve));
  phase = 'drain';
  const tEnd = scheduler.now();
  devices.forEach((d, i) => {
    const at = tEnd + (opts.devices > 1 ? (rampMs * i) / (opts.devices - 1) : 0);
    scheduler.at(at, () => d.drain());
  });
  const all = Promise.all(devices.map((d) => d.stopped()));
  let drainTimer: NodeJS.Timeout | undefined;
  const timedOut = await Promise.race([
    all.then(() => false),
    new Promise<boolean>((r) => {
      drainTimer = setTimeout(() => r(true), drainTimeoutMs);
    }),
  ]);
  clearTimeout(drainTimer);
  if (timedOut) {
    opts.log?.(`drain timed out after ${drainTimeoutMs} ms: powering off the remaining devices`);
    for (const d of devices) d.kill();
  }
  await all;
  const elapsedMs = scheduler.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  await decoder.flush();
  if (progressTimer) clearInterval(progressTimer);
  if (opts.onProgress) opts.onProgress(progress());
  if (monitor) {
    await monitor.sample();
    await monitor.stop();
  }
  const maxLate = scheduler.maxLatenessMs;
  eld.disable();
  scheduler.close();
  await decoder.close();

  return summarize(opts, devices, {
    rules: rules.name, mode, rampMs, speakMs, pauseMs, clip, elapsedMs,
    decode: decode ? decoder.kind : 'off',
    gateway: monitor ? monitor.report() : { available: false, reason: 'disabled (--no-gateway-metrics)' },
    simCpuPercent: ((cpu.user + cpu.system) / 1000 / elapsedMs) * 100,
    maxLate,
    // The histogram's resolution timer itself adds ~resolution ms; report the excess.
    eldP99: Math.max(0, eld.percentile(99) / 1e6 - 10),
    eldMax: Math.max(0, eld.max / 1e6 - 10),
  });
}

function summarize(
  opts: SimulationOptions,
  devices: SimDevice[],
  x: {
    rules: FirmwareProfileName; mode: ListeningMode; rampMs: number; speakMs: number; pauseMs: number; clip: UplinkClip;
    elapsedMs: number; decode: string; gateway: GatewayResourceReport; simCpuPercent: number; maxLate: number;
    eldP99: number; eldMax: number;
  },
): SimulationSummary {
  const drops = emptyDrops();
  const failures = emptyFailures();
  const lat: number[] = [], ttsStart: number[] = [], abortStop: number[] = [], fidelity: number[] = [], ratio: number[] = [];
  const messages: Record<string, number> = {};
  const t = {
    opened: 0, helloSent: 0, closedByServer: 0, closedByDevice: 0, withSession: 0, started: 0, completed: 0, bargeIns: 0,
    up: 0, upBytes: 0, down: 0, downBytes: 0, queued: 0, played: 0, lost: 0, reordered: 0, dup: 0, maxDepth: 0,
    violations: 0, lateAbort: 0, mcpReplies: 0, reboots: 0,
  };
  const deviceErrors: string[] = [];
  for (const d of devices) {
    const s = d.stats;
    t.opened += s.sessionsOpened;
    t.helloSent += s.helloSent;
    t.closedByServer += s.sessionsClosedByServer;
    t.closedByDevice += s.sessionsClosedByDevice;
    if (s.sessionsOpened > 0) t.withSession++;
    t.started += s.turnsStarted;
    t.completed += s.turnsCompleted;
    t.bargeIns += s.bargeIns;
    t.up += s.uplinkPackets;
    t.upBytes += s.uplinkBytes;
    t.down += s.downlinkDatagrams;
    t.downBytes += s.downlinkBytes;
    t.queued += s.downlinkQueued;
    t.played += s.downlinkPlayed;
    t.lost += s.lost;
    t.reordered += s.reordered;
    t.dup += s.duplicates;
    t.maxDepth = Math.max(t.maxDepth, s.maxQueueDepth);
    t.violations += s.ttsStopViolations;
    t.lateAbort += s.lateAfterAbort;
    t.mcpReplies += s.mcpReplies;
    t.reboots += s.reboots;
    for (const r of DROP_REASONS) drops[r] += s.drops[r];
    for (const f of FAILURE_KINDS) failures[f] += s.failures[f];
    lat.push(...s.latencyMs);
    ttsStart.push(...s.ttsStartMs);
    abortStop.push(...s.abortStopMs);
    fidelity.push(...s.fidelity);
    ratio.push(...s.echoRatio);
    for (const [k, v] of Object.entries(s.messages)) messages[k] = (messages[k] ?? 0) + v;
    if (d.lastError && deviceErrors.length < 20) deviceErrors.push(`${d.options.identity.mac}: ${d.lastError}`);
  }
  const dropTotal = DROP_REASONS.reduce((a, r) => a + drops[r], 0);
  const failureTotal = FAILURE_KINDS.reduce((a, f) => a + failures[f], 0);
  const expected = t.down + t.lost;
  const problems: string[] = [];
  if (t.violations > 0) problems.push(`${t.violations} audio packet(s) arrived after the turn's tts stop`);
  for (const f of FAILURE_KINDS) if (failures[f] > 0) problems.push(`${failures[f]} × ${f}`);
  if (t.withSession < devices.length) problems.push(`${devices.length - t.withSession} of ${devices.length} device(s) never opened a session`);
  if (t.completed === 0) problems.push('no turn completed');
  const mem = process.memoryUsage();
  const notes: string[] = [];
  if (x.eldP99 > 30) {
    notes.push(`the simulator's own event loop was late by up to ${Math.round(x.eldP99)} ms (p99): latencies include that much of its delay, and UDP/MQTT arrival order is less certain; run fewer devices per process`);
  }
  if (drops['before-tts-start'] > 0) {
    notes.push(`${drops['before-tts-start']} downlink packet(s) arrived before their tts start (UDP overtook MQTT): the firmware drops them, and on a device tts start takes effect only when its main loop runs, so leave a gap before the first audio`);
  }
  return {
    ok: problems.length === 0,
    problems,
    config: {
      gateway: opts.gateway,
      devices: devices.length,
      durationS: opts.durationS,
      firmware: x.rules,
      mode: x.mode,
      rampMs: x.rampMs,
      speakMs: x.speakMs,
      pauseMs: x.pauseMs,
      abortEvery: opts.abortEvery ?? 0,
      turnsPerSession: opts.turnsPerSession ?? 0,
      audio: `${x.clip.source} (${round1(x.clip.seconds)} s, ${round1(x.clip.meanPacketBytes)} B/packet)`,
      decode: x.decode,
      latencyFrom: x.mode === 'realtime' ? 'end of speech' : 'listen stop',
    },
    elapsedS: round1(x.elapsedMs / 1000),
    sessions: { opened: t.opened, helloSent: t.helloSent, closedByServer: t.closedByServer, closedByDevice: t.closedByDevice, devicesWithSession: t.withSession },
    turns: { started: t.started, completed: t.completed, bargeIns: t.bargeIns },
    latencyMs: distribution(lat),
    ttsStartMs: distribution(ttsStart),
    uplink: { packets: t.up, bytes: t.upBytes },
    downlink: {
      datagrams: t.down,
      bytes: t.downBytes,
      queued: t.queued,
      played: t.played,
      lost: t.lost,
      reordered: t.reordered,
      duplicates: t.dup,
      lossPercent: expected > 0 ? Math.round((t.lost / expected) * 1e4) / 100 : 0,
      reorderPercent: t.down > 0 ? Math.round((t.reordered / t.down) * 1e4) / 100 : 0,
      maxQueueDepth: t.maxDepth,
    },
    deviceDrops: { ...drops, total: dropTotal },
    violations: { ttsStopBeforeLastAudio: t.violations },
    failures: { ...failures, total: failureTotal },
    abort: { bargeIns: t.bargeIns, stopDelayMs: distribution(abortStop), packetsLaterThanOneFrame: t.lateAbort },
    echo: { fidelity: distribution(fidelity, 3), completeness: distribution(ratio.map((v) => v * 100)) },
    messages,
    mcp: { requests: messages.mcp ?? 0, replies: t.mcpReplies },
    reboots: t.reboots,
    gateway: x.gateway,
    simulator: {
      cpuPercent: round1(x.simCpuPercent),
      rssBytes: mem.rss,
      maxTimerLatenessMs: round1(x.maxLate),
      eventLoopDelayP99Ms: round1(x.eldP99),
      eventLoopDelayMaxMs: round1(x.eldMax),
      decode: x.decode,
    },
    notes,
    deviceErrors,
  };
}
