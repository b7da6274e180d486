// Misuse of every public class and function, and of the raw native entry points: wrong types,
// missing options, bad numbers, use after close, garbage and detached buffers. Each must be a
// TypeError or RangeError with a stable `code` and a message naming the argument, never a crash.
import { describe, expect, it } from 'vitest';
import {
  AesCtr,
  f32ToS16,
  nativeBuildInfo,
  OpusDecoder,
  OpusEncoder,
  opusFrameSizes,
  opusVersion,
  opensslVersion,
  packet,
  Resampler,
  s16ToF32,
  simdLevel,
  supportedSimdLevels,
} from '../src/index.js';
import { native } from '../src/native/addon.js';
import { expectCoded, thrown } from './helpers/errors.js';

const TYPE = 'ERR_INVALID_ARG_TYPE';
const RANGE = 'ERR_OUT_OF_RANGE';
const CLOSED = 'ERR_CLOSED';

/** The wrong-kind values the brief lists, labelled for test names. */
const WRONG_KINDS: Array<[string, unknown]> = [
  ['undefined', undefined],
  ['null', null],
  ['number', 42],
  ['string', 'abc'],
  ['plain array', [1, 2, 3, 4]],
  ['Float64Array', new Float64Array(16)],
  ['DataView', new DataView(new ArrayBuffer(16))],
  ['ArrayBuffer', new ArrayBuffer(16)],
];
const withoutUndefined = WRONG_KINDS.filter(([, v]) => v !== undefined);

/** Bad values for an integer argument: [label, value, expected error class, code]. */
const BAD_INTEGERS: Array<[string, unknown, typeof TypeError | typeof RangeError, string]> = [
  ['NaN', NaN, RangeError, RANGE],
  ['Infinity', Infinity, RangeError, RANGE],
  ['-Infinity', -Infinity, RangeError, RANGE],
  ['negative', -1, RangeError, RANGE],
  ['non-integer', 1.5, RangeError, RANGE],
  ['huge', 2 ** 60, RangeError, RANGE],
  ['string', '16000', TypeError, TYPE],
  ['null', null, TypeError, TYPE],
  ['bigint', 16000n, TypeError, TYPE],
  ['boolean', true, TypeError, TYPE],
  ['object', {}, TypeError, TYPE],
];

const ENC = { sampleRate: 16000, channels: 1, application: 'voip' } as const;

type ViewCtor<T> = new (buffer: ArrayBuffer) => T;

/** A typed array of `length` elements whose ArrayBuffer was then detached (transferred away). */
function detached<T extends ArrayBufferView>(ctor: ViewCtor<T> & { BYTES_PER_ELEMENT: number }, length: number): T {
  const buf = new ArrayBuffer(length * ctor.BYTES_PER_ELEMENT);
  const view = new ctor(buf);
  structuredClone(buf, { transfer: [buf] });
  expect(buf.byteLength).toBe(0); // really detached
  expect(view.byteLength).toBe(0);
  return view;
}

describe('f32ToS16 / s16ToF32', () => {
  it.each(WRONG_KINDS)('f32ToS16 input = %s: TypeError ERR_INVALID_ARG_TYPE naming input', (_l, v) => {
    expectCoded(() => f32ToS16(v as Float32Array), TypeError, TYPE, 'input');
  });
  it.each(withoutUndefined)('f32ToS16 output = %s: TypeError naming output', (_l, v) => {
    expectCoded(() => f32ToS16(new Float32Array(4), v as Int16Array), TypeError, TYPE, 'output');
  });
  it.each(WRONG_KINDS)('s16ToF32 input = %s: TypeError naming input', (_l, v) => {
    expectCoded(() => s16ToF32(v as Int16Array), TypeError, TYPE, 'input');
  });
  it.each(withoutUndefined)('s16ToF32 output = %s: TypeError naming output', (_l, v) => {
    expectCoded(() => s16ToF32(new Int16Array(4), v as Float32Array), TypeError, TYPE, 'output');
  });
  it('swapped argument types', () => {
    expectCoded(() => f32ToS16(new Int16Array(4) as never), TypeError, TYPE, 'input');
    expectCoded(() => s16ToF32(new Float32Array(4) as never), TypeError, TYPE, 'input');
    expectCoded(() => f32ToS16(new Float32Array(4), new Float32Array(4) as never), TypeError, TYPE, 'output');
    expectCoded(() => f32ToS16(Buffer.alloc(16) as never), TypeError, TYPE, 'input');
  });
  it('unknown level names: RangeError naming level', () => {
    for (const level of ['fast', 'AVX2', '', 1, null]) {
      expectCoded(() => f32ToS16(new Float32Array(4), undefined, level as never), RangeError, RANGE, 'level');
    }
  });
  it('level names that are Object.prototype members are unknown levels too: RangeError naming level', () => {
    for (const level of ['toString', '__proto__', 'constructor', 'hasOwnProperty']) {
      expectCoded(() => f32ToS16(new Float32Array(4), undefined, level as never), RangeError, RANGE, 'level');
    }
  });
  it('detached buffers: an empty input converts to nothing; an output of the wrong length is a RangeError', () => {
    const emptyIn = detached(Float32Array, 16);
    expect(f32ToS16(emptyIn).length).toBe(0);
    expectCoded(() => f32ToS16(new Float32Array(4), detached(Int16Array, 4)), RangeError, RANGE, 'output');
    expectCoded(() => s16ToF32(new Int16Array(4), detached(Float32Array, 4)), RangeError, RANGE, 'output');
  });
});

describe('supportedSimdLevels / simdLevel / opusVersion / nativeBuildInfo / opensslVersion take no input and return data', () => {
  it('return well-formed values', () => {
    expect(supportedSimdLevels().length).toBeGreaterThan(0);
    expect(typeof simdLevel()).toBe('string');
    expect(opusVersion()).toMatch(/^libopus /);
    const info = nativeBuildInfo();
    expect(Object.keys(info).sort()).toEqual(['buildType', 'openssl', 'opusSimd', 'opusVersion', 'simdLevel']);
    expect(opensslVersion()).toMatch(/^OpenSSL \d/);
  });
});

describe('opusFrameSizes', () => {
  it('rejects a rate that is not an Opus rate, and non-numbers', () => {
    for (const rate of [44100, 0, -16000, NaN, 16000.5]) {
      expectCoded(() => opusFrameSizes(rate as never), RangeError, RANGE, 'sampleRate');
    }
    for (const rate of [undefined, '16000', null]) {
      expectCoded(() => opusFrameSizes(rate as never), TypeError, TYPE, 'sampleRate');
    }
  });
});

describe('AesCtr', () => {
  it.each(WRONG_KINDS)('key = %s: TypeError naming key', (_l, v) => {
    expectCoded(() => new AesCtr(v as Uint8Array), TypeError, TYPE, 'key');
  });
  it.each(WRONG_KINDS)('crypt(iv | data | output = %s): TypeError naming the argument', (_l, v) => {
    const aes = new AesCtr(new Uint8Array(16));
    expectCoded(() => aes.crypt(v as Uint8Array, new Uint8Array(4)), TypeError, TYPE, 'iv');
    expectCoded(() => aes.crypt(new Uint8Array(16), v as Uint8Array), TypeError, TYPE, 'data');
    if (v !== undefined) expectCoded(() => aes.crypt(new Uint8Array(16), new Uint8Array(4), v as Uint8Array), TypeError, TYPE, 'output');
    aes.close();
  });
  it('lengths: RangeError naming the argument', () => {
    expectCoded(() => new AesCtr(new Uint8Array(32)), RangeError, RANGE, 'key');
    expectCoded(() => new AesCtr(detached(Uint8Array, 16)), RangeError, RANGE, 'key');
    const aes = new AesCtr(new Uint8Array(16));
    expectCoded(() => aes.crypt(new Uint8Array(15), new Uint8Array(4)), RangeError, RANGE, 'iv');
    expectCoded(() => aes.crypt(detached(Uint8Array, 16), new Uint8Array(4)), RangeError, RANGE, 'iv');
    expectCoded(() => aes.crypt(new Uint8Array(16), new Uint8Array(4), new Uint8Array(3)), RangeError, RANGE, 'output');
    expectCoded(() => aes.crypt(new Uint8Array(16), new Uint8Array(4), detached(Uint8Array, 4)), RangeError, RANGE, 'output');
    // a detached data array is simply empty
    expect(aes.crypt(new Uint8Array(16), detached(Uint8Array, 16)).length).toBe(0);
    aes.close();
  });
  it('use after close, double close: TypeError ERR_CLOSED', () => {
    const aes = new AesCtr(new Uint8Array(16));
    aes.close();
    expectCoded(() => aes.crypt(new Uint8Array(16), new Uint8Array(1)), TypeError, CLOSED, 'AesCtr');
    expectCoded(() => aes.close(), TypeError, CLOSED, 'AesCtr');
    expectCoded(() => aes.close(), TypeError, CLOSED, 'AesCtr');
  });
});

describe('OpusEncoder', () => {
  it.each(WRONG_KINDS)('options = %s: TypeError naming options', (_l, v) => {
    expectCoded(() => new OpusEncoder(v as never), TypeError, TYPE, 'options');
  });
  it('missing required options: TypeError naming each', () => {
    expectCoded(() => new OpusEncoder({} as never), TypeError, TYPE, 'options.sampleRate');
    expectCoded(() => new OpusEncoder({ sampleRate: 16000 } as never), TypeError, TYPE, 'options.channels');
    expectCoded(() => new OpusEncoder({ sampleRate: 16000, channels: 1 } as never), TypeError, TYPE, 'options.application');
  });
  it.each(BAD_INTEGERS)('numeric options = %s', (_l, v, kind, code) => {
    for (const key of ['sampleRate', 'channels', 'bitrate', 'complexity', 'packetLossPercent']) {
      expectCoded(() => new OpusEncoder({ ...ENC, [key]: v } as never), kind, code, `options.${key}`);
    }
  });
  it.each(BAD_INTEGERS)('setBitrate / setComplexity = %s', (_l, v, kind, code) => {
    const enc = new OpusEncoder(ENC);
    expectCoded(() => enc.setBitrate(v as number), kind, code, 'bitrate');
    expectCoded(() => enc.setComplexity(v as number), kind, code, 'complexity');
    enc.close();
  });
  it('boolean and enum options of the wrong kind', () => {
    for (const key of ['vbr', 'vbrConstraint', 'inbandFec', 'dtx']) {
      for (const v of [1, 'true', null]) expectCoded(() => new OpusEncoder({ ...ENC, [key]: v } as never), TypeError, TYPE, `options.${key}`);
    }
    for (const key of ['application', 'maxBandwidth', 'signal']) {
      for (const v of [0, null, ['voip']]) expectCoded(() => new OpusEncoder({ ...ENC, [key]: v } as never), TypeError, TYPE, `options.${key}`);
      expectCoded(() => new OpusEncoder({ ...ENC, [key]: 'nonsense' } as never), RangeError, RANGE, `options.${key}`);
    }
    expectCoded(() => new OpusEncoder({ ...ENC, sampleRaet: 16000 } as never), RangeError, 'ERR_UNKNOWN_OPTION', 'sampleRaet');
  });
  it.each(WRONG_KINDS)('encode(%s): TypeError naming pcm', (_l, v) => {
    const enc = new OpusEncoder(ENC);
    expectCoded(() => enc.encode(v as Int16Array), TypeError, TYPE, 'pcm');
    enc.close();
  });
  it('encode of a wrong-size or detached frame: RangeError ERR_OPUS_FRAME', () => {
    const enc = new OpusEncoder(ENC);
    expectCoded(() => enc.encode(new Int16Array(100)), RangeError, 'ERR_OPUS_FRAME', 'pcm');
    expectCoded(() => enc.encode(detached(Int16Array, 960)), RangeError, 'ERR_OPUS_FRAME', 'pcm');
    expectCoded(() => enc.encode(new Float32Array(960) as never), TypeError, TYPE, 'pcm');
    enc.close();
  });
  it('use after close, double close: TypeError ERR_CLOSED for every method', () => {
    const enc = new OpusEncoder(ENC);
    enc.close();
    expectCoded(() => enc.encode(new Int16Array(960)), TypeError, CLOSED, 'OpusEncoder');
    expectCoded(() => enc.setBitrate(16000), TypeError, CLOSED, 'OpusEncoder');
    expectCoded(() => enc.setComplexity(1), TypeError, CLOSED, 'OpusEncoder');
    expectCoded(() => enc.reset(), TypeError, CLOSED, 'OpusEncoder');
    expectCoded(() => enc.close(), TypeError, CLOSED, 'OpusEncoder');
  });
});

describe('OpusDecoder', () => {
  it.each(WRONG_KINDS)('options = %s: TypeError naming options', (_l, v) => {
    expectCoded(() => new OpusDecoder(v as never), TypeError, TYPE, 'options');
  });
  it('missing and bad options', () => {
    expectCoded(() => new OpusDecoder({} as never), TypeError, TYPE, 'options.sampleRate');
    expectCoded(() => new OpusDecoder({ sampleRate: 16000 } as never), TypeError, TYPE, 'options.channels');
    for (const [, v, kind, code] of BAD_INTEGERS) {
      expectCoded(() => new OpusDecoder({ sampleRate: v, channels: 1 } as never), kind, code, 'options.sampleRate');
      expectCoded(() => new OpusDecoder({ sampleRate: 16000, channels: v } as never), kind, code, 'options.channels');
    }
  });
  it.each(WRONG_KINDS.filter(([, v]) => v !== null))('decode(%s): TypeError naming packet', (_l, v) => {
    const dec = new OpusDecoder({ sampleRate: 16000, channels: 1 });
    expectCoded(() => dec.decode(v as Uint8Array), TypeError, TYPE, 'packet');
    dec.close();
  });
  it.each(withoutUndefined)('decode(null, options = %s): TypeError naming options', (_l, v) => {
    const dec = new OpusDecoder({ sampleRate: 16000, channels: 1 });
    expectCoded(() => dec.decode(null, v as never), TypeError, TYPE, 'options');
    dec.close();
  });
  it('decode options fec / frameSize of the wrong kind', () => {
    const dec = new OpusDecoder({ sampleRate: 16000, channels: 1 });
    for (const v of [1, 'yes', null]) expectCoded(() => dec.decode(new Uint8Array([0xf8, 0xff, 0xfe]), { fec: v } as never), TypeError, TYPE, 'options.fec');
    for (const [, v, kind, code] of BAD_INTEGERS) {
      expectCoded(() => dec.decode(null, { frameSize: v } as never), kind, code, 'options.frameSize');
    }
    expectCoded(() => dec.decode(null, { frameSize: 0 }), RangeError, RANGE, 'options.frameSize');
    expectCoded(() => dec.decode(null, { frameSize: 321 }), RangeError, 'ERR_OPUS_FRAME', 'options.frameSize');
    expectCoded(() => dec.decode(detached(Uint8Array, 10)), RangeError, 'ERR_OPUS_DECODE', 'packet');
    dec.close();
  });
  it('use after close, double close: TypeError ERR_CLOSED for every method and the getter', () => {
    const dec = new OpusDecoder({ sampleRate: 16000, channels: 1 });
    dec.close();
    expectCoded(() => dec.decode(null), TypeError, CLOSED, 'OpusDecoder');
    expectCoded(() => dec.lastFrameSize, TypeError, CLOSED, 'OpusDecoder');
    expectCoded(() => dec.reset(), TypeError, CLOSED, 'OpusDecoder');
    expectCoded(() => dec.close(), TypeError, CLOSED, 'OpusDecoder');
  });
});

describe('Resampler', () => {
  it.each(WRONG_KINDS.filter(([, v]) => v !== undefined))('options = %s: TypeError naming options', (_l, v) => {
    expectCoded(() => new Resampler(v as never), TypeError, TYPE, 'options');
  });
  it('missing and bad rates', () => {
    expectCoded(() => new Resampler(undefined as never), TypeError, TYPE, 'options');
    expectCoded(() => new Resampler({} as never), TypeError, TYPE, 'options.inputRate');
    expectCoded(() => new Resampler({ inputRate: 16000 } as never), TypeError, TYPE, 'options.outputRate');
    for (const [, v, kind, code] of BAD_INTEGERS) {
      expectCoded(() => new Resampler({ inputRate: v, outputRate: 48000 } as never), kind, code, 'options.inputRate');
      expectCoded(() => new Resampler({ inputRate: 16000, outputRate: v } as never), kind, code, 'options.outputRate');
    }
    expectCoded(() => new Resampler({ inputRate: 0, outputRate: 48000 }), RangeError, RANGE, 'options.inputRate');
    expectCoded(() => new Resampler({ inputRate: 44100, outputRate: 7919 }), RangeError, 'ERR_RESAMPLER_RATE', '44100', '7919');
    expectCoded(() => new Resampler({ inputRate: 16000, outputRate: 48000, quality: 1 } as never), RangeError, 'ERR_UNKNOWN_OPTION', 'quality');
  });
  it.each(WRONG_KINDS)('process(%s): TypeError naming input', (_l, v) => {
    const r = new Resampler({ inputRate: 16000, outputRate: 48000 });
    expectCoded(() => r.process(v as Int16Array), TypeError, TYPE, 'input');
    r.close();
  });
  it('flush() with a format other than "f32"', () => {
    const r = new Resampler({ inputRate: 16000, outputRate: 48000 });
    expectCoded(() => r.flush('f64' as never), RangeError, RANGE, 'format');
    expectCoded(() => r.flush(1 as never), TypeError, TYPE, 'format');
    r.close();
  });
  it('detached input is an empty chunk', () => {
    const r = new Resampler({ inputRate: 16000, outputRate: 48000 });
    expect(r.process(detached(Int16Array, 32)).length).toBe(0);
    r.close();
  });
  it('use after close, double close: TypeError ERR_CLOSED', () => {
    const r = new Resampler({ inputRate: 16000, outputRate: 48000 });
    r.close();
    expectCoded(() => r.process(new Int16Array(160)), TypeError, CLOSED, 'Resampler');
    expectCoded(() => r.flush(), TypeError, CLOSED, 'Resampler');
    expectCoded(() => r.reset(), TypeError, CLOSED, 'Resampler');
    expectCoded(() => r.delay, TypeError, CLOSED, 'Resampler');
    expectCoded(() => r.close(), TypeError, CLOSED, 'Resampler');
  });
});

describe('packet', () => {
  const H = { ssrc: 1, timestamp: 2, sequence: 3 };
  it.each(WRONG_KINDS)('encode(header = %s): TypeError naming header', (_l, v) => {
    expectCoded(() => packet.encode(v as never, new Uint8Array(1)), TypeError, TYPE, 'header');
  });
  it.each(WRONG_KINDS)('encode(payload = %s) and parse(same): TypeError naming the argument', (_l, v) => {
    expectCoded(() => packet.encode(H, v as never), TypeError, TYPE, 'payload');
    expectCoded(() => packet.parse(v as never), TypeError, TYPE, 'datagram');
  });
  it.each(BAD_INTEGERS)('header fields = %s', (_l, v, kind, code) => {
    for (const key of ['type', 'flags', 'ssrc', 'timestamp', 'sequence']) {
      expectCoded(() => packet.encode({ ...H, [key]: v } as never, new Uint8Array(1)), kind, code, `header.${key}`);
    }
  });
  it('detached datagram is short; detached payload encodes an empty packet', () => {
    expectCoded(() => packet.parse(detached(Uint8Array, 32)), RangeError, 'ERR_PACKET_SHORT');
    expect(packet.encode(H, detached(Uint8Array, 32)).length).toBe(16);
  });
  it.each(withoutUndefined)('new ReplayWindow(%s): TypeError naming options', (_l, v) => {
    expectCoded(() => new packet.ReplayWindow(v as never), TypeError, TYPE, 'options');
  });
  it('ReplayWindow numbers', () => {
    for (const [, v, kind, code] of BAD_INTEGERS) {
      expectCoded(() => new packet.ReplayWindow({ maxJump: v } as never), kind, code, 'maxJump');
      const w = new packet.ReplayWindow();
      expectCoded(() => w.check(v as never), kind, code, 'sequence');
      expectCoded(() => w.commit(v as never), kind, code, 'sequence');
      expect(w.last).toBe(0);
    }
    expectCoded(() => new packet.ReplayWindow().check(undefined as never), TypeError, TYPE, 'sequence');
  });
  it('DownlinkIv misuse', () => {
    for (const [, v] of WRONG_KINDS) expectCoded(() => new packet.DownlinkIv(v as never), TypeError, TYPE, 'nonce');
    expectCoded(() => new packet.DownlinkIv(detached(Uint8Array, 16)), RangeError, RANGE, 'nonce');
    const iv = new packet.DownlinkIv(new Uint8Array(16).fill(1));
    for (const [, v, kind, code] of BAD_INTEGERS) {
      expectCoded(() => iv.next(v as never, 0), kind, code, 'payloadLength');
      expectCoded(() => iv.next(10, v as never), kind, code, 'timestampMs');
    }
    expectCoded(() => iv.next(undefined as never, 0), TypeError, TYPE, 'payloadLength');
  });
});

// ---- the raw addon, bypassing every TypeScript check ---------------------------------------------

/** Calls fn; it must either return normally or throw a TypeError/RangeError carrying a string code. */
function codedOrReturns(fn: () => unknown): 'returned' | string {
  let err: unknown;
  try {
    fn();
    return 'returned';
  } catch (e) {
    err = e;
  }
  expect(err instanceof TypeError || err instanceof RangeError, `threw ${String(err)}`).toBe(true);
  const code = (err as { code?: unknown }).code;
  expect(typeof code, `code of ${String(err)}`).toBe('string');
  return code as string;
}

/** Garbage for any argument position. */
function garbage(): unknown[] {
  return [
    undefined, null, 0, -1, 1.5, NaN, Infinity, -Infinity, 2 ** 53, -(2 ** 63), 1e308, 'x', '', true, 1n, Symbol('s'), {},
    [], [1, 2], () => 1, new ArrayBuffer(8), new DataView(new ArrayBuffer(8)), new Float64Array(4), new Int8Array(16),
    new Uint8Array(0), new Uint8Array(16), detached(Uint8Array, 16), new Int16Array(960), detached(Float32Array, 4),
    detached(Int16Array, 960), new Uint32Array(6), detached(Uint32Array, 6), new Uint8ClampedArray(16),
  ];
}

describe('raw native functions with garbage arguments', () => {
  it('module functions: every single-argument garbage, too few arguments, huge numbers', () => {
    const fns: Array<[string, (...a: unknown[]) => unknown]> = [
      ['f32ToS16', native.f32ToS16 as never],
      ['s16ToF32', native.s16ToF32 as never],
      ['packetEncode', native.packetEncode as never],
      ['packetParse', native.packetParse as never],
    ];
    for (const [name, fn] of fns) {
      expect(codedOrReturns(() => fn()), `${name}()`).toBe(TYPE);
      for (const g of garbage()) {
        for (let pos = 0; pos < 7; pos++) {
          const args: unknown[] = name === 'f32ToS16' ? [new Float32Array(8), new Int16Array(8), 0]
            : name === 's16ToF32' ? [new Int16Array(8), new Float32Array(8)]
            : name === 'packetEncode' ? [1, 0, 1, 2, 3, new Uint8Array(4), new Uint8Array(20)]
            : [new Uint8Array(20), new Uint32Array(6)];
          if (pos >= args.length) break;
          args[pos] = g;
          codedOrReturns(() => fn(...args));
        }
      }
    }
  });

  it('exact codes for representative garbage', () => {
    expectCoded(() => native.f32ToS16(new Float32Array(4), new Int16Array(4), 9), RangeError, RANGE, 'level');
    expectCoded(() => native.f32ToS16(new Float32Array(4), new Int16Array(4), 'avx2' as never), TypeError, TYPE, 'level');
    expectCoded(() => native.f32ToS16(new Float32Array(4), new Int16Array(3)), RangeError, RANGE);
    expectCoded(() => native.f32ToS16(new Float32Array(4), detached(Int16Array, 4)), RangeError, RANGE);
    expectCoded(() => native.f32ToS16(new Float32Array(4) as never, undefined as never), TypeError, TYPE, 'output');
    expectCoded(() => native.s16ToF32(new Int16Array(4), new Float32Array(2)), RangeError, RANGE);
    const shared = new ArrayBuffer(64);
    expectCoded(() => native.f32ToS16(new Float32Array(shared, 0, 8), new Int16Array(shared, 16, 8)), RangeError, 'ERR_OVERLAP');
    expectCoded(() => native.s16ToF32(new Int16Array(shared, 0, 8), new Float32Array(shared, 0, 8)), RangeError, 'ERR_OVERLAP');
    expectCoded(() => native.packetEncode(1, 0, 2 ** 40, 1, 1, new Uint8Array(1), new Uint8Array(17)), RangeError, RANGE, 'ssrc');
    expectCoded(() => native.packetEncode(256, 0, 1, 1, 1, new Uint8Array(1), new Uint8Array(17)), RangeError, RANGE, 'type');
    expectCoded(() => native.packetEncode(1, 0, 1, 1, 1, new Uint8Array(1), new Uint8Array(16)), RangeError, RANGE, 'out');
    expectCoded(() => native.packetEncode(1, 0, 1, 1, 1, new Uint8Array(1485), new Uint8Array(1501)), RangeError, 'ERR_PACKET_TOO_LARGE');
    const b = new Uint8Array(40);
    expectCoded(() => native.packetEncode(1, 0, 1, 1, 1, b.subarray(16, 20), b.subarray(0, 20)), RangeError, 'ERR_OVERLAP');
    expectCoded(() => native.packetParse(new Uint8Array(20), new Uint32Array(5)), TypeError, TYPE, 'fields');
    expectCoded(() => native.packetParse(new Uint8Array(20), detached(Uint32Array, 6)), TypeError, TYPE, 'fields');
    expectCoded(() => native.packetParse(new Uint8Array(20), new Int32Array(6) as never), TypeError, TYPE, 'fields');
    expect(native.packetParse(detached(Uint8Array, 20), new Uint32Array(6))).toBe('ERR_PACKET_SHORT');
    expect(native.packetErrorMessage({} as never)).toBe('unknown packet error');
    expect(native.packetErrorMessage(undefined as never)).toBe('unknown packet error');
    expect(native.packetErrorMessage('ERR_PACKET_SHORT')).toMatch(/16/);
  });

  it('NativeAesCtr', () => {
    expectCoded(() => new native.NativeAesCtr(undefined as never), TypeError, TYPE, 'key');
    expectCoded(() => new native.NativeAesCtr(new Uint8Array(15)), RangeError, 'ERR_AES_KEY_LENGTH', 'key');
    expectCoded(() => new native.NativeAesCtr(detached(Uint8Array, 16)), RangeError, 'ERR_AES_KEY_LENGTH');
    const aes = new native.NativeAesCtr(new Uint8Array(16));
    expectCoded(() => aes.crypt(new Uint8Array(16), new Uint8Array(4), undefined as never), TypeError, TYPE, 'output');
    expectCoded(() => (aes.crypt as (...a: unknown[]) => void)(), TypeError, TYPE, 'iv');
    expectCoded(() => aes.crypt(new Uint8Array(17), new Uint8Array(4), new Uint8Array(4)), RangeError, 'ERR_AES_IV_LENGTH');
    expectCoded(() => aes.crypt(detached(Uint8Array, 16), new Uint8Array(4), new Uint8Array(4)), RangeError, 'ERR_AES_IV_LENGTH');
    expectCoded(() => aes.crypt(new Uint8Array(16), new Uint8Array(4), detached(Uint8Array, 4)), RangeError, RANGE, 'output');
    const buf = new Uint8Array(64);
    expectCoded(() => aes.crypt(new Uint8Array(16), buf.subarray(0, 32), buf.subarray(1, 33)), RangeError, 'ERR_OVERLAP');
    for (const g of garbage()) for (let pos = 0; pos < 3; pos++) {
      const args: unknown[] = [new Uint8Array(16), new Uint8Array(4), new Uint8Array(4)];
      args[pos] = g;
      codedOrReturns(() => (aes.crypt as (...a: unknown[]) => void)(...args));
    }
    aes.close();
    expectCoded(() => aes.crypt(new Uint8Array(16), new Uint8Array(4), new Uint8Array(4)), TypeError, CLOSED);
    expectCoded(() => aes.close(), TypeError, CLOSED);
  });

  it('NativeOpusEncoder / NativeOpusDecoder', () => {
    expectCoded(() => new (native.NativeOpusEncoder as new (...a: unknown[]) => unknown)(), TypeError, TYPE, 'options');
    expectCoded(() => new native.NativeOpusEncoder(5 as never), TypeError, TYPE, 'options');
    expectCoded(() => new native.NativeOpusEncoder({ sampleRate: 44100, channels: 1 }), RangeError, 'ERR_OPUS_CONFIG', 'sampleRate');
    expectCoded(() => new native.NativeOpusEncoder({ sampleRate: 16000, channels: 3 }), RangeError, 'ERR_OPUS_CONFIG', 'channels');
    expectCoded(() => new native.NativeOpusEncoder({ sampleRate: 16000, channels: 1, application: 9 }), RangeError, RANGE, 'application');
    expectCoded(() => new native.NativeOpusEncoder({ sampleRate: 16000, channels: 1, maxBandwidth: -1 }), RangeError, RANGE, 'maxBandwidth');
    expectCoded(() => new native.NativeOpusEncoder({ sampleRate: 16000, channels: 1, bitrate: 1e12 }), RangeError, RANGE, 'bitrate');
    expectCoded(() => new native.NativeOpusEncoder({ sampleRate: 16000, channels: 1, bitrate: 100 }), RangeError, 'ERR_OPUS_CONFIG', 'bitrate');
    expectCoded(() => new native.NativeOpusEncoder({ sampleRate: '16000' as never, channels: 1 }), TypeError, TYPE, 'sampleRate');
    expectCoded(() => new native.NativeOpusEncoder({ sampleRate: 16000, channels: 1, dtx: 1 as never }), TypeError, TYPE, 'dtx');
    // a throwing getter on the options object: its own exception comes through, nothing crashes
    const boom = Object.assign(new Error('boom'), { code: 'ERR_TEST_GETTER' });
    const getterErr = thrown(() => new native.NativeOpusEncoder({ get sampleRate(): number { throw boom; } } as never));
    expect(getterErr).toBe(boom);
    const enc = new native.NativeOpusEncoder({ sampleRate: 16000, channels: 1 });
    expectCoded(() => enc.encode(new Int16Array(7)), RangeError, 'ERR_OPUS_FRAME');
    expectCoded(() => enc.encode(detached(Int16Array, 960)), RangeError, 'ERR_OPUS_FRAME');
    expectCoded(() => enc.encode(new Uint8Array(1920) as never), TypeError, TYPE, 'pcm');
    expectCoded(() => enc.setBitrate(-2), RangeError, RANGE, 'bitrate');
    expectCoded(() => enc.setBitrate(2 ** 31), RangeError, RANGE, 'bitrate');
    expectCoded(() => enc.setComplexity(11), RangeError, RANGE, 'complexity');
    expectCoded(() => (enc.setComplexity as (...a: unknown[]) => void)(), TypeError, TYPE, 'complexity');
    for (const g of garbage()) {
      codedOrReturns(() => enc.encode(g as never));
      codedOrReturns(() => enc.setBitrate(g as never));
      codedOrReturns(() => enc.setComplexity(g as never));
    }
    enc.close();
    expectCoded(() => enc.encode(new Int16Array(320)), TypeError, CLOSED);
    expectCoded(() => enc.close(), TypeError, CLOSED);

    expectCoded(() => new native.NativeOpusDecoder(1e308, 1), RangeError, RANGE, 'sampleRate');
    expectCoded(() => new native.NativeOpusDecoder(16000, 3), RangeError, 'ERR_OPUS_CONFIG', 'channels');
    expectCoded(() => new native.NativeOpusDecoder(16000, 2 ** 40), RangeError, RANGE, 'channels');
    expectCoded(() => new (native.NativeOpusDecoder as new (...a: unknown[]) => unknown)(16000), TypeError, TYPE, 'channels');
    const dec = new native.NativeOpusDecoder(16000, 1);
    expectCoded(() => dec.decode(null, false, 7), RangeError, 'ERR_OPUS_FRAME');
    expectCoded(() => dec.decode(null, false, 1e20), RangeError, RANGE, 'frameSize');
    expectCoded(() => dec.decode(null, false, -1), RangeError, RANGE, 'frameSize');
    expectCoded(() => dec.decode('abc' as never, false, 0), TypeError, TYPE, 'packet');
    expectCoded(() => dec.decode(new Uint8Array(0), false, 0), RangeError, 'ERR_OPUS_DECODE');
    expectCoded(() => dec.decode(detached(Uint8Array, 8), true, 0), RangeError, 'ERR_OPUS_DECODE');
    expectCoded(() => dec.decode(new Uint8Array(5000), false, 0), RangeError, 'ERR_OPUS_DECODE');
    for (const g of garbage()) for (let pos = 0; pos < 3; pos++) {
      const args: unknown[] = [new Uint8Array([0xf8, 0xff, 0xfe]), false, 0];
      args[pos] = g;
      codedOrReturns(() => (dec.decode as (...a: unknown[]) => unknown)(...args));
    }
    expect(dec.decode(new Uint8Array([0xf8, 0xff, 0xfe]), false, 0).length).toBe(320);
    dec.close();
    expectCoded(() => dec.decode(null, false, 0), TypeError, CLOSED);
    expectCoded(() => dec.lastFrameSize, TypeError, CLOSED);
    expectCoded(() => dec.close(), TypeError, CLOSED);
  });

  it('NativeResampler', () => {
    expectCoded(() => new native.NativeResampler(0, 5), RangeError, RANGE, 'inputRate');
    expectCoded(() => new native.NativeResampler(16000, NaN), RangeError, RANGE, 'outputRate');
    expectCoded(() => new native.NativeResampler('16000' as never, 48000), TypeError, TYPE, 'inputRate');
    expectCoded(() => new native.NativeResampler(44100, 7919), RangeError, 'ERR_RESAMPLER_RATE');
    const r = new native.NativeResampler(16000, 48000);
    expectCoded(() => r.process(new Float64Array(4) as never), TypeError, TYPE, 'input');
    for (const g of garbage()) codedOrReturns(() => r.process(g as never));
    expect(r.process(detached(Int16Array, 16)).length).toBe(0);
    r.close();
    expectCoded(() => r.process(new Int16Array(16)), TypeError, CLOSED);
    expectCoded(() => r.flush(), TypeError, CLOSED);
    expectCoded(() => r.delay, TypeError, CLOSED);
    expectCoded(() => r.close(), TypeError, CLOSED);
  });

  it('NativeReplayWindow / NativeDownlinkIv', () => {
    expectCoded(() => new native.NativeReplayWindow(0), RangeError, RANGE, 'maxJump');
    expectCoded(() => new native.NativeReplayWindow(2 ** 32), RangeError, RANGE, 'maxJump');
    expectCoded(() => new native.NativeReplayWindow('5' as never), TypeError, TYPE, 'maxJump');
    expectCoded(() => new (native.NativeReplayWindow as new (...a: unknown[]) => unknown)(), TypeError, TYPE, 'maxJump');
    const w = new native.NativeReplayWindow(10);
    expectCoded(() => w.check(-1), RangeError, RANGE, 'sequence');
    expectCoded(() => w.commit(2 ** 32), RangeError, RANGE, 'sequence');
    expectCoded(() => w.commit(11), RangeError, 'ERR_PACKET_SEQUENCE_JUMP');
    expectCoded(() => w.commit(0), RangeError, 'ERR_PACKET_REPLAY');
    for (const g of garbage()) {
      codedOrReturns(() => w.check(g as never));
      const before = w.last;
      codedOrReturns(() => w.commit(g as never));
      expect(w.last).toBeGreaterThanOrEqual(before);
    }
    expectCoded(() => new native.NativeDownlinkIv(new Uint8Array(3)), RangeError, 'ERR_NONCE_LENGTH');
    expectCoded(() => new native.NativeDownlinkIv(detached(Uint8Array, 16)), RangeError, 'ERR_NONCE_LENGTH');
    expectCoded(() => new (native.NativeDownlinkIv as new (...a: unknown[]) => unknown)(), TypeError, TYPE, 'nonce');
    const iv = new native.NativeDownlinkIv(new Uint8Array(16).fill(1));
    expectCoded(() => iv.next(1485, 0, new Uint8Array(16)), RangeError, RANGE, 'payloadLength');
    expectCoded(() => iv.next(1, 2 ** 32, new Uint8Array(16)), RangeError, RANGE, 'timestampMs');
    expectCoded(() => iv.next(1, 1, new Uint8Array(15)), RangeError, RANGE, 'out');
    expectCoded(() => iv.next(1, 1, detached(Uint8Array, 16)), RangeError, RANGE, 'out');
    expectCoded(() => iv.next(1, 1, new Uint16Array(8) as never), TypeError, TYPE, 'out');
    for (const g of garbage()) for (let pos = 0; pos < 3; pos++) {
      const args: unknown[] = [1, 1, new Uint8Array(16)];
      args[pos] = g;
      codedOrReturns(() => (iv.next as (...a: unknown[]) => unknown)(...args));
    }
  });

  it('functions that take no arguments ignore garbage', () => {
    const f = native as unknown as Record<string, (...a: unknown[]) => unknown>;
    for (const name of ['supportedSimdLevels', 'opensslVersion', 'opensslUnavailableReason', 'buildInfo']) {
      for (const g of garbage()) expect(codedOrReturns(() => f[name]!(g, g, g)), name).toBe('returned');
    }
    expect(native.opensslUnavailableReason()).toBe('');
  });

  it('constructors without new and methods on a foreign receiver throw a TypeError (from V8, before the addon runs)', () => {
    const f = native as unknown as Record<string, (...a: unknown[]) => unknown>;
    for (const name of ['NativeAesCtr', 'NativeOpusEncoder', 'NativeOpusDecoder', 'NativeResampler', 'NativeReplayWindow', 'NativeDownlinkIv']) {
      expect(thrown(() => f[name]!(new Uint8Array(16))), name).toBeInstanceOf(TypeError);
    }
    const crypt = native.NativeAesCtr.prototype.crypt as (...a: unknown[]) => unknown;
    expect(thrown(() => crypt.call({}, new Uint8Array(16), new Uint8Array(1), new Uint8Array(1)))).toBeInstanceOf(TypeError);
    expect(thrown(() => crypt.call(undefined, new Uint8Array(16), new Uint8Array(1), new Uint8Array(1)))).toBeInstanceOf(TypeError);
    const decode = native.NativeOpusDecoder.prototype.decode as (...a: unknown[]) => unknown;
    const aes = new native.NativeAesCtr(new Uint8Array(16));
    expect(thrown(() => decode.call(aes, null, false, 0))).toBeInstanceOf(TypeError); // another wrapped class
    aes.close();
  });

  it('the process is still healthy after all of the above', () => {
    const out = f32ToS16(new Float32Array([0.5, -1, 1]));
    expect(Array.from(out)).toEqual([16384, -32768, 32767]);
  });
});
