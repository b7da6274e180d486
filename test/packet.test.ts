// The UDP packet format (PROTOCOL.md §3.1), the receiver's replay window, and the downlink IV scheme
// (§3.2), each checked against an independent implementation written here with DataView and BigInt.
import { describe, expect, it } from 'vitest';
import { packet } from '../src/index.js';
import type { PacketHeaderFields } from '../src/native/packet.js';
import { expectCoded } from './helpers/errors.js';
import { rng } from './helpers/prng.mjs';

const { encode, parse, ReplayWindow, DownlinkIv } = packet;

// ---- independent reference ---------------------------------------------------------------------

type Header = PacketHeaderFields;  // the package's type; the codec below is this test's own

/** The 16-byte big-endian header exactly as PROTOCOL.md §3.1 lays it out. */
function buildHeader(h: Header): Uint8Array {
  const out = new Uint8Array(16);
  const v = new DataView(out.buffer);
  v.setUint8(0, h.type);
  v.setUint8(1, h.flags);
  v.setUint16(2, h.payloadLength, false);
  v.setUint32(4, h.ssrc, false);
  v.setUint32(8, h.timestamp, false);
  v.setUint32(12, h.sequence, false);
  return out;
}

function buildDatagram(h: Header, payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(16 + payload.length);
  out.set(buildHeader(h));
  out.set(payload, 16);
  return out;
}

function readHeader(b: Uint8Array): Header {
  const v = new DataView(b.buffer, b.byteOffset, 16);
  return {
    type: v.getUint8(0), flags: v.getUint8(1), payloadLength: v.getUint16(2),
    ssrc: v.getUint32(4), timestamp: v.getUint32(8), sequence: v.getUint32(12),
  };
}

function same(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

function hex(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');
}

const U32 = 0xffffffff;

// ---- encode / parse ------------------------------------------------------------------------------

describe('packet.encode', () => {
  it('writes the header byte for byte like the reference builder (random headers and payloads)', () => {
    const r = rng(11);
    for (let i = 0; i < 500; i++) {
      const payload = r.bytes(r.int(0, 1484));
      const h = { type: r.int(0, 255), flags: r.int(0, 255), ssrc: r.u32(), timestamp: r.u32(), sequence: r.u32() };
      const out = encode(h, payload);
      expect(Buffer.isBuffer(out)).toBe(true);
      const expected = buildDatagram({ ...h, payloadLength: payload.length }, payload);
      if (!same(out, expected)) expect.fail(`header ${JSON.stringify(h)}: got ${hex(out.subarray(0, 16))}, expected ${hex(expected.subarray(0, 16))}`);
    }
  });

  it('defaults type to 0x01 and flags to 0', () => {
    const out = encode({ ssrc: 0x01020304, timestamp: 0x05060708, sequence: 0x090a0b0c }, new Uint8Array([0xaa, 0xbb]));
    expect(hex(out)).toBe('010000020102030405060708090a0b0caabb');
  });

  it('max values (0xffffffff, 0xff) and zeros round-trip', () => {
    for (const v of [0, 1, 0x7fffffff, 0x80000000, U32]) {
      const payload = new Uint8Array(7).fill(v & 0xff);
      const h = { type: 1, flags: v & 0xff, ssrc: v, timestamp: v, sequence: v };
      const out = encode(h, payload);
      expect(same(out, buildDatagram({ ...h, payloadLength: 7 }, payload))).toBe(true);
      const p = parse(out);
      expect({ ssrc: p.ssrc, timestamp: p.timestamp, sequence: p.sequence, flags: p.flags }).toEqual({ ssrc: v, timestamp: v, sequence: v, flags: v & 0xff });
    }
  });

  it('takes payloads from views with a byteOffset, and accepts 0 and 1484 bytes (a 1500-byte datagram)', () => {
    const big = rng(12).bytes(3000);
    const view = new Uint8Array(big.buffer, 777, 1484);
    const out = encode({ ssrc: 9, timestamp: 8, sequence: 7 }, view);
    expect(out.length).toBe(1500);
    expect(same(out.subarray(16), view)).toBe(true);
    expect(readHeader(out).payloadLength).toBe(1484);
    expect(encode({ ssrc: 9, timestamp: 8, sequence: 7 }, new Uint8Array(0)).length).toBe(16);
  });

  it('rejects payloads over 1484 bytes: RangeError ERR_PACKET_TOO_LARGE', () => {
    for (const n of [1485, 1500, 65535, 65536, 70000]) {
      expectCoded(() => encode({ ssrc: 1, timestamp: 0, sequence: 1 }, new Uint8Array(n)), RangeError, 'ERR_PACKET_TOO_LARGE', 'payload');
    }
  });

  it('rejects bad header integers: RangeError for out of range / non-integer, TypeError for non-numbers', () => {
    const ok = { type: 1, flags: 0, ssrc: 1, timestamp: 0, sequence: 1 };
    const p = new Uint8Array(3);
    const limits: Record<string, number> = { type: 255, flags: 255, ssrc: U32, timestamp: U32, sequence: U32 };
    for (const [field, max] of Object.entries(limits)) {
      for (const bad of [-1, max + 1, 1.5, NaN, Infinity, -Infinity, 2 ** 53, -0.5]) {
        expectCoded(() => encode({ ...ok, [field]: bad }, p), RangeError, 'ERR_OUT_OF_RANGE', `header.${field}`);
      }
      for (const bad of ['1', null, 1n, {}, [1], true]) {
        expectCoded(() => encode({ ...ok, [field]: bad } as never, p), TypeError, 'ERR_INVALID_ARG_TYPE', `header.${field}`);
      }
    }
    for (const field of ['ssrc', 'timestamp', 'sequence']) {
      const h: Record<string, unknown> = { ...ok };
      delete h[field];
      expectCoded(() => encode(h as never, p), TypeError, 'ERR_INVALID_ARG_TYPE', `header.${field}`);
    }
    expectCoded(() => encode({ ...ok, seq: 1 } as never, p), RangeError, 'ERR_UNKNOWN_OPTION', 'seq');
    expectCoded(() => encode(null as never, p), TypeError, 'ERR_INVALID_ARG_TYPE', 'header');
    expectCoded(() => encode(ok, [1, 2] as never), TypeError, 'ERR_INVALID_ARG_TYPE', 'payload');
    expectCoded(() => encode(ok, new Uint16Array(2) as never), TypeError, 'ERR_INVALID_ARG_TYPE', 'payload');
  });
});

describe('packet.parse', () => {
  it('reads every field like the reference reader (random headers)', () => {
    const r = rng(13);
    for (let i = 0; i < 500; i++) {
      const payload = r.bytes(r.int(0, 1484));
      const h = { type: 1, flags: r.int(0, 255), payloadLength: payload.length, ssrc: r.u32(), timestamp: r.u32(), sequence: r.u32() };
      const d = buildDatagram(h, payload);
      const p = parse(d);
      expect({ type: p.type, flags: p.flags, payloadLength: p.payloadLength, ssrc: p.ssrc, timestamp: p.timestamp, sequence: p.sequence }).toEqual(h);
      expect(same(p.payload, payload)).toBe(true);
    }
  });

  it('returns the payload as a view into the datagram (no copy), also for a datagram that is itself a view', () => {
    const backing = new Uint8Array(200).fill(0x02); // a bad type byte before the view's start
    const d = new Uint8Array(backing.buffer, 33, 16 + 40);
    d.set(buildDatagram({ type: 1, flags: 0, payloadLength: 40, ssrc: 5, timestamp: 6, sequence: 7 }, rng(14).bytes(40)));
    const p = parse(d);
    expect(p.payload.buffer).toBe(backing.buffer);
    expect(p.payload.byteOffset).toBe(33 + 16);
    expect(p.payload.length).toBe(40);
    d[16] = 0xab;
    d[16 + 39] = 0xcd;
    expect(p.payload[0]).toBe(0xab); // writes through the datagram are visible in the payload
    expect(p.payload[39]).toBe(0xcd);
    p.payload[1] = 0x5e;
    expect(d[17]).toBe(0x5e);
    expect(p.ssrc).toBe(5);
    // a Buffer from the pool too
    const b = Buffer.from(buildDatagram({ type: 1, flags: 3, payloadLength: 2, ssrc: 1, timestamp: 2, sequence: 3 }, new Uint8Array([9, 8])));
    const pb = parse(b);
    expect(pb.payload.byteOffset).toBe(b.byteOffset + 16);
    expect(pb.payload.buffer).toBe(b.buffer);
  });

  it('a header-only datagram (payload_length 0) parses to an empty payload', () => {
    const p = parse(buildHeader({ type: 1, flags: 0, payloadLength: 0, ssrc: 1, timestamp: 2, sequence: 3 }));
    expect(p.payload.length).toBe(0);
    expect(p.payloadLength).toBe(0);
  });

  it('lengths 0..15: RangeError ERR_PACKET_SHORT', () => {
    const valid = buildDatagram({ type: 1, flags: 0, payloadLength: 0, ssrc: 1, timestamp: 2, sequence: 3 }, new Uint8Array(0));
    for (let n = 0; n <= 15; n++) {
      expectCoded(() => parse(valid.subarray(0, n)), RangeError, 'ERR_PACKET_SHORT');
      expectCoded(() => parse(new Uint8Array(n).fill(1)), RangeError, 'ERR_PACKET_SHORT');
    }
  });

  it('type byte other than 0x01: RangeError ERR_PACKET_TYPE', () => {
    for (const type of [0x00, 0x02, 0x03, 0x10, 0x80, 0x81, 0xff]) {
      const d = buildDatagram({ type, flags: 0, payloadLength: 4, ssrc: 1, timestamp: 2, sequence: 3 }, new Uint8Array(4));
      expectCoded(() => parse(d), RangeError, 'ERR_PACKET_TYPE');
    }
  });

  it('payload_length greater or smaller than the datagram carries: RangeError ERR_PACKET_LENGTH', () => {
    for (const actual of [0, 1, 60, 1484]) {
      for (const claimed of [actual + 1, actual + 16, actual - 1, actual - 16, 0, 65535, 256 + actual, actual ^ 0x100]) {
        if (claimed === actual || claimed < 0 || claimed > 65535) continue;
        const d = buildDatagram({ type: 1, flags: 0, payloadLength: claimed, ssrc: 1, timestamp: 2, sequence: 3 }, new Uint8Array(actual));
        expectCoded(() => parse(d), RangeError, 'ERR_PACKET_LENGTH');
      }
    }
  });

  it('rejects non-byte inputs with TypeError ERR_INVALID_ARG_TYPE', () => {
    for (const bad of [undefined, null, 'x', 5, [1], new Uint16Array(16), new ArrayBuffer(20), new DataView(new ArrayBuffer(20))]) {
      expectCoded(() => parse(bad as never), TypeError, 'ERR_INVALID_ARG_TYPE', 'datagram');
    }
  });
});

// ---- replay window ---------------------------------------------------------------------------------

/** Reference model of the receiver rule: strictly increasing, bounded forward jump. */
class ModelWindow {
  last = 0;
  constructor(readonly maxJump: number) {}
  check(s: number): 'fresh' | 'replay' | 'too-far-ahead' {
    if (s <= this.last) return 'replay';
    if (s - this.last > this.maxJump) return 'too-far-ahead';
    return 'fresh';
  }
}

describe('packet.ReplayWindow', () => {
  it('first packet 1 is fresh, 0 is a replay, maxJump bounds the first sequence too', () => {
    const w = new ReplayWindow();
    expect(w.maxJump).toBe(1024);
    expect(w.last).toBe(0);
    expect(w.check(1)).toBe('fresh');
    expect(w.check(0)).toBe('replay');
    expect(w.check(1024)).toBe('fresh');
    expect(w.check(1025)).toBe('too-far-ahead');
    expect(w.check(U32)).toBe('too-far-ahead');
  });

  it('check() does not commit', () => {
    const w = new ReplayWindow();
    expect(w.check(5)).toBe('fresh');
    expect(w.check(5)).toBe('fresh');
    expect(w.check(3)).toBe('fresh');
    expect(w.last).toBe(0);
  });

  it('after commits: equal or lower is replay, gaps are fresh, jumps over maxJump are too far ahead', () => {
    const w = new ReplayWindow();
    w.commit(1);
    expect(w.last).toBe(1);
    expect(w.check(1)).toBe('replay');
    expect(w.check(0)).toBe('replay');
    expect(w.check(2)).toBe('fresh');
    expect(w.check(1 + 1024)).toBe('fresh');
    expect(w.check(1 + 1025)).toBe('too-far-ahead');
    w.commit(10); // a gap (lost packets) is accepted
    expect(w.last).toBe(10);
    expect(w.check(9)).toBe('replay');
    expect(w.check(10)).toBe('replay');
    expect(w.check(1034)).toBe('fresh');
    expect(w.check(1035)).toBe('too-far-ahead');
  });

  it('commit of a non-fresh sequence throws RangeError ERR_PACKET_REPLAY / ERR_PACKET_SEQUENCE_JUMP and moves nothing', () => {
    const w = new ReplayWindow();
    expectCoded(() => w.commit(0), RangeError, 'ERR_PACKET_REPLAY');
    expectCoded(() => w.commit(2000), RangeError, 'ERR_PACKET_SEQUENCE_JUMP');
    expect(w.last).toBe(0);
    w.commit(100);
    expectCoded(() => w.commit(100), RangeError, 'ERR_PACKET_REPLAY');
    expectCoded(() => w.commit(99), RangeError, 'ERR_PACKET_REPLAY');
    expectCoded(() => w.commit(100 + 1025), RangeError, 'ERR_PACKET_SEQUENCE_JUMP');
    expect(w.last).toBe(100);
    w.commit(100 + 1024);
    expect(w.last).toBe(1124);
  });

  it('custom maxJump, the top of the 32-bit space, and reset()', () => {
    const w = new ReplayWindow({ maxJump: 1 });
    expect(w.check(2)).toBe('too-far-ahead');
    w.commit(1);
    expect(w.check(3)).toBe('too-far-ahead');
    w.commit(2);
    const top = new ReplayWindow({ maxJump: U32 });
    expect(top.check(U32)).toBe('fresh');
    top.commit(U32);
    expect(top.check(U32)).toBe('replay');
    expect(top.check(0)).toBe('replay'); // no wrap-around back to fresh
    top.reset();
    expect(top.last).toBe(0);
    expect(top.check(1)).toBe('fresh');
    const near = new ReplayWindow();
    near.commit(1000);
    near.commit(2000);
    expect(near.check(U32)).toBe('too-far-ahead');
    expect(near.check(3024)).toBe('fresh');
  });

  it('agrees with the reference model over 20000 random check/commit operations', () => {
    const r = rng(15);
    for (const maxJump of [1, 3, 64, 1024]) {
      const w = new ReplayWindow({ maxJump });
      const m = new ModelWindow(maxJump);
      for (let i = 0; i < 5000; i++) {
        const roll = r.float();
        const s = roll < 0.05 ? r.u32() : Math.max(0, m.last + r.int(-5, maxJump + 5));
        const verdict = w.check(s);
        if (verdict !== m.check(s)) expect.fail(`maxJump ${maxJump}, last ${m.last}, seq ${s}: got ${verdict}, model ${m.check(s)}`);
        if (r.float() < 0.7) {
          if (verdict === 'fresh') {
            w.commit(s);
            m.last = s;
          } else {
            expectCoded(() => w.commit(s), RangeError, verdict === 'replay' ? 'ERR_PACKET_REPLAY' : 'ERR_PACKET_SEQUENCE_JUMP');
          }
        }
        if (w.last !== m.last) expect.fail(`maxJump ${maxJump}: last ${w.last}, model ${m.last}`);
      }
    }
  });

  it('rejects bad arguments', () => {
    expectCoded(() => new ReplayWindow({ maxJump: 0 }), RangeError, 'ERR_OUT_OF_RANGE', 'maxJump');
    expectCoded(() => new ReplayWindow({ maxJump: 1.5 }), RangeError, 'ERR_OUT_OF_RANGE', 'maxJump');
    expectCoded(() => new ReplayWindow({ maxJump: 2 ** 32 }), RangeError, 'ERR_OUT_OF_RANGE', 'maxJump');
    expectCoded(() => new ReplayWindow({ maxJump: '5' } as never), TypeError, 'ERR_INVALID_ARG_TYPE', 'maxJump');
    expectCoded(() => new ReplayWindow({ window: 5 } as never), RangeError, 'ERR_UNKNOWN_OPTION', 'window');
    const w = new ReplayWindow();
    for (const bad of [-1, 2 ** 32, 1.5, NaN]) expectCoded(() => w.check(bad), RangeError, 'ERR_OUT_OF_RANGE', 'sequence');
    for (const bad of ['1', null, undefined]) expectCoded(() => w.commit(bad as never), TypeError, 'ERR_INVALID_ARG_TYPE', 'sequence');
  });
});

// ---- downlink IVs ------------------------------------------------------------------------------

function conventionalNonce(ssrc: number, flags = 0): Uint8Array {
  return buildHeader({ type: 1, flags, payloadLength: 0, ssrc, timestamp: 0, sequence: 0 });
}

describe('packet.DownlinkIv', () => {
  it('type 1, flags = nonce flags ^ 1, ssrc from the nonce, sequence 1, 2, 3..., the given timestamps', () => {
    const ssrc = 0xdeadbeef;
    const iv = new DownlinkIv(conventionalNonce(ssrc));
    const lengths = [120, 1, 1484, 0, 77];
    lengths.forEach((len, i) => {
      const h = iv.next(len, 1000 + 60 * i);
      expect(h.length).toBe(16);
      const expected = buildHeader({ type: 1, flags: 1, payloadLength: len, ssrc, timestamp: 1000 + 60 * i, sequence: i + 1 });
      expect(hex(h)).toBe(hex(expected));
    });
    // the header is a valid datagram header the device accepts
    const h = iv.next(3, 2000);
    const p = parse(Buffer.concat([h, Buffer.from([1, 2, 3])]));
    expect(p).toMatchObject({ type: 1, flags: 1, ssrc, timestamp: 2000, sequence: 6, payloadLength: 3 });
  });

  it('flips the low flag bit of any nonce flags byte, and takes only type and ssrc from the nonce', () => {
    for (const flags of [0x00, 0x01, 0x5a, 0xff]) {
      const nonce = buildHeader({ type: 1, flags, payloadLength: 0x1234, ssrc: 42, timestamp: 0x11111111, sequence: 0x22222222 });
      const h = readHeader(new DownlinkIv(nonce).next(10, 500));
      expect(h).toEqual({ type: 1, flags: flags ^ 1, payloadLength: 10, ssrc: 42, timestamp: 500, sequence: 1 });
    }
  });

  it('timestamps stay strictly increasing when the caller passes equal or decreasing ones', () => {
    const iv = new DownlinkIv(conventionalNonce(7));
    const given = [1000, 1000, 999, 0, 5000, 5000, 5001, 4000, 6000];
    const expected = [1000, 1001, 1002, 1003, 5000, 5001, 5002, 5003, 6000];
    const got = given.map((t) => readHeader(iv.next(100, t)).timestamp);
    expect(got).toEqual(expected);
    const seqs = [readHeader(iv.next(1, 0)).sequence, readHeader(iv.next(1, 0)).sequence];
    expect(seqs).toEqual([10, 11]);
  });

  it('a first timestamp of 0 is used as is', () => {
    const h = readHeader(new DownlinkIv(conventionalNonce(1)).next(5, 0));
    expect([h.timestamp, h.sequence]).toEqual([0, 1]);
  });

  it('ERR_IV_EXHAUSTED when the timestamp would reach 0xffffffff, without consuming a sequence', () => {
    const a = new DownlinkIv(conventionalNonce(1));
    expectCoded(() => a.next(10, U32), RangeError, 'ERR_IV_EXHAUSTED');
    expect(readHeader(a.next(10, 5)).sequence).toBe(1); // the failed call changed nothing
    const b = new DownlinkIv(conventionalNonce(1));
    expect(readHeader(b.next(10, U32 - 1)).timestamp).toBe(U32 - 1);
    expectCoded(() => b.next(10, U32 - 1), RangeError, 'ERR_IV_EXHAUSTED'); // would be raised to 0xffffffff
    expectCoded(() => b.next(10, 0), RangeError, 'ERR_IV_EXHAUSTED');
    expectCoded(() => b.next(10, U32), RangeError, 'ERR_IV_EXHAUSTED');
    const c = new DownlinkIv(conventionalNonce(1));
    c.next(1, U32 - 3);
    c.next(1, 0);
    expect(readHeader(c.next(1, 0)).timestamp).toBe(U32 - 1);
    expectCoded(() => c.next(1, 0), RangeError, 'ERR_IV_EXHAUSTED');
  });

  it('rejects bad arguments', () => {
    for (const n of [0, 15, 17, 32]) expectCoded(() => new DownlinkIv(new Uint8Array(n)), RangeError, 'ERR_OUT_OF_RANGE', 'nonce');
    expectCoded(() => new DownlinkIv('0100' as never), TypeError, 'ERR_INVALID_ARG_TYPE', 'nonce');
    const iv = new DownlinkIv(conventionalNonce(1));
    expectCoded(() => iv.next(1485, 0), RangeError, 'ERR_OUT_OF_RANGE', 'payloadLength');
    expectCoded(() => iv.next(-1, 0), RangeError, 'ERR_OUT_OF_RANGE', 'payloadLength');
    expectCoded(() => iv.next(1, -1), RangeError, 'ERR_OUT_OF_RANGE', 'timestampMs');
    expectCoded(() => iv.next(1, 2 ** 32), RangeError, 'ERR_OUT_OF_RANGE', 'timestampMs');
    expectCoded(() => iv.next(1, 0.5), RangeError, 'ERR_OUT_OF_RANGE', 'timestampMs');
    expectCoded(() => iv.next('1' as never, 0), TypeError, 'ERR_INVALID_ARG_TYPE', 'payloadLength');
    // none of the failures consumed a sequence number
    expect(readHeader(iv.next(1, 0)).sequence).toBe(1);
  });
});

// ---- PROTOCOL §3.2: no keystream reuse -------------------------------------------------------------

const MOD128 = 1n << 128n;

function ivValue(header: Uint8Array): bigint {
  const v = new DataView(header.buffer, header.byteOffset, 16);
  return (v.getBigUint64(0) << 64n) | v.getBigUint64(8);
}

/** Every 16-byte AES-CTR counter block a packet uses: IV + i over the full 128 bits, i < ceil(len / 16). */
function counterBlocks(header: Uint8Array, payloadLength: number): bigint[] {
  const iv = ivValue(header);
  const n = Math.ceil(payloadLength / 16);
  const out: bigint[] = [];
  for (let i = 0; i < n; i++) out.push((iv + BigInt(i)) % MOD128);
  return out;
}

interface Pkt {
  header: Uint8Array;
  len: number;
}

/** Number of counter blocks used more than once, within `a` (if `b` omitted) or between `a` and `b`. */
function collisions(a: Pkt[], b?: Pkt[]): number {
  const seen = new Set<bigint>();
  let dup = 0;
  for (const p of a) for (const blk of counterBlocks(p.header, p.len)) {
    if (!b && seen.has(blk)) dup++;
    seen.add(blk);
  }
  if (b) for (const p of b) for (const blk of counterBlocks(p.header, p.len)) if (seen.has(blk)) dup++;
  return dup;
}

describe('PROTOCOL §3.2 proof: the downlink IV scheme never reuses keystream', () => {
  const r = rng(0x3_2);
  const ssrc = r.u32();
  const nonce = conventionalNonce(ssrc);
  const N = 2000;

  // Downlink: random payload lengths 1..1484; a 60 ms media clock with jitter, repeats and steps back
  // (the scheme must raise the timestamp itself).
  const scheme = new DownlinkIv(nonce);
  const down: Pkt[] = [];
  const downTs: number[] = [];
  let clock = r.int(0, 100000);
  for (let k = 0; k < N; k++) {
    const roll = r.float();
    if (roll < 0.8) clock += 60;
    else if (roll < 0.9) clock -= r.int(0, 200);
    clock = Math.max(0, clock);
    const len = r.int(1, 1484);
    const header = scheme.next(len, clock);
    down.push({ header, len });
    downTs.push(readHeader(header).timestamp);
  }

  // Uplink as stock firmware sends it: flags = nonce flags (0), ssrc from the nonce, sequence 1..N,
  // timestamp 0 or (server AEC) the timestamp of a just-played downlink packet; Opus-sized payloads.
  const up: Pkt[] = [];
  for (let k = 1; k <= N; k++) {
    const echo = r.float() < 0.5;
    const ts = echo ? downTs[Math.max(0, Math.min(N - 1, k - 1 - r.int(0, 40)))]! : 0;
    const len = r.int(60, 140);
    up.push({ header: buildHeader({ type: 1, flags: 0, payloadLength: len, ssrc, timestamp: ts, sequence: k }), len });
  }

  it('downlink headers are exactly the reference layout: type 1, flags 1, ssrc, sequence 1..N, timestamps strictly increasing', () => {
    let prevTs = -1;
    down.forEach((p, i) => {
      const h = readHeader(p.header);
      expect(h.type).toBe(1);
      expect(h.flags).toBe(1);
      expect(h.ssrc).toBe(ssrc);
      expect(h.sequence).toBe(i + 1);
      expect(h.payloadLength).toBe(p.len);
      expect(h.timestamp).toBeGreaterThan(prevTs);
      prevTs = h.timestamp;
    });
  });

  it('no counter block appears twice among downlink packets, nor in both a downlink and an uplink packet', () => {
    const downBlocks = down.reduce((n, p) => n + Math.ceil(p.len / 16), 0);
    expect(downBlocks).toBeGreaterThan(N * 30); // the proof covers ~90k blocks, not a handful
    expect(collisions(down)).toBe(0);
    expect(collisions(down, up)).toBe(0);
    // and with every uplink timestamp echoing a downlink one (the worst case for AEC-enabled devices)
    const allEcho = up.map((p, i) => {
      const h = readHeader(p.header);
      return { header: buildHeader({ ...h, timestamp: downTs[Math.max(0, i - 3)]! }), len: p.len };
    });
    expect(collisions(down, allEcho)).toBe(0);
  });

  it('the naive scheme (flags 0, timestamp 0, like the uplink) DOES reuse keystream on the same packets', () => {
    const naive = down.map((p, i) => ({
      header: buildHeader({ type: 1, flags: 0, payloadLength: p.len, ssrc, timestamp: 0, sequence: i + 1 }),
      len: p.len,
    }));
    const selfDup = collisions(naive);
    const crossDup = collisions(naive, up);
    expect(selfDup, 'naive downlink vs itself').toBeGreaterThan(0);
    expect(crossDup, 'naive downlink vs uplink').toBeGreaterThan(0);
  });

  it('each half of the mitigation is needed: flags alone or an increasing timestamp alone still collide', () => {
    // flags ^ 1 but a constant timestamp: packet N's block i meets packet N+i's block 0 (same length)
    const flagsOnly = down.map((p, i) => ({
      header: buildHeader({ type: 1, flags: 1, payloadLength: p.len, ssrc, timestamp: 0, sequence: i + 1 }),
      len: p.len,
    }));
    expect(collisions(flagsOnly)).toBeGreaterThan(0);
    // increasing timestamp but flags 0: an uplink packet echoing that timestamp, with the same length
    // and a nearby sequence, uses the same counters
    const tsOnly = down.map((p, i) => ({
      header: buildHeader({ type: 1, flags: 0, payloadLength: p.len, ssrc, timestamp: downTs[i]!, sequence: i + 1 }),
      len: p.len,
    }));
    const echoSameLength = tsOnly.slice(0, 200).map((p, i) => ({
      header: buildHeader({ type: 1, flags: 0, payloadLength: p.len, ssrc, timestamp: downTs[i]!, sequence: i + 2 }),
      len: p.len,
    }));
    expect(collisions(tsOnly, echoSameLength)).toBeGreaterThan(0);
    // the real scheme against the same adversarial uplink: nothing
    expect(collisions(down, echoSameLength)).toBe(0);
  });

  it('(device side, outside the server\'s control) stock uplink packets reuse keystream among themselves', () => {
    // PROTOCOL §3.2 first bullet: block i of uplink packet N = block 0 of packet N+i when length and
    // timestamp match. This is why the proof above covers downlink/downlink and downlink/uplink pairs:
    // those are the ones the server's IV choice decides.
    const sameLength = Array.from({ length: 100 }, (_, i) => ({
      header: buildHeader({ type: 1, flags: 0, payloadLength: 100, ssrc, timestamp: 0, sequence: i + 1 }),
      len: 100,
    }));
    expect(collisions(sameLength)).toBeGreaterThan(0);
  });
});
