// Counters each simulated device keeps, and their aggregation into the run summary.
import { DROP_REASONS, type DropReason } from './receiver.js';

export const FAILURE_KINDS = [
  'ota',
  'activation',
  'mqtt-connect',
  'mqtt-disconnect',
  'hello-timeout',
  'hello-invalid',
  'firmware-crash',
  'udp',
  'no-reply',
  'missing-tts-stop',
] as const;
export type FailureKind = (typeof FAILURE_KINDS)[number];

export const FAILURE_LABELS: Readonly<Record<FailureKind, string>> = {
  ota: 'OTA request failed',
  activation: 'OTA asks for activation (device would wait)',
  'mqtt-connect': 'MQTT connect failed',
  'mqtt-disconnect': 'MQTT dropped during a session',
  'hello-timeout': 'no hello reply within 10 s',
  'hello-invalid': 'hello reply ignored by the firmware',
  'firmware-crash': 'hello reply that crashes older firmware',
  udp: 'UDP socket error',
  'no-reply': 'no tts start after listen stop',
  'missing-tts-stop': 'no tts stop after the audio',
};

export function emptyDrops(): Record<DropReason, number> {
  return Object.fromEntries(DROP_REASONS.map((r) => [r, 0])) as Record<DropReason, number>;
}

export function emptyFailures(): Record<FailureKind, number> {
  return Object.fromEntries(FAILURE_KINDS.map((r) => [r, 0])) as Record<FailureKind, number>;
}

export class DeviceStats {
  otaRequests = 0;
  mqttConnects = 0;
  helloSent = 0;
  /** Hello replies the firmware accepted (sessions opened). */
  sessionsOpened = 0;
  sessionsClosedByServer = 0;
  sessionsClosedByDevice = 0;
  turnsStarted = 0;
  /** Turns whose tts stop arrived. */
  turnsCompleted = 0;
  bargeIns = 0;
  uplinkPackets = 0;
  uplinkBytes = 0;
  /** Every datagram that reached the device's socket. */
  downlinkDatagrams = 0;
  downlinkBytes = 0;
  /** Downlink packets that reached the speaker's queue. */
  downlinkQueued = 0;
  downlinkPlayed = 0;
  lost = 0;
  reordered = 0;
  duplicates = 0;
  drops = emptyDrops();
  failures = emptyFailures();
  /** Audio packets (valid, fresh) that arrived after the turn's tts stop. */
  ttsStopViolations = 0;
  /** listen stop → first downlink audio of the reply (ms), one per turn. */
  latencyMs: number[] = [];
  /** listen stop → tts start (ms). */
  ttsStartMs: number[] = [];
  /** abort → last downlink audio packet that arrived (ms), one per barge-in. */
  abortStopMs: number[] = [];
  /** Packets that arrived more than one frame (plus tolerance) after the device's abort. */
  lateAfterAbort = 0;
  /** Echo fidelity (envelope correlation) per turn. */
  fidelity: number[] = [];
  /** Reply audio duration / speech sent, per turn (echo completeness). */
  echoRatio: number[] = [];
  maxQueueDepth = 0;
  messages = { stt: 0, llm: 0, sentenceStart: 0, alert: 0, system: 0, mcp: 0, unknown: 0, unparsable: 0, unsolicitedHello: 0, ttsStopWhileNotSpeaking: 0 };
  mcpReplies = 0;
  reboots = 0;
}

export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const rank = (p / 100) * (sorted.length - 1);
  const lo = Math.floor(rank);
  const hi = Math.ceil(rank);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (rank - lo);
}

export interface Distribution {
  count: number;
  p50: number | null;
  p99: number | null;
  max: number | null;
  mean: number | null;
  min: number | null;
}

/** Summary of a sample, rounded to `digits` decimals. */
export function distribution(values: readonly number[], digits = 1): Distribution {
  const v = values.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  const k = 10 ** digits;
  const r = (x: number): number | null => (Number.isFinite(x) ? Math.round(x * k) / k : null);
  if (v.length === 0) return { count: 0, p50: null, p99: null, max: null, mean: null, min: null };
  return {
    count: v.length,
    p50: r(percentile(v, 50)),
    p99: r(percentile(v, 99)),
    max: r(v[v.length - 1]!),
    min: r(v[0]!),
    mean: r(v.reduce((a, b) => a + b, 0) / v.length),
  };
}
