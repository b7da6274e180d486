// Speech fixtures made by scripts/test-setup.mjs (espeak-ng + sox), as mono Int16 PCM.
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

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
