import { native } from './addon.js';
import { expectTypedArray, rangeError, sharesMemory } from './errors.js';

export type SimdLevelName = 'scalar' | 'sse2' | 'avx2' | 'neon';
const LEVEL_IDS: Record<SimdLevelName, number> = { scalar: 0, sse2: 1, avx2: 2, neon: 3 };

function checkOutput<T extends ArrayBufferView & { length: number }>(name: string, output: T, needed: number, input: ArrayBufferView): T {
  if (output.length !== needed) {
    throw rangeError('ERR_OUT_OF_RANGE', `${name}: expected ${output.constructor.name} of ${needed} samples, got ${output.length}`);
  }
  if (sharesMemory(input, output)) throw rangeError('ERR_OVERLAP', `${name}: must not share memory with input`);
  return output;
}

/**
 * Float32 [-1, 1) -> Int16: x * 32768, round to nearest (ties to even), saturate, NaN -> 0.
 * `level` forces one implementation (for tests and benchmarks); by default the best the CPU has.
 */
export function f32ToS16(input: Float32Array, output?: Int16Array, level?: SimdLevelName): Int16Array {
  expectTypedArray('input', input, Float32Array);
  const out = output === undefined ? new Int16Array(input.length) : checkOutput('output', expectTypedArray('output', output, Int16Array), input.length, input);
  if (level === undefined) {
    native.f32ToS16(input, out);
  } else {
    const id = Object.hasOwn(LEVEL_IDS, level) ? LEVEL_IDS[level] : undefined;
    if (id === undefined) throw rangeError('ERR_OUT_OF_RANGE', `level: expected one of ${Object.keys(LEVEL_IDS).join(', ')}, got ${String(level)}`);
    native.f32ToS16(input, out, id);
  }
  return out;
}

/** Int16 -> Float32: x / 32768 (exact). */
export function s16ToF32(input: Int16Array, output?: Float32Array): Float32Array {
  expectTypedArray('input', input, Int16Array);
  const out = output === undefined ? new Float32Array(input.length) : checkOutput('output', expectTypedArray('output', output, Float32Array), input.length, input);
  native.s16ToF32(input, out);
  return out;
}

/** The conversion implementations this CPU can run, best last. */
export function supportedSimdLevels(): SimdLevelName[] {
  return native.supportedSimdLevels().map((l) => l.name as SimdLevelName);
}
