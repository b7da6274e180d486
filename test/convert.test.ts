// Sample conversion f32ToS16 / s16ToF32 against an independent float64 reference written here.
// Every SIMD implementation the CPU supports is run explicitly and must be bit-identical to the
// reference on edge values, exhaustive ties, >= 2 million random floats, every tail length 0..70,
// unaligned views, and large buffers.
import { describe, expect, it } from 'vitest';
import { f32ToS16, s16ToF32, simdLevel, supportedSimdLevels, type SimdLevelName } from '../src/index.js';
import { expectCoded } from './helpers/errors.js';
import { rng } from './helpers/prng.mjs';

// ---- the reference (float64, written from the spec, not from the implementation) ---------------

/** x * 32768, NaN -> 0, saturate to [-32768, 32767], round half to even. */
function refOne(x: number): number {
  if (Number.isNaN(x)) return 0;
  const v = x * 32768; // exact in float64 for every float32 x (a power-of-two scale, 8 more exponent bits)
  if (v >= 32767) return 32767;
  if (v <= -32768) return -32768;
  const f = Math.floor(v);
  const frac = v - f; // exact: v has at most 24 significant bits
  if (frac < 0.5) return f === 0 ? 0 : f; // normalise -0
  if (frac > 0.5) return f + 1;
  return f % 2 === 0 ? f : f + 1; // tie: to even
}

function reference(input: Float32Array): Int16Array {
  const out = new Int16Array(input.length);
  for (let i = 0; i < input.length; i++) out[i] = refOne(input[i]!);
  return out;
}

function bitsOf(x: Float32Array, i: number): string {
  return '0x' + new Uint32Array(x.buffer, x.byteOffset + 4 * i, 1)[0]!.toString(16).padStart(8, '0');
}

/** Fast whole-array comparison with a useful message (vitest's diff of 2M elements is unusable). */
function expectSame(actual: Int16Array, expected: Int16Array, input: Float32Array, what: string): void {
  expect(actual.length, `${what}: length`).toBe(expected.length);
  let bad = 0;
  let first = -1;
  for (let i = 0; i < expected.length; i++) {
    if (actual[i] !== expected[i]) {
      if (first < 0) first = i;
      bad++;
    }
  }
  if (bad > 0) {
    const i = first;
    expect.fail(
      `${what}: ${bad} of ${expected.length} samples differ; first at [${i}]: input ${input[i]} (bits ${bitsOf(input, i)}) ` +
        `-> got ${actual[i]}, reference ${expected[i]}`,
    );
  }
}

function fromBits(bits: number[]): Float32Array {
  const u = new Uint32Array(bits.map((b) => b >>> 0));
  return new Float32Array(u.buffer);
}

// Copies through Uint32 views so NaN payloads survive bit for bit.
function concatBits(...parts: Float32Array[]): Float32Array {
  const total = parts.reduce((n, p) => n + p.length, 0);
  const out = new Uint32Array(total);
  let o = 0;
  for (const p of parts) {
    out.set(new Uint32Array(p.buffer, p.byteOffset, p.length), o);
    o += p.length;
  }
  return new Float32Array(out.buffer);
}

const TWO_M24 = 2 ** -24;
const NAN_BITS = [0x7fc00000, 0xffc00000, 0x7f800001, 0xff800001, 0x7fffffff, 0xffffffff, 0x7fa00000, 0x7fc00001, 0x7f812345];

/** Edge values: zeros, ±1 and neighbours, saturation boundaries, ties, infinities, NaNs, denormals, FLT_MAX. */
function edgeValues(): Float32Array {
  const nums: number[] = [
    0, 1, -1, 1 - TWO_M24, -1 + TWO_M24 * 2, 1 + 2 ** -23, -1 - 2 ** -23,
    32767.5 / 32768, -32768.5 / 32768, 32767.49 / 32768, 32766.5 / 32768, -32767.5 / 32768, 32767 / 32768, -32768 / 32768,
    0.5 / 32768, 1.5 / 32768, 2.5 / 32768, 3.5 / 32768, -0.5 / 32768, -1.5 / 32768, -2.5 / 32768, -3.5 / 32768,
    0.49 / 32768, 0.51 / 32768, -0.49 / 32768, -0.51 / 32768, 1 / 32768, -1 / 32768,
    0.5, -0.5, 0.25, -0.75, 2, -2, 65536, -65536, 1e10, -1e10, 1e30, -1e30,
    Infinity, -Infinity, 1.2e-38, -1.2e-38,
  ];
  const bits = [
    0x80000000, // -0
    0x00000001, 0x80000001, 0x00400000, 0x807fffff, 0x007fffff, // denormals
    0x00800000, 0x80800000, // FLT_MIN
    0x7f7fffff, 0xff7fffff, // ±FLT_MAX (x * 32768 overflows float32 to ±Inf)
    0x7effffff, 0xfeffffff, 0x477fff00, 0xc7000000, // large finite
    ...NAN_BITS,
  ];
  return concatBits(new Float32Array(nums), fromBits(bits));
}

/** Every tie k + 0.5 in and just outside the Int16 range, and its float32 neighbours on both sides. */
function tieValues(): Float32Array {
  const out: number[] = [];
  const one = new Float32Array(1);
  const oneBits = new Uint32Array(one.buffer);
  for (let k = -32770; k <= 32768; k++) {
    const t = (k + 0.5) / 32768; // (2k+1) / 2^16: exact in float32
    out.push(t);
    one[0] = t;
    const b = oneBits[0]!;
    oneBits[0] = b + 1;
    out.push(one[0]!);
    oneBits[0] = b - 1;
    out.push(one[0]!);
  }
  return new Float32Array(out);
}

function randomValues(seed: number): Float32Array {
  const r = rng(seed);
  const n = 1_100_000;
  const bits = new Float32Array(n);
  r.fill(bits); // random bit patterns: every exponent, NaNs, infinities, denormals
  const uniform = new Float32Array(n);
  for (let i = 0; i < n; i++) uniform[i] = r.range(-1.5, 1.5);
  return concatBits(bits, uniform);
}

const LEVELS = supportedSimdLevels();

describe('the reference itself (sanity: it must encode the spec)', () => {
  it('maps the spec examples', () => {
    expect(refOne(1)).toBe(32767);
    expect(refOne(-1)).toBe(-32768);
    expect(refOne(0.5 / 32768)).toBe(0);
    expect(refOne(1.5 / 32768)).toBe(2);
    expect(refOne(2.5 / 32768)).toBe(2);
    expect(refOne(-0.5 / 32768)).toBe(0);
    expect(refOne(-1.5 / 32768)).toBe(-2);
    expect(refOne(-2.5 / 32768)).toBe(-2);
    expect(refOne(NaN)).toBe(0);
    expect(refOne(Infinity)).toBe(32767);
    expect(refOne(-Infinity)).toBe(-32768);
    expect(refOne(32767.5 / 32768)).toBe(32767);
    expect(refOne(-32768.5 / 32768)).toBe(-32768);
    // the test inputs really are float32 values (no rounding happened when they were stored)
    for (const x of [32767.5 / 32768, -32768.5 / 32768, 0.5 / 32768, 1 - TWO_M24]) expect(Math.fround(x)).toBe(x);
  });
});

describe('supportedSimdLevels', () => {
  it('lists scalar, the level in use, and the x86-64 baseline', () => {
    expect(LEVELS).toContain('scalar');
    expect(LEVELS).toContain(simdLevel());
    if (process.arch === 'x64') expect(LEVELS).toContain('sse2');
    if (process.arch === 'arm64') expect(LEVELS).toContain('neon');
    expect(new Set(LEVELS).size).toBe(LEVELS.length);
  });

  it('rejects a level the CPU does not have and an unknown level name', () => {
    const foreign: SimdLevelName = process.arch === 'arm64' ? 'avx2' : 'neon';
    expectCoded(() => f32ToS16(new Float32Array(4), undefined, foreign), RangeError, 'ERR_SIMD_UNSUPPORTED', foreign);
    expectCoded(() => f32ToS16(new Float32Array(4), undefined, 'fast' as SimdLevelName), RangeError, 'ERR_OUT_OF_RANGE', 'level');
  });
});

describe('f32ToS16 matches the float64 reference bit for bit', () => {
  const edges = edgeValues();
  const ties = tieValues();
  const random = randomValues(0xc0ffee);

  it('spec examples: 1.0 -> 32767, -1.0 -> -32768, ties to even, NaN -> 0', () => {
    const input = new Float32Array([1, -1, 0.5 / 32768, 1.5 / 32768, 2.5 / 32768, -0.5 / 32768, -1.5 / 32768, -2.5 / 32768, NaN, Infinity, -Infinity, 0, -0]);
    const expected = [32767, -32768, 0, 2, 2, 0, -2, -2, 0, 32767, -32768, 0, 0];
    for (const level of [undefined, ...LEVELS]) {
      // 16 copies so the values go through the SIMD body as well as through the scalar tail
      const big = new Float32Array(input.length * 16);
      for (let i = 0; i < 16; i++) big.set(input, i * input.length);
      const out = f32ToS16(big, undefined, level);
      for (let i = 0; i < big.length; i++) {
        if (out[i] !== expected[i % input.length]) {
          expect.fail(`level ${level ?? 'default'}: [${i}] ${big[i]} -> ${out[i]}, expected ${expected[i % input.length]}`);
        }
      }
    }
  });

  it.each(LEVELS)('%s: edge values, NaN payloads, denormals, ±FLT_MAX', (level) => {
    // repeat so each value lands in every SIMD lane position
    const parts: Float32Array[] = [];
    for (let shift = 0; shift < 17; shift++) parts.push(edges.subarray(shift), edges.subarray(0, shift));
    const input = concatBits(...parts);
    expectSame(f32ToS16(input, undefined, level), reference(input), input, `${level} edges`);
  });

  it.each(LEVELS)('%s: every tie (k + 0.5) / 32768 and its float32 neighbours', (level) => {
    expectSame(f32ToS16(ties, undefined, level), reference(ties), ties, `${level} ties`);
  });

  it(`${LEVELS.join(', ')} and the default: 2.2 million random floats (random bits and uniform in [-1.5, 1.5))`, () => {
    expect(random.length).toBeGreaterThanOrEqual(2_000_000);
    const expected = reference(random);
    const outputs = new Map<string, Int16Array>();
    for (const level of LEVELS) {
      const out = f32ToS16(random, undefined, level);
      expectSame(out, expected, random, `${level} random`);
      outputs.set(level, out);
    }
    expectSame(f32ToS16(random), expected, random, 'default level random');
    // and the implementations agree with each other (implied, but stated)
    const [first, ...rest] = [...outputs.values()];
    for (const o of rest) expectSame(o, first!, random, 'cross-level');
    // the random set really exercises NaN, infinities and saturation
    let nan = 0, sat = 0;
    for (let i = 0; i < random.length; i++) {
      if (Number.isNaN(random[i])) nan++;
      else if (Math.abs(random[i]!) >= 1) sat++;
    }
    expect(nan).toBeGreaterThan(1000);
    expect(sat).toBeGreaterThan(100_000);
  });

  it.each(LEVELS)('%s: lengths 0..70 at every alignment, nothing written outside the output', (level) => {
    const source = concatBits(edges, ties.subarray(0, 200), random.subarray(0, 200));
    const GUARD = 8;
    for (let n = 0; n <= 70; n++) {
      for (let inOffset = 0; inOffset < 4; inOffset++) {
        for (let outOffset = 0; outOffset < 8; outOffset += 3) {
          const start = (n * 7 + inOffset * 13 + outOffset) % (source.length - 70);
          const inBuf = new ArrayBuffer(4 * (n + 8));
          const input = new Float32Array(inBuf, 4 * inOffset, n); // byteOffset 0, 4, 8, 12
          new Uint32Array(inBuf, 4 * inOffset, n).set(new Uint32Array(source.buffer, 4 * start, n));
          const outBuf = new Int16Array(n + 2 * GUARD + 8).fill(0x5a5a);
          const output = new Int16Array(outBuf.buffer, 2 * (GUARD + outOffset), n); // odd element offsets too
          const ret = f32ToS16(input, output, level);
          expect(ret).toBe(output);
          expectSame(output, reference(input), input, `${level} n=${n} inOffset=${inOffset} outOffset=${outOffset}`);
          for (let i = 0; i < outBuf.length; i++) {
            if (i >= GUARD + outOffset && i < GUARD + outOffset + n) continue;
            if (outBuf[i] !== 0x5a5a) expect.fail(`${level} n=${n}: wrote outside the output at element ${i - GUARD - outOffset}`);
          }
        }
      }
    }
  });

  it.each(LEVELS)('%s: a large buffer (1,000,003 samples) through views with byteOffset 12 and 6', (level) => {
    const n = 1_000_003;
    const inBuf = new ArrayBuffer(4 * n + 16);
    const input = new Float32Array(inBuf, 12, n);
    new Uint32Array(inBuf, 12, n).set(new Uint32Array(random.buffer, 0, n));
    const outBuf = new ArrayBuffer(2 * n + 16);
    const output = new Int16Array(outBuf, 6, n);
    new Int16Array(outBuf).fill(0x1234);
    f32ToS16(input, output, level);
    expectSame(output, reference(input), input, `${level} large`);
    const all = new Int16Array(outBuf);
    expect([all[0], all[1], all[2], all[3 + n], all[all.length - 1]]).toEqual([0x1234, 0x1234, 0x1234, 0x1234, 0x1234]);
  });

  it('a view with nonzero byteOffset reads its own samples, not the buffer start', () => {
    const buf = new ArrayBuffer(4 * 40);
    const whole = new Float32Array(buf);
    for (let i = 0; i < whole.length; i++) whole[i] = (i - 20) / 16;
    const view = new Float32Array(buf, 12, 25);
    expectSame(f32ToS16(view), reference(view), view, 'view');
    expect(f32ToS16(view)[0]).toBe(refOne(whole[3]!));
  });

  it('returns a new Int16Array of the input length when no output is given', () => {
    const out = f32ToS16(new Float32Array(37));
    expect(out).toBeInstanceOf(Int16Array);
    expect(out.length).toBe(37);
    expect(f32ToS16(new Float32Array(0)).length).toBe(0);
  });
});

describe('s16ToF32', () => {
  const all = new Int16Array(65536);
  for (let i = 0; i < 65536; i++) all[i] = i - 32768;

  it('maps all 65536 values to exactly x / 32768 (bit-identical, +0 for 0)', () => {
    const out = s16ToF32(all);
    const expected = new Float32Array(65536);
    for (let i = 0; i < 65536; i++) expected[i] = all[i]! / 32768;
    expect(Buffer.from(out.buffer, out.byteOffset, out.byteLength).equals(Buffer.from(expected.buffer))).toBe(true);
    expect(Object.is(out[32768], 0)).toBe(true);
    expect(out[0]).toBe(-1);
    expect(out[65535]).toBe(32767 / 32768);
  });

  it('honours byteOffset on input and output views, at every length 0..70', () => {
    for (let n = 0; n <= 70; n++) {
      const inBuf = new ArrayBuffer(2 * n + 16);
      const input = new Int16Array(inBuf, 6, n);
      for (let i = 0; i < n; i++) input[i] = (i * 2731 - 30000) | 0;
      const outBuf = new Float32Array(n + 8).fill(7);
      const output = new Float32Array(outBuf.buffer, 12, n);
      expect(s16ToF32(input, output)).toBe(output);
      for (let i = 0; i < n; i++) expect(output[i]).toBe(input[i]! / 32768);
      expect([outBuf[0], outBuf[1], outBuf[2], outBuf[3 + n]]).toEqual([7, 7, 7, 7]);
    }
  });

  it.each(LEVELS)('%s: Int16 -> Float32 -> Int16 is the identity for all 65536 values', (level) => {
    const back = f32ToS16(s16ToF32(all), undefined, level);
    expect(Buffer.from(back.buffer).equals(Buffer.from(all.buffer))).toBe(true);
  });
});

describe('argument checks', () => {
  it('output length must equal the input length: RangeError ERR_OUT_OF_RANGE', () => {
    expectCoded(() => f32ToS16(new Float32Array(10), new Int16Array(9)), RangeError, 'ERR_OUT_OF_RANGE', 'output');
    expectCoded(() => f32ToS16(new Float32Array(10), new Int16Array(11)), RangeError, 'ERR_OUT_OF_RANGE', 'output');
    expectCoded(() => s16ToF32(new Int16Array(10), new Float32Array(9)), RangeError, 'ERR_OUT_OF_RANGE', 'output');
    expectCoded(() => s16ToF32(new Int16Array(10), new Float32Array(11)), RangeError, 'ERR_OUT_OF_RANGE', 'output');
  });

  it('overlapping input and output: RangeError ERR_OVERLAP; disjoint views of one buffer are fine', () => {
    const buf = new ArrayBuffer(256);
    const input = new Float32Array(buf, 0, 16); // bytes 0..63
    expectCoded(() => f32ToS16(input, new Int16Array(buf, 0, 16)), RangeError, 'ERR_OVERLAP', 'output');
    expectCoded(() => f32ToS16(input, new Int16Array(buf, 62, 16)), RangeError, 'ERR_OVERLAP', 'output');
    const s = new Int16Array(buf, 64, 16); // bytes 64..95
    expectCoded(() => s16ToF32(s, new Float32Array(buf, 32, 16)), RangeError, 'ERR_OVERLAP', 'output');
    expectCoded(() => s16ToF32(s, new Float32Array(buf, 92, 16)), RangeError, 'ERR_OVERLAP', 'output');
    // touching but not overlapping
    input.set([0.5, -0.5, 1, -1, NaN, 0, 0.25, 0.75, 0, 0, 0, 0, 0, 0, 0, 0.125]);
    const out = new Int16Array(buf, 64, 16);
    f32ToS16(input, out);
    expect(Array.from(out.subarray(0, 8))).toEqual([16384, -16384, 32767, -32768, 0, 0, 8192, 24576]);
    const f = new Float32Array(buf, 96, 16);
    s16ToF32(out, f);
    expect(f[0]).toBe(0.5);
    expect(f[3]).toBe(-1);
  });

  it('wrong types: TypeError ERR_INVALID_ARG_TYPE', () => {
    const bad: unknown[] = [undefined, null, 1, 'x', [0.5], new Float64Array(4), new Int16Array(4), new DataView(new ArrayBuffer(16)), new ArrayBuffer(16)];
    for (const b of bad) {
      if (b instanceof Float32Array) continue;
      expectCoded(() => f32ToS16(b as never), TypeError, 'ERR_INVALID_ARG_TYPE', 'input');
    }
    for (const b of [null, 1, 'x', [0], new Float32Array(4), new Uint16Array(4), new ArrayBuffer(8)]) {
      expectCoded(() => f32ToS16(new Float32Array(4), b as never), TypeError, 'ERR_INVALID_ARG_TYPE', 'output');
    }
    for (const b of [undefined, null, 1, 'x', [0], new Float32Array(4), new Uint16Array(4), new ArrayBuffer(8)]) {
      expectCoded(() => s16ToF32(b as never), TypeError, 'ERR_INVALID_ARG_TYPE', 'input');
    }
    for (const b of [null, 1, [0], new Float64Array(4), new Int16Array(4)]) {
      expectCoded(() => s16ToF32(new Int16Array(4), b as never), TypeError, 'ERR_INVALID_ARG_TYPE', 'output');
    }
  });
});
