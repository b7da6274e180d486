// The simulated microphone. Devices stream a clip encoded ONCE at start-up the way the firmware's
// encoder is configured (Opus 16 kHz mono, 60 ms, application "audio", complexity 0, VBR, DTX), so
// 200 devices cost no encoding at run time; each device starts at its own offset into the clip.
// Without a recording, a speech-like signal is synthesised: glottal pulse trains through formant
// resonators, shaped into syllables, words and phrases with pauses.
import { readFileSync } from 'node:fs';
import { OpusDecoder, OpusEncoder } from '../native/index.js';

export const UPLINK_RATE = 16000;
export const FRAME_MS = 60;
export const UPLINK_FRAME_SAMPLES = (UPLINK_RATE * FRAME_MS) / 1000; // 960
/** Envelope blocks per 60 ms frame (20 ms each), the unit of the echo-fidelity comparison. */
export const ENVELOPE_BLOCKS_PER_FRAME = 3;

/** Small deterministic PRNG (mulberry32): the same seed gives the same signal everywhere. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// Vowel formants (Hz): F1, F2, F3.
const VOWELS: ReadonlyArray<readonly [number, number, number]> = [
  [730, 1090, 2440], // a
  [530, 1840, 2480], // e
  [270, 2290, 3010], // i
  [570, 840, 2410], // o
  [300, 870, 2240], // u
  [660, 1720, 2410], // ae
  [490, 1350, 1690], // er
];

class Resonator {
  #a1 = 0;
  #a2 = 0;
  #g = 0;
  #y1 = 0;
  #y2 = 0;
  set(freq: number, bandwidth: number, rate: number): void {
    const r = Math.exp((-Math.PI * bandwidth) / rate);
    this.#a1 = 2 * r * Math.cos((2 * Math.PI * freq) / rate);
    this.#a2 = -r * r;
    this.#g = 1 - r;
  }
  step(x: number): number {
    const y = this.#g * x + this.#a1 * this.#y1 + this.#a2 * this.#y2;
    this.#y2 = this.#y1;
    this.#y1 = y;
    return y;
  }
}

/**
 * A speech-like test signal: phrases of 2–6 words, words of 1–3 syllables (120–320 ms voiced, with
 * noise-burst consonants), f0 100–220 Hz with a falling intonation per phrase, word gaps of 40–140 ms
 * and phrase pauses of 200–450 ms (shorter than a server VAD's end-of-speech silence). Peak around −6 dBFS.
 */
export function synthesizeSpeech(seconds: number, rate = UPLINK_RATE, seed = 1): Int16Array {
  // Structure (syllables, pitch, pauses) and sample noise use separate generators, so the same seed
  // gives the same utterance at every sample rate.
  const rand = mulberry32(seed);
  const noise = mulberry32(seed ^ 0x9e3779b9);
  const n = Math.round(seconds * rate);
  const out = new Float32Array(n);
  const f1 = new Resonator();
  const f2 = new Resonator();
  const f3 = new Resonator();
  let t = Math.round(0.1 * rate);
  let phase = 0;
  while (t < n) {
    const words = 2 + Math.floor(rand() * 5);
    const baseF0 = 100 + rand() * 120;
    const phraseLen = words * 0.45 * rate;
    const phraseStart = t;
    for (let w = 0; w < words && t < n; w++) {
      const syllables = 1 + Math.floor(rand() * 3);
      for (let s = 0; s < syllables && t < n; s++) {
        // consonant onset: 20–60 ms of shaped noise
        const cLen = Math.round((0.02 + rand() * 0.04) * rate);
        const cAmp = 0.05 + rand() * 0.12;
        for (let i = 0; i < cLen && t + i < n; i++) {
          const env = Math.sin((Math.PI * i) / cLen);
          out[t + i]! += cAmp * env * (noise() * 2 - 1);
        }
        t += Math.round(cLen * 0.6);
        // voiced nucleus
        const vLen = Math.round((0.12 + rand() * 0.2) * rate);
        const vowel = VOWELS[Math.floor(rand() * VOWELS.length)]!;
        f1.set(vowel[0], 80, rate);
        f2.set(vowel[1], 110, rate);
        f3.set(vowel[2], 160, rate);
        const amp = 0.35 + rand() * 0.35;
        for (let i = 0; i < vLen && t < n; i++, t++) {
          const progress = (t - phraseStart) / phraseLen;
          const f0 = baseF0 * (1.1 - 0.25 * Math.min(1, progress)) * (1 + 0.03 * Math.sin((2 * Math.PI * 5 * i) / rate));
          phase += f0 / rate;
          let src = 0;
          if (phase >= 1) {
            phase -= 1;
            src = 1; // glottal pulse
          }
          // Rosenberg-like open phase: a short smooth pulse instead of a bare impulse
          const g = src + 0.5 * Math.max(0, Math.sin(Math.PI * phase * 2.5)) * (phase < 0.4 ? 1 : 0);
          const y = f1.step(g) * 1.0 + f2.step(g) * 0.6 + f3.step(g) * 0.3;
          const a = Math.min(1, i / (0.025 * rate), (vLen - i) / (0.04 * rate));
          out[t]! += amp * a * y;
        }
      }
      t += Math.round((0.04 + rand() * 0.1) * rate);
    }
    t += Math.round((0.2 + rand() * 0.25) * rate);
  }
  // normalize to −6 dBFS peak
  let peak = 0;
  for (let i = 0; i < n; i++) peak = Math.max(peak, Math.abs(out[i]!));
  const gain = peak > 0 ? (0.5 * 32767) / peak : 0;
  const pcm = new Int16Array(n);
  for (let i = 0; i < n; i++) pcm[i] = Math.max(-32768, Math.min(32767, Math.round(out[i]! * gain)));
  return pcm;
}

/** Raw Int16 little-endian mono file (e.g. test/fixtures/generated/speech-16000.s16). */
export function readS16File(path: string): Int16Array {
  const bytes = readFileSync(path);
  const out = new Int16Array(bytes.length >> 1);
  new Uint8Array(out.buffer).set(bytes.subarray(0, out.length * 2));
  return out;
}

/** RMS of `blocks` equal blocks of one frame, appended to `out` at `offset`. */
export function blockRms(pcm: Int16Array, blocks: number, out: Float32Array, offset: number): void {
  const size = Math.floor(pcm.length / blocks);
  for (let b = 0; b < blocks; b++) {
    let sum = 0;
    const start = b * size;
    for (let i = start; i < start + size; i++) {
      const v = pcm[i]!;
      sum += v * v;
    }
    out[offset + b] = size > 0 ? Math.sqrt(sum / size) : 0;
  }
}

/**
 * Best Pearson correlation of two envelopes over lags (received relative to sent) in
 * [minLag, maxLag] blocks, with at least `minOverlap` overlapping blocks. NaN when not comparable.
 */
export function envelopeCorrelation(sent: ArrayLike<number>, received: ArrayLike<number>, minLag = -10, maxLag = 30, minOverlap = 10): number {
  let best = NaN;
  for (let lag = minLag; lag <= maxLag; lag++) {
    // received[i + lag] ~ sent[i]
    const start = Math.max(0, -lag);
    const end = Math.min(sent.length, received.length - lag);
    const n = end - start;
    if (n < minOverlap) continue;
    let sx = 0, sy = 0, sxx = 0, syy = 0, sxy = 0;
    for (let i = start; i < end; i++) {
      const x = sent[i]!;
      const y = received[i + lag]!;
      sx += x; sy += y; sxx += x * x; syy += y * y; sxy += x * y;
    }
    const cov = sxy - (sx * sy) / n;
    const vx = sxx - (sx * sx) / n;
    const vy = syy - (sy * sy) / n;
    if (vx <= 0 || vy <= 0) continue;
    const r = cov / Math.sqrt(vx * vy);
    if (!(r <= best)) best = r;
  }
  return best;
}

export interface UplinkClip {
  /** Opus packets of the speech, 60 ms each, cycled through. */
  speech: Buffer[];
  /** Envelope of the decoded speech packets, ENVELOPE_BLOCKS_PER_FRAME per packet. */
  speechEnvelope: Float32Array;
  /**
   * Speech packets that end in a pause (their last block is quiet): a turn ends after one of these,
   * as a person stops talking between words, never mid-syllable.
   */
  pauseAfter: Uint8Array;
  /** Opus packets of a quiet room (first the encoder's transition into DTX, then DTX frames). */
  silence: Buffer[];
  silenceEnvelope: Float32Array;
  /** Where the clip came from, for the report. */
  source: string;
  seconds: number;
  meanPacketBytes: number;
}

export interface ClipOptions {
  /** Raw s16le mono 16 kHz file; default: synthesised speech. */
  audioFile?: string;
  seconds?: number;
  seed?: number;
}

function encodeFrames(enc: OpusEncoder, pcm: Int16Array): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i + UPLINK_FRAME_SAMPLES <= pcm.length; i += UPLINK_FRAME_SAMPLES) {
    out.push(enc.encode(pcm.subarray(i, i + UPLINK_FRAME_SAMPLES)));
  }
  return out;
}

function envelopeOf(packets: Buffer[]): Float32Array {
  const dec = new OpusDecoder({ sampleRate: UPLINK_RATE, channels: 1 });
  const env = new Float32Array(packets.length * ENVELOPE_BLOCKS_PER_FRAME);
  packets.forEach((p, i) => {
    let pcm: Int16Array;
    try {
      pcm = dec.decode(p);
    } catch {
      pcm = new Int16Array(UPLINK_FRAME_SAMPLES);
    }
    blockRms(pcm, ENVELOPE_BLOCKS_PER_FRAME, env, i * ENVELOPE_BLOCKS_PER_FRAME);
  });
  dec.close();
  return env;
}

/** Encodes the microphone clip once with the firmware's encoder settings. */
export function buildUplinkClip(options: ClipOptions = {}): UplinkClip {
  const seed = options.seed ?? 1;
  let pcm: Int16Array;
  let source: string;
  if (options.audioFile) {
    pcm = readS16File(options.audioFile);
    if (pcm.length < UPLINK_FRAME_SAMPLES * 10) {
      throw new RangeError(`--audio ${options.audioFile}: expected raw s16le mono 16 kHz audio of at least 0.6 s, got ${pcm.length} samples`);
    }
    source = options.audioFile;
  } else {
    pcm = synthesizeSpeech(options.seconds ?? 24, UPLINK_RATE, seed);
    source = 'synthesised speech';
  }
  // esp_opus_enc: 16 kHz mono, bitrate auto, 60 ms, APPLICATION_AUDIO, complexity 0, no FEC, DTX, VBR.
  const enc = new OpusEncoder({ sampleRate: UPLINK_RATE, channels: 1, application: 'audio', complexity: 0, vbr: true, dtx: true });
  const speech = encodeFrames(enc, pcm);
  enc.close();
  // A quiet room after noise suppression: a few LSB of noise, from a fresh encoder so no speech
  // tail leaks into the first frames.
  const rand = mulberry32(seed ^ 0x5eed);
  const quiet = new Int16Array(UPLINK_FRAME_SAMPLES * 50);
  for (let i = 0; i < quiet.length; i++) quiet[i] = Math.round((rand() * 2 - 1) * 4);
  const quietEnc = new OpusEncoder({ sampleRate: UPLINK_RATE, channels: 1, application: 'audio', complexity: 0, vbr: true, dtx: true });
  const silence = encodeFrames(quietEnc, quiet);
  quietEnc.close();
  const bytes = speech.reduce((a, p) => a + p.length, 0);
  const speechEnvelope = envelopeOf(speech);
  let peak = 0;
  for (const v of speechEnvelope) peak = Math.max(peak, v);
  const pauseAfter = new Uint8Array(speech.length);
  for (let i = 0; i < speech.length; i++) {
    const last = speechEnvelope[i * ENVELOPE_BLOCKS_PER_FRAME + ENVELOPE_BLOCKS_PER_FRAME - 1]!;
    pauseAfter[i] = last < Math.max(30, peak * 0.03) ? 1 : 0;
  }
  return {
    speech,
    speechEnvelope,
    pauseAfter,
    silence,
    silenceEnvelope: envelopeOf(silence),
    source,
    seconds: (speech.length * FRAME_MS) / 1000,
    meanPacketBytes: speech.length ? bytes / speech.length : 0,
  };
}

/** The n-th silence packet of a pause: the transition frames first, then the DTX tail cycled. */
export function silenceIndex(clip: UplinkClip, n: number): number {
  const len = clip.silence.length;
  if (n < len) return n;
  const tail = Math.min(10, len);
  return len - tail + ((n - len) % tail);
}
