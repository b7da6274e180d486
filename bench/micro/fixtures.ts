// Benchmark inputs: the speech fixtures that scripts/test-setup.mjs renders (espeak-ng + sox), cut
// into 60 ms frames. Opus and resampler costs depend on the signal, so speech is the honest input.
// When the fixtures are absent (an installed package ships no test/), a synthetic voiced signal
// stands in and the run says so.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { packageRoot } from '../../src/native/addon.js';

export type Rate = 16000 | 24000 | 48000;

export interface Speech {
  samples: Int16Array;
  source: string;
  synthetic: boolean;
}

const cache = new Map<Rate, Speech>();

export function speech(rate: Rate): Speech {
  const hit = cache.get(rate);
  if (hit) return hit;
  const file = join(packageRoot, 'test', 'fixtures', 'generated', `speech-${rate}.s16`);
  let result: Speech;
  try {
    const bytes = readFileSync(file);
    // Copy into a fresh, aligned buffer (a pooled Buffer may have an odd byteOffset).
    const samples = new Int16Array(bytes.length >> 1);
    new Uint8Array(samples.buffer).set(bytes.subarray(0, samples.length * 2));
    result = { samples, source: `test/fixtures/generated/speech-${rate}.s16`, synthetic: false };
  } catch {
    result = { samples: syntheticSpeech(rate, 12), source: 'synthetic voiced signal (run `node scripts/test-setup.mjs` for real speech)', synthetic: true };
  }
  cache.set(rate, result);
  return result;
}

/**
 * Consecutive frames of `frameSamples`, each in its own ArrayBuffer (some baselines, like LiveKit's
 * AudioFrame, hand the whole underlying ArrayBuffer to native code, so views into one big buffer
 * would be wrong for them).
 */
export function frames(samples: Int16Array, frameSamples: number): Int16Array[] {
  const out: Int16Array[] = [];
  for (let off = 0; off + frameSamples <= samples.length; off += frameSamples) {
    out.push(samples.slice(off, off + frameSamples));
  }
  return out;
}

export function toFloat32(frame: Int16Array): Float32Array {
  const out = new Float32Array(frame.length);
  for (let i = 0; i < frame.length; i++) out[i] = frame[i]! / 32768;
  return out;
}

// Deterministic speech-like stand-in: a gliding glottal pulse train through two formant-ish
// resonances, syllable-rate amplitude envelope, pauses and a little noise.
function syntheticSpeech(rate: number, seconds: number): Int16Array {
  const n = Math.round(rate * seconds);
  const out = new Int16Array(n);
  let phase = 0;
  let seed = 0x12345678;
  const noise = (): number => {
    seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
    return seed / 0x100000000 - 0.5;
  };
  let y1 = 0, y2 = 0, z1 = 0, z2 = 0;
  const res = (f: number, bw: number): [number, number] => {
    const r = Math.exp((-Math.PI * bw) / rate);
    return [2 * r * Math.cos((2 * Math.PI * f) / rate), -r * r];
  };
  for (let i = 0; i < n; i++) {
    const t = i / rate;
    const f0 = 120 + 40 * Math.sin(2 * Math.PI * 0.7 * t);
    phase += f0 / rate;
    const pulse = phase >= 1 ? 1 : 0;
    if (phase >= 1) phase -= 1;
    const syllable = Math.max(0, Math.sin(2 * Math.PI * 3.5 * t));
    const pause = Math.floor(t / 1.5) % 3 === 2 ? 0 : 1;
    const [a1, a2] = res(500 + 300 * Math.sin(2 * Math.PI * 1.1 * t), 80);
    const [b1, b2] = res(1500 + 600 * Math.sin(2 * Math.PI * 0.9 * t), 120);
    const x = pulse + 0.02 * noise();
    const y = x + a1 * y1 + a2 * y2;
    y2 = y1; y1 = y;
    const z = y + b1 * z1 + b2 * z2;
    z2 = z1; z1 = z;
    out[i] = Math.max(-32768, Math.min(32767, Math.round(z * 600 * syllable * pause + 30 * noise())));
  }
  return out;
}
