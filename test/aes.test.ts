// AesCtr against node:crypto 'aes-128-ctr' (the reference: OpenSSL through Node's own binding,
// a different code path from the addon's EVP context reuse).
import { createCipheriv } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { AesCtr } from '../src/index.js';
import { expectCoded } from './helpers/errors.js';
import { rng } from './helpers/prng.mjs';

function ref(key: Uint8Array, iv: Uint8Array, data: Uint8Array): Buffer {
  const c = createCipheriv('aes-128-ctr', key, iv);
  return Buffer.concat([c.update(data), c.final()]);
}

function hex(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');
}

function expectBytesEqual(actual: Uint8Array, expected: Uint8Array, what: string): void {
  expect(actual.length, `${what}: length`).toBe(expected.length);
  if (!Buffer.from(actual.buffer, actual.byteOffset, actual.byteLength).equals(Buffer.from(expected.buffer, expected.byteOffset, expected.byteLength))) {
    let i = 0;
    while (actual[i] === expected[i]) i++;
    expect.fail(`${what}: first difference at byte ${i} (block ${i >> 4}): got ${actual[i]}, expected ${expected[i]}`);
  }
}

const LENGTHS = [...Array.from({ length: 101 }, (_, i) => i), 1500, 100_000];

describe('AesCtr equals node:crypto aes-128-ctr', () => {
  it('random keys and IVs, lengths 0..100, 1500 and 100000, separate output', () => {
    const r = rng(1);
    for (const n of LENGTHS) {
      const key = r.bytes(16);
      const iv = r.bytes(16);
      const data = r.bytes(n);
      const aes = new AesCtr(key);
      const out = new Uint8Array(n);
      expect(aes.crypt(iv, data, out)).toBe(out);
      expectBytesEqual(out, ref(key, iv, data), `n=${n}`);
      // without output: a new array, data untouched
      const copy = data.slice();
      const fresh = aes.crypt(iv, data);
      expect(fresh).not.toBe(data);
      expectBytesEqual(fresh, out, `n=${n} returned`);
      expectBytesEqual(data, copy, `n=${n} input untouched`);
      aes.close();
    }
  });

  it('in place (output === data), every length', () => {
    const r = rng(2);
    for (const n of LENGTHS) {
      const key = r.bytes(16);
      const iv = r.bytes(16);
      const data = r.bytes(n);
      const expected = ref(key, iv, data);
      const aes = new AesCtr(key);
      expect(aes.crypt(iv, data, data)).toBe(data);
      expectBytesEqual(data, expected, `in place n=${n}`);
      // decrypting is the same operation
      aes.crypt(iv, data, data);
      expectBytesEqual(data, ref(key, iv, expected), `in place round trip n=${n}`);
      aes.close();
    }
  });

  it('an output longer than data: only data.length bytes are written', () => {
    const r = rng(3);
    const key = r.bytes(16), iv = r.bytes(16), data = r.bytes(50);
    const out = new Uint8Array(80).fill(0xee);
    const aes = new AesCtr(key);
    aes.crypt(iv, data, out);
    expectBytesEqual(out.subarray(0, 50), ref(key, iv, data), 'prefix');
    expect(Array.from(out.subarray(50))).toEqual(new Array(30).fill(0xee));
    aes.close();
  });

  describe('128-bit counter wrap and carry propagation', () => {
    const ivs: Array<[string, string]> = [
      ['all ff (wraps to 0 after block 0)', 'ffffffffffffffffffffffffffffffff'],
      ['ff..fe (wraps after block 1)', 'fffffffffffffffffffffffffffffffe'],
      ['ff..f0', 'fffffffffffffffffffffffffffffff0'],
      ['low 32 bits ff (carry into byte 11)', '0100002a1234567800000007ffffffff'],
      ['low 32 bits ff..fd', '0100002a12345678000000fffffffffd'],
      ['low 64 bits ff (carry into the ssrc bytes)', '0101004000c0ffeeffffffffffffffff'],
      ['low 64 bits ff..fa', '0101004000c0ffeefffffffffffffffa'],
      ['low 96 bits ff', '01ffffffffffffffffffffffffffffff'],
      ['low 120 bits ff', '00ffffffffffffffffffffffffffffff'],
    ];
    it.each(ivs)('%s', (_name, ivHex) => {
      const r = rng(4);
      const iv = Buffer.from(ivHex, 'hex');
      for (const n of [1, 15, 16, 17, 31, 32, 33, 48, 64, 100, 1484]) {
        const key = r.bytes(16);
        const data = r.bytes(n);
        const aes = new AesCtr(key);
        expectBytesEqual(aes.crypt(iv, data), ref(key, iv, data), `${ivHex} n=${n}`);
        aes.close();
      }
    });

    it('the reference really wraps: block 1 under IV ff..ff equals block 0 under IV 00..00', () => {
      const key = rng(5).bytes(16);
      const zeros = new Uint8Array(32);
      const aes = new AesCtr(key);
      const a = aes.crypt(Buffer.alloc(16, 0xff), zeros);
      const b = aes.crypt(Buffer.alloc(16, 0), zeros);
      expectBytesEqual(a.subarray(16, 32), b.subarray(0, 16), 'wrapped keystream');
      aes.close();
    });
  });

  it('honours byteOffset views for key, iv, data and output', () => {
    const r = rng(6);
    for (const n of [0, 1, 16, 33, 1484]) {
      for (const off of [1, 3, 7, 13]) {
        const key = r.bytes(16), iv = r.bytes(16), data = r.bytes(n);
        const keyBuf = new Uint8Array(16 + 40).fill(0x11);
        keyBuf.set(key, off);
        const ivBuf = new Uint8Array(16 + 40).fill(0x22);
        ivBuf.set(iv, off + 5);
        const dataBuf = new Uint8Array(n + 40).fill(0x33);
        dataBuf.set(data, off + 2);
        const outBuf = new Uint8Array(n + 40).fill(0x44);
        const keyView = new Uint8Array(keyBuf.buffer, off, 16);
        const ivView = new Uint8Array(ivBuf.buffer, off + 5, 16);
        const dataView = new Uint8Array(dataBuf.buffer, off + 2, n);
        const outView = new Uint8Array(outBuf.buffer, off + 1, n);
        const aes = new AesCtr(keyView);
        aes.crypt(ivView, dataView, outView);
        expectBytesEqual(outView, ref(key, iv, data), `n=${n} off=${off}`);
        for (let i = 0; i < outBuf.length; i++) {
          if ((i < off + 1 || i >= off + 1 + n) && outBuf[i] !== 0x44) expect.fail(`wrote outside the output at ${i}`);
        }
        // in place through a view
        aes.crypt(ivView, dataView, dataView);
        expectBytesEqual(dataView, ref(key, iv, data), `in place view n=${n} off=${off}`);
        expect(dataBuf[off + 1]).toBe(0x33);
        expect(dataBuf[off + 2 + n]).toBe(0x33);
        aes.close();
      }
    }
  });

  it('accepts Buffers from the shared pool (odd byteOffset)', () => {
    const key = Buffer.from('000102030405060708090a0b0c0d0e0f', 'hex');
    const iv = Buffer.from('0100002a12345678000003e800000001', 'hex');
    const data = Buffer.from('the quick brown fox jumps over the lazy dog');
    expect(key.byteOffset + iv.byteOffset + data.byteOffset).toBeGreaterThan(0); // pool slices
    const aes = new AesCtr(key);
    expectBytesEqual(aes.crypt(iv, data), ref(key, iv, data), 'pool buffers');
    aes.close();
  });

  it('the IV may live inside the data being encrypted in place (it is read before it is overwritten)', () => {
    const r = rng(7);
    const key = r.bytes(16);
    const packet = r.bytes(16 + 60);
    const iv = packet.slice(0, 16);
    const expected = ref(key, iv, packet);
    const aes = new AesCtr(key);
    aes.crypt(packet.subarray(0, 16), packet, packet);
    expectBytesEqual(packet, expected, 'iv inside data');
    aes.close();
  });

  it('one instance for many packets with different IVs equals a fresh cipher per packet (no carried keystream)', () => {
    const r = rng(8);
    const key = r.bytes(16);
    const aes = new AesCtr(key);
    const baseIv = Buffer.from('01000000deadbeef0000000000000000', 'hex');
    for (let p = 0; p < 500; p++) {
      // lengths that are mostly not multiples of 16, so a leftover partial block would show
      const n = r.int(0, 200);
      // half random IVs, half packet headers that differ only in the sequence field
      let iv: Uint8Array;
      if (r.float() < 0.5) {
        iv = r.bytes(16);
      } else {
        iv = Uint8Array.from(baseIv);
        new DataView(iv.buffer).setUint32(12, p);
      }
      const data = r.bytes(n);
      const expected = ref(key, iv, data);
      const out = p % 2 === 0 ? aes.crypt(iv, data) : aes.crypt(iv, data, data);
      expectBytesEqual(out, expected, `packet ${p} (n=${n}, iv ${hex(iv)})`);
    }
    // the same IV twice gives the same keystream
    const iv = r.bytes(16);
    const a = aes.crypt(iv, new Uint8Array(37));
    aes.crypt(r.bytes(16), new Uint8Array(5));
    const b = aes.crypt(iv, new Uint8Array(37));
    expectBytesEqual(b, a, 'same IV after other calls');
    aes.close();
  });

  it('instances are independent (two keys interleaved)', () => {
    const r = rng(9);
    const k1 = r.bytes(16), k2 = r.bytes(16);
    const a1 = new AesCtr(k1), a2 = new AesCtr(k2);
    for (let p = 0; p < 50; p++) {
      const iv = r.bytes(16), data = r.bytes(r.int(1, 100));
      expectBytesEqual(a1.crypt(iv, data), ref(k1, iv, data), `k1 packet ${p}`);
      expectBytesEqual(a2.crypt(iv, data), ref(k2, iv, data), `k2 packet ${p}`);
    }
    a1.close();
    a2.close();
  });

  it('mutating the key array after construction does not change the cipher', () => {
    const r = rng(10);
    const key = r.bytes(16);
    const keyCopy = key.slice();
    const aes = new AesCtr(key);
    key.fill(0);
    const iv = r.bytes(16), data = r.bytes(40);
    expectBytesEqual(aes.crypt(iv, data), ref(keyCopy, iv, data), 'key copied at construction');
    aes.close();
  });
});

describe('AesCtr errors', () => {
  it('partial overlap of data and output: RangeError ERR_OVERLAP', () => {
    const key = new Uint8Array(16), iv = new Uint8Array(16);
    const buf = new ArrayBuffer(200);
    const data = new Uint8Array(buf, 16, 64);
    const aes = new AesCtr(key);
    expectCoded(() => aes.crypt(iv, data, new Uint8Array(buf, 17, 64)), RangeError, 'ERR_OVERLAP');
    expectCoded(() => aes.crypt(iv, data, new Uint8Array(buf, 0, 64)), RangeError, 'ERR_OVERLAP');
    expectCoded(() => aes.crypt(iv, data, new Uint8Array(buf, 79, 64)), RangeError, 'ERR_OVERLAP');
    expectCoded(() => aes.crypt(iv, data, new Uint8Array(buf, 8, 100)), RangeError, 'ERR_OVERLAP');
    // touching neighbours are fine, and so is the same start with a longer output (in place)
    const before = new Uint8Array(buf, 16, 64).slice();
    aes.crypt(iv, data, new Uint8Array(buf, 80, 64));
    expectBytesEqual(new Uint8Array(buf, 80, 64), ref(key, iv, before), 'adjacent output');
    aes.crypt(iv, data, new Uint8Array(buf, 16, 100));
    expectBytesEqual(data, ref(key, iv, before), 'same start, longer output');
    aes.close();
  });

  it('output shorter than data: RangeError ERR_OUT_OF_RANGE', () => {
    const aes = new AesCtr(new Uint8Array(16));
    expectCoded(() => aes.crypt(new Uint8Array(16), new Uint8Array(10), new Uint8Array(9)), RangeError, 'ERR_OUT_OF_RANGE', 'output');
    aes.close();
  });

  it('key and iv must be exactly 16 bytes: RangeError', () => {
    for (const n of [0, 1, 15, 17, 24, 32]) {
      expectCoded(() => new AesCtr(new Uint8Array(n)), RangeError, 'ERR_OUT_OF_RANGE', 'key', String(n));
    }
    const aes = new AesCtr(new Uint8Array(16));
    for (const n of [0, 8, 12, 15, 17, 32]) {
      expectCoded(() => aes.crypt(new Uint8Array(n), new Uint8Array(4)), RangeError, 'ERR_OUT_OF_RANGE', 'iv', String(n));
    }
    aes.close();
  });

  it('use after close and double close: TypeError ERR_CLOSED', () => {
    const aes = new AesCtr(new Uint8Array(16));
    aes.close();
    expectCoded(() => aes.crypt(new Uint8Array(16), new Uint8Array(4)), TypeError, 'ERR_CLOSED', 'closed');
    expectCoded(() => aes.crypt(new Uint8Array(16), new Uint8Array(4), new Uint8Array(4)), TypeError, 'ERR_CLOSED');
    expectCoded(() => aes.close(), TypeError, 'ERR_CLOSED', 'closed');
  });

  it('wrong types: TypeError ERR_INVALID_ARG_TYPE naming the argument', () => {
    for (const bad of [undefined, null, 'x'.repeat(16), 16, new Array(16).fill(0), new Uint16Array(8), new Uint8ClampedArray(16), new DataView(new ArrayBuffer(16)), new ArrayBuffer(16)]) {
      expectCoded(() => new AesCtr(bad as never), TypeError, 'ERR_INVALID_ARG_TYPE', 'key');
    }
    const aes = new AesCtr(new Uint8Array(16));
    for (const bad of [undefined, null, 'x', new Int8Array(16), new ArrayBuffer(16)]) {
      expectCoded(() => aes.crypt(bad as never, new Uint8Array(4)), TypeError, 'ERR_INVALID_ARG_TYPE', 'iv');
      expectCoded(() => aes.crypt(new Uint8Array(16), bad as never), TypeError, 'ERR_INVALID_ARG_TYPE', 'data');
      if (bad !== undefined) {
        expectCoded(() => aes.crypt(new Uint8Array(16), new Uint8Array(4), bad as never), TypeError, 'ERR_INVALID_ARG_TYPE', 'output');
      }
    }
    aes.close();
  });
});
