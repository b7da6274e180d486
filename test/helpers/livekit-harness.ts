// Shared pieces of the LiveKit tiers: the real livekit-server (scripts/livekit-server.mjs), device
// audio (real speech through Opus, streamed at the device's cadence), downlink capture and decode,
// and the similarity measure used to say "the other side heard this".
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { OpusDecoder, Resampler } from '../../src/index.js';
import { FRAME_16K, speech, speechPackets } from './fixtures.js';
import type { RawDevice } from './raw-device.js';
import { concat } from './signal.js';

export interface LivekitServerHandle {
  url: string;
  httpUrl: string;
  apiKey: string;
  apiSecret: string;
  port: number;
  /** The running server's pid (changes on restart; undefined while it is down). */
  readonly pid?: number;
  output(): string;
  restart(downMs?: number, signal?: 'SIGTERM' | 'SIGKILL'): Promise<void>;
  kill(signal?: 'SIGTERM' | 'SIGKILL'): Promise<void>;
  start(): Promise<void>;
  stop(): Promise<void>;
}

interface LivekitServerModule {
  ensureLivekitServer(o?: { quiet?: boolean }): Promise<string>;
  startLivekitServer(o?: { logLevel?: string; echo?: boolean }): Promise<LivekitServerHandle>;
  LIVEKIT_SERVER_VERSION: string;
}

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

export async function livekitServerModule(): Promise<LivekitServerModule> {
  return (await import(pathToFileURL(join(root, 'scripts', 'livekit-server.mjs')).href)) as LivekitServerModule;
}

// Servers started by this process: killed when it exits, however it exits (a test that throws
// before its afterAll, a worker that vitest ends), so no livekit-server outlives its tests.
const running = new Set<LivekitServerHandle>();
let exitHooked = false;

function killRunningServers(): void {
  for (const s of running) {
    const pid = s.pid;
    if (pid) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {}
    }
  }
  running.clear();
}

function hookExit(): void {
  if (exitHooked) return;
  exitHooked = true;
  process.once('exit', killRunningServers);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const onSignal = () => {
      killRunningServers();
      process.removeListener(sig, onSignal);
      // Default behaviour afterwards (die of the signal) unless someone else handles it.
      if (process.listenerCount(sig) === 0) process.kill(process.pid, sig);
    };
    process.on(sig, onSignal);
  }
}

/** Builds (first run: minutes) and starts livekit-server --dev on loopback; fails with go's own words. */
export async function startLivekit(): Promise<LivekitServerHandle> {
  const m = await livekitServerModule();
  await m.ensureLivekitServer();
  hookExit();
  const s = await m.startLivekitServer({ logLevel: process.env.LIVEKIT_LOG_LEVEL ?? 'warn', echo: Boolean(process.env.LIVEKIT_LOG_LEVEL) });
  running.add(s);
  const stop = s.stop.bind(s);
  s.stop = async () => {
    try {
      await stop();
    } finally {
      // Whatever stop() met (a hung halt, an error), the process does not stay behind.
      const pid = s.pid;
      if (pid) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {}
      }
      running.delete(s);
    }
  };
  return s;
}

/** `seconds` of real speech at 16 kHz and its 60 ms Opus packets, as the device's microphone path makes them. */
export function deviceSpeech(seconds: number, offsetSeconds = 0): { pcm: Int16Array; packets: Buffer[] } {
  return speechPackets(Math.floor((seconds * 16000) / FRAME_16K), offsetSeconds);
}

/** Agent speech at 48 kHz (what a TTS would publish). */
export function agentSpeech(seconds: number, offsetSeconds = 0): Int16Array {
  const all = speech(48000);
  const start = Math.floor(offsetSeconds * 48000);
  return all.slice(start, start + Math.floor(seconds * 48000));
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Sends packets at the device's real-time cadence (60 ms), returning each datagram's send time. */
export async function streamPackets(d: RawDevice, packets: Buffer[]): Promise<number[]> {
  const sent: number[] = [];
  const t0 = performance.now();
  for (let i = 0; i < packets.length; i++) {
    const due = t0 + i * 60;
    const wait = due - performance.now();
    if (wait > 1) await sleep(wait);
    sent.push(performance.now());
    d.sendUdp(d.datagram(packets[i]!));
  }
  return sent;
}

/** Decodes downlink datagrams received since index `from` (24 kHz Opus) into PCM. */
export function decodeDownlink(d: RawDevice, from = 0, to = d.datagrams.length): Int16Array {
  const dec = new OpusDecoder({ sampleRate: 24000, channels: 1 });
  const parts: Int16Array[] = [];
  for (const g of d.datagrams.slice(from, to)) parts.push(Int16Array.from(dec.decode(d.decrypt(g.data).opus)));
  return concat(parts);
}

export function resample(pcm: Int16Array, from: number, to: number): Int16Array {
  if (from === to) return pcm;
  const r = new Resampler({ inputRate: from, outputRate: to });
  return concat([r.process(pcm), r.flush()]);
}

function envelope(pcm: Int16Array, hop: number): Float64Array {
  const n = Math.floor(pcm.length / hop);
  const e = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let s = 0;
    for (let j = i * hop; j < (i + 1) * hop; j++) s += pcm[j]! * pcm[j]!;
    e[i] = Math.sqrt(s / hop);
  }
  return e;
}

function ncc(a: ArrayLike<number>, b: ArrayLike<number>, lag: number, n: number): number {
  // a[i + lag] against b[i] over the overlap, mean removed.
  let sa = 0, sb = 0, k = 0;
  for (let i = Math.max(0, -lag); i < n && i + lag < a.length && i < b.length; i++) {
    sa += a[i + lag]!;
    sb += b[i]!;
    k++;
  }
  if (k < 10) return 0;
  const ma = sa / k, mb = sb / k;
  let ab = 0, aa = 0, bb = 0;
  for (let i = Math.max(0, -lag); i < n && i + lag < a.length && i < b.length; i++) {
    const x = a[i + lag]! - ma, y = b[i]! - mb;
    ab += x * y;
    aa += x * x;
    bb += y * y;
  }
  return aa > 0 && bb > 0 ? ab / Math.sqrt(aa * bb) : 0;
}

export interface Similarity {
  /**
   * Median over the reference's voiced 100 ms windows of the waveform NCC at the best local lag
   * (1 = identical up to gain). Local, because the receiver's jitter buffer (NetEq) stretches and
   * compresses time: one global lag would punish that, not lost audio.
   */
  waveform: number;
  /** NCC of the 10 ms loudness envelopes at the global lag (robust to codec phase changes). */
  envelope: number;
  /** Where the reference starts in the received signal (ms). */
  lagMs: number;
}

/** `pcm` followed by `n` zeros: audio the receiver never got counts as silence, not as "no data". */
function padded(pcm: ArrayLike<number>, n: number): Float64Array {
  const out = new Float64Array(pcm.length + n);
  for (let i = 0; i < pcm.length; i++) out[i] = pcm[i]!;
  return out;
}

// A window below this has lost track of the reference (NetEq dropped or inserted audio before it).
const TRACK_LOST = 0.5;
// How far NetEq may have moved the audio since the last window that matched (it drops or inserts
// up to a few frames at once when its buffer level jumps after a delay spike).
const REACQUIRE_MS = 150;

function bestLocalLag(received: Int16Array, ref: Int16Array, at: number, from: number, to: number): { score: number; lag: number } {
  let score = -1, lag = from;
  for (let l = from; l <= to; l++) {
    if (at + l < 0 || at + l + ref.length > received.length) continue;
    const c = ncc(received.subarray(at + l, at + l + ref.length), ref, 0, ref.length);
    if (c > score) {
      score = c;
      lag = l;
    }
  }
  return { score, lag };
}

/**
 * Finds `reference` inside `received` (same rate): coarse alignment on 10 ms envelopes, then the
 * best waveform lag within ±2 envelope hops, then window by window around the running lag. Both
 * codecs keep speech waveforms close enough for the waveform NCC to stay high; silence or the
 * wrong audio scores near 0.
 *
 * The received signal is zero-padded by the reference's length for the alignment: a lag near the
 * end of `received` would otherwise compare the reference's last bit with whatever is there and
 * could beat the true lag (seen when NetEq had cut 60 ms out of the middle).
 */
export function similarity(received: Int16Array, reference: Int16Array, rate: number): Similarity {
  const hop = rate / 100;
  const ef = envelope(reference, hop);
  const er = padded(envelope(received, hop), ef.length);
  let best = -1, bestLag = 0;
  for (let lag = 0; lag + 10 < er.length - ef.length; lag++) {
    const c = ncc(er, ef, lag, ef.length);
    if (c > best) {
      best = c;
      bestLag = lag;
    }
  }
  // Global waveform lag near the envelope's, then window by window around the running lag.
  const rx = padded(received, reference.length);
  let lag = bestLag * hop;
  let gbest = -1;
  for (let l = Math.max(0, (bestLag - 2) * hop); l <= (bestLag + 2) * hop; l++) {
    const c = ncc(rx, reference, l, reference.length);
    if (c > gbest) {
      gbest = c;
      lag = l;
    }
  }
  const globalLag = lag;
  const win = rate / 10;
  const search = Math.round(rate * 0.015);
  const reacquire = Math.round((rate * REACQUIRE_MS) / 1000);
  let peak = 0;
  for (let i = 0; i < reference.length; i++) peak = Math.max(peak, Math.abs(reference[i]!));
  const scores: number[] = [];
  for (let w = 0; w + win <= reference.length; w += win) {
    const ref = reference.subarray(w, w + win);
    let e = 0;
    for (let i = 0; i < ref.length; i++) e = Math.max(e, Math.abs(ref[i]!));
    if (e < peak * 0.1) continue;  // silence or near-silence: nothing to compare
    let m = bestLocalLag(received, ref, w, lag - search, lag + search);
    if (m.score < TRACK_LOST) {
      const wide = bestLocalLag(received, ref, w, lag - reacquire, lag + reacquire);
      if (wide.score > m.score) m = wide;
    }
    scores.push(Math.max(0, m.score));
    // Follow the audio only where it was found: a window that matched nothing says nothing about
    // where the next one is.
    if (m.score >= TRACK_LOST) lag = m.lag;
  }
  scores.sort((a, b) => a - b);
  const median = scores.length ? scores[Math.floor(scores.length / 2)]! : 0;
  return { waveform: median, envelope: best, lagMs: (globalLag / rate) * 1000 };
}

export function waitUntil(pred: () => boolean, timeoutMs: number, what: string, stepMs = 20): Promise<void> {
  const deadline = performance.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    const tick = () => {
      if (pred()) return resolve();
      if (performance.now() > deadline) return reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
      setTimeout(tick, stepMs);
    };
    tick();
  });
}
