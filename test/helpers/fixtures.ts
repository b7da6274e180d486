// Speech fixtures made by scripts/test-setup.mjs (espeak-ng + sox), as mono Int16 PCM, and as the
// Opus packets a device's microphone path makes of them.
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { OpusEncoder } from '../../src/index.js';

export const fixturesDir = resolve(dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'generated');

export function speech(rate: 8000 | 16000 | 24000 | 48000): Int16Array {
  const file = join(fixturesDir, `speech-${rate}.s16`);
  let bytes: Buffer;
  try {
    bytes = readFileSync(file);
  } catch (err) {
    throw new Error(`speech fixture ${file} is missing: run \`node scripts/test-setup.mjs\` (npm test does it)`, { cause: err });
  }
  // Copy into a fresh, aligned buffer (a Buffer from the pool may have an odd byteOffset).
  const out = new Int16Array(bytes.length >> 1);
  new Uint8Array(out.buffer).set(bytes.subarray(0, out.length * 2));
  return out;
}

/** Samples in one 60 ms frame at 16 kHz (the device's uplink frame). */
export const FRAME_16K = 960;

/**
 * `frames` 60 ms Opus packets of the 16 kHz speech fixture from `offsetSeconds` on, encoded as the
 * device's microphone path does (VoIP, 24 kb/s), and the PCM they carry.
 */
export function speechPackets(frames: number, offsetSeconds = 0): { pcm: Int16Array; packets: Buffer[] } {
  const start = Math.floor(offsetSeconds * 16000);
  const pcm = speech(16000).slice(start, start + frames * FRAME_16K);
  if (pcm.length < frames * FRAME_16K) throw new Error(`the speech fixture holds fewer than ${frames} frames from ${offsetSeconds} s`);
  const enc = new OpusEncoder({ sampleRate: 16000, channels: 1, application: 'voip', bitrate: 24000 });
  const packets: Buffer[] = [];
  for (let i = 0; i < frames; i++) packets.push(Buffer.from(enc.encode(pcm.subarray(i * FRAME_16K, (i + 1) * FRAME_16K))));
  enc.close();
  return { pcm, packets };
}
