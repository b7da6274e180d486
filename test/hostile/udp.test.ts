// Hostile tier, UDP: every size class, every header field at its extremes, other addresses, replay,
// stale keys and spoofed floods, against a gateway in its own process while the canary keeps talking
// (see runner.ts for what every case asserts).
import type dgram from 'node:dgram';
import { expect } from 'vitest';
import { encrypt, sleep, speechFrames, type Device } from './harness.mjs';
import { hostileCatalogue, type Ctx, type Expectation, type HostileCase } from './runner.js';

const frames = await speechFrames();

/** A device with a session whose UDP address is bound (3 genuine frames proved it). */
async function boundDevice(ctx: Ctx): Promise<Device> {
  const d = await ctx.device({ hello: true });
  for (let i = 0; i < 3; i++) await d.sendUdp(d.datagram(frames[i]!));
  await sleep(120);
  return d;
}

/** A genuine datagram whose header fields are changed before encryption (the header is the IV). */
function genuine(d: Device, edit: (h: Buffer) => void, opus: Buffer = frames[5]!, sequence = ++d.seq): Buffer {
  const h = d.header(opus.length, sequence);
  edit(h);
  return Buffer.concat([h, encrypt(d.hello!.udp.key, h, opus)]);
}

/** Right header (type 1, payload_len, the session's ssrc), `length` bytes in all, garbage payload. */
function garbage(d: Device, length: number, fill = 0x5a): Buffer {
  const b = Buffer.alloc(length, fill);
  if (length >= 16) d.header(length - 16, ++d.seq).copy(b);
  else if (length > 0) d.header(0, ++d.seq).copy(b, 0, 0, length);
  return b;
}

function fromDevice(name: string, make: (d: Device, ctx: Ctx) => Buffer | Buffer[], expectation: Expectation[], o: { bound?: boolean } = {}): HostileCase {
  return {
    name,
    expect: expectation,
    async run(ctx) {
      const d = o.bound === false ? await ctx.device({ hello: true }) : await boundDevice(ctx);
      const out = make(d, ctx);
      for (const b of Array.isArray(out) ? out : [out]) await d.sendUdp(b);
      await sleep(100);
    },
  };
}

const NATIVE_DROPS = ['drop_decrypt_decode_failure', 'drop_replay', 'drop_sequence_jump', 'drop_short', 'drop_bad_type', 'drop_length_mismatch'];

const sizes: HostileCase[] = [
  ...[0, 1, 15, 16].map((n) => fromDevice(`${n}-byte datagram from a live session's address`, (d) => garbage(d, n), [{ counter: 'udp_short', exact: 1 }])),
  fromDevice('17-byte datagram (header + 1 garbage byte) with the session\'s ssrc', (d) => garbage(d, 17), [{ anyOf: [...NATIVE_DROPS, 'uplink_frames_out'] }]),
  // The key is random per session, so the decrypted garbage is random bytes: a few percent of them
  // frame as valid Opus (the protocol has no authentication tag) and are decoded from the bound
  // address like any frame. Either outcome is fine; a crash or a leftover is not.
  fromDevice('100-byte datagram, garbage payload, the session\'s ssrc', (d) => garbage(d, 100), [{ anyOf: ['drop_decrypt_decode_failure', 'uplink_frames_out'] }]),
  fromDevice('1500-byte datagram, garbage payload, the session\'s ssrc', (d) => garbage(d, 1500), [{ anyOf: ['drop_decrypt_decode_failure', 'uplink_frames_out'] }]),
  fromDevice('1501-byte datagram with the session\'s ssrc', (d) => garbage(d, 1501), [{ counter: 'udp_oversize', exact: 1 }]),
  // Evidence for the lead: this datagram used to kill the process (ERR_PACKET_TOO_LARGE thrown from the dgram handler).
  fromDevice('1600-byte datagram with a live session\'s ssrc from the device\'s own address', (d) => garbage(d, 1600), [{ counter: 'udp_oversize', exact: 1 }]),
  fromDevice('1600-byte datagram before the address is bound', (d) => garbage(d, 1600), [{ counter: 'udp_oversize', exact: 1 }], { bound: false }),
  fromDevice('9000-byte datagram with the session\'s ssrc', (d) => garbage(d, 9000), [{ counter: 'udp_oversize', exact: 1 }]),
  fromDevice('65 507-byte datagram (the IPv4 maximum) with the session\'s ssrc', (d) => garbage(d, 65_507), [{ counter: 'udp_oversize', exact: 1 }]),
  fromDevice('genuine 1500-byte datagram (a huge Opus packet) is refused by shape', (d) => genuine(d, () => {}, Buffer.concat([frames[7]!, Buffer.alloc(1484 - frames[7]!.length)])), [{ anyOf: NATIVE_DROPS }]),
];

const set8 = (at: number, v: number) => (h: Buffer) => { h[at] = v; };
const headerFields: HostileCase[] = [
  ...[0x00, 0x02, 0x80, 0xff].map((t) => fromDevice(`type 0x${t.toString(16).padStart(2, '0')}`, (d) => genuine(d, set8(0, t)), [{ counter: 'udp_malformed', exact: 1 }])),
  ...[0x01, 0x80, 0xff].map((f) => fromDevice(`flags 0x${f.toString(16).padStart(2, '0')} (encrypted under that header)`, (d) => genuine(d, set8(1, f)), [{ anyOf: ['uplink_frames_out', ...NATIVE_DROPS] }])),
  ...([['length − 17', -1], ['length − 15', 1], ['0', 'zero'], ['0xffff', 'max']] as const).map(([n, v]) => fromDevice(`payload_len ${n}`, (d) => {
    const b = genuine(d, () => {});
    b.writeUInt16BE(v === 'zero' ? 0 : v === 'max' ? 0xffff : b.length - 16 + v, 2);
    return b;
  }, [{ counter: 'udp_malformed', exact: 1 }])),
  fromDevice('ssrc 0', (d) => genuine(d, (h) => h.writeUInt32BE(0, 4)), [{ counter: 'udp_unknown_ssrc', exact: 1 }]),
  fromDevice('ssrc 0xffffffff', (d) => genuine(d, (h) => h.writeUInt32BE(0xffffffff, 4)), [{ counter: 'udp_unknown_ssrc', exact: 1 }]),
  fromDevice('unknown ssrc (the session\'s + 1)', (d) => genuine(d, (h) => h.writeUInt32BE((h.readUInt32BE(4) + 1) >>> 0, 4)), [{ counter: 'udp_unknown_ssrc', exact: 1 }]),
  fromDevice('the canary\'s ssrc from another device\'s address', (d, ctx) => genuine(d, (h) => Buffer.from(ctx.canary.device.hello!.udp.nonce, 'hex').copy(h, 4, 4, 8)), [{ counter: 'udp_address_rejected', exact: 1 }]),
  {
    name: 'another live session\'s ssrc (another device\'s) from this device\'s address',
    expect: [{ counter: 'udp_address_rejected', exact: 1 }],
    async run(ctx) {
      const victim = await boundDevice(ctx);
      const d = await boundDevice(ctx);
      await d.sendUdp(victim.datagram(frames[9]!));
      await sleep(100);
    },
  },
  fromDevice('timestamp 0xffffffff (genuine)', (d) => genuine(d, (h) => h.writeUInt32BE(0xffffffff, 8)), [{ anyOf: ['uplink_frames_out', ...NATIVE_DROPS] }]),
  fromDevice('timestamp 0x80000000 (genuine)', (d) => genuine(d, (h) => h.writeUInt32BE(0x80000000, 8)), [{ anyOf: ['uplink_frames_out', ...NATIVE_DROPS] }]),
  fromDevice('sequence 0 after frames 1-3', (d) => d.datagram(frames[4]!, 0), [{ counter: 'drop_replay', exact: 1 }]),
  fromDevice('sequence 0xffffffff (genuine): a jump beyond the window', (d) => d.datagram(frames[4]!, 0xffffffff), [{ counter: 'drop_sequence_jump', exact: 1 }]),
  fromDevice('sequence last + 1025 (just beyond the jump limit)', (d) => d.datagram(frames[4]!, d.seq + 1025), [{ counter: 'drop_sequence_jump', exact: 1 }]),
  fromDevice('sequence last + 100 000', (d) => d.datagram(frames[4]!, d.seq + 100_000), [{ counter: 'drop_sequence_jump', exact: 1 }]),
  fromDevice('sequence last + 1000 (a gap inside the window, concealed)', (d) => d.datagram(frames[4]!, d.seq + 1000), ['uplink_frames_out']),
  fromDevice('a datagram replayed 20 times', (d) => { const b = d.datagram(frames[4]!); return [b, ...Array.from({ length: 20 }, () => b)]; }, [{ counter: 'drop_replay', exact: 20 }]),
  fromDevice('reordered: sequence 6 then 5', (d) => { const a = d.datagram(frames[4]!, 5); const b = d.datagram(frames[5]!, 6); d.seq = 6; return [b, a]; }, [{ anyOf: ['drop_replay', 'uplink_frames_out'] }]),
  fromDevice('replay of the whole bound utterance (frames 1-3)', (d) => [1, 2, 3].map((s) => d.datagram(frames[s - 1]!, s)), [{ counter: 'drop_replay', exact: 3 }]),
  fromDevice('header of a genuine datagram with the payload of another', (d) => { const a = d.datagram(frames[4]!); const b = d.datagram(frames[20]!); return Buffer.concat([a.subarray(0, 16), b.subarray(16, 16 + a.length - 16)]); }, [{ anyOf: ['drop_decrypt_decode_failure', 'uplink_frames_out'] }]),
  fromDevice('genuine datagram with every payload bit flipped', (d) => { const b = d.datagram(frames[4]!); for (let i = 16; i < b.length; i++) b[i] = b[i]! ^ 0xff; return b; }, [{ counter: 'drop_decrypt_decode_failure', exact: 1 }]),
  // A wrong key or no encryption decrypts to random bytes with the session's random key: like the
  // garbage payloads above, a few percent frame as valid Opus.
  fromDevice('genuine datagram encrypted with a wrong key', (d) => { const h = d.header(frames[4]!.length, ++d.seq); return Buffer.concat([h, encrypt('00'.repeat(16), h, frames[4]!)]); }, [{ anyOf: ['drop_decrypt_decode_failure', 'uplink_frames_out'] }]),
  fromDevice('unencrypted Opus (plaintext payload)', (d) => Buffer.concat([d.header(frames[4]!.length, ++d.seq), frames[4]!]), [{ anyOf: ['drop_decrypt_decode_failure', 'uplink_frames_out'] }]),
];

async function otherSocket(ctx: Ctx, ip?: string): Promise<dgram.Socket> {
  return ctx.udp(ip);
}

const addresses: HostileCase[] = [
  {
    name: 'genuine datagram from another address (same ssrc and key)',
    expect: [{ counter: 'udp_address_rejected', exact: 1 }],
    async run(ctx) {
      const d = await boundDevice(ctx);
      await d.sendUdp(d.datagram(frames[4]!), await otherSocket(ctx));
      await sleep(100);
    },
  },
  {
    name: 'NAT rebinding (same IP, new port) with forged payloads does not move the binding',
    expect: [{ counter: 'drop_decrypt_decode_failure', min: 3 }],
    async run(ctx) {
      const d = await boundDevice(ctx);
      const s = await otherSocket(ctx, d.ip);
      const seen: Buffer[] = [];
      s.on('message', (m) => seen.push(m));
      for (let i = 0; i < 5; i++) await d.sendUdp(garbage(d, 90), s);
      await sleep(100);
      // The device still talks (and is echoed) on its bound port.
      await d.publish({ type: 'listen', session_id: d.session(), state: 'start', mode: 'manual' });
      for (let i = 0; i < 6; i++) {
        await d.sendUdp(d.datagram(frames[i]!));
        await sleep(20);
      }
      await d.publish({ type: 'listen', session_id: d.session(), state: 'stop' });
      await d.waitFor((m) => m.type === 'tts' && m.state === 'stop', 8000, 'tts stop');
      expect(seen, 'nothing sent to the unproven port').toHaveLength(0);
      expect(d.datagrams.length, 'echo reaches the bound port').toBeGreaterThan(3);
    },
  },
  {
    name: 'stale key after a new hello: old ssrc, and the new ssrc under the old key',
    expect: [{ counter: 'udp_unknown_ssrc', exact: 1 }, { counter: 'drop_decrypt_decode_failure', min: 1 }],
    async run(ctx) {
      const d = await boundDevice(ctx);
      const old = d.hello!;
      const oldSeq = d.seq;
      await d.sayHello();
      for (let i = 0; i < 3; i++) await d.sendUdp(d.datagram(frames[i]!));
      await sleep(100);
      await d.sendUdp(d.datagram(frames[4]!, oldSeq + 1, old));  // old ssrc: unregistered
      const h = d.header(frames[4]!.length, ++d.seq);  // new header, old key
      await d.sendUdp(Buffer.concat([h, encrypt(old.udp.key, h, frames[4]!)]));
      await sleep(100);
    },
  },
  {
    name: 'a datagram for a session that said goodbye',
    expect: [{ counter: 'udp_unknown_ssrc', exact: 1 }],
    async run(ctx) {
      const d = await boundDevice(ctx);
      await d.publish({ type: 'goodbye', session_id: d.session() });
      await sleep(100);
      await d.sendUdp(d.datagram(frames[4]!));
      await sleep(100);
    },
  },
  {
    // Must not starve the real device: the flood is dropped on the address check, before the rate limit.
    name: 'spoofed flood with the canary\'s ssrc from another address (1 000 datagrams, paced)',
    expect: [{ counter: 'udp_address_rejected', min: 1000 }],
    canaryTurn: true,
    async run(ctx) {
      const s = await otherSocket(ctx);
      const c = ctx.canary.device;
      const h = c.header(frames[3]!.length, 0x7fffffff);
      const forged = Buffer.concat([h, Buffer.alloc(frames[3]!.length, 0x33)]);
      for (let i = 0; i < 1000; i++) {
        await ctx.sendUdp(s, forged);
        if (i % 50 === 49) await sleep(5);
      }
      await ctx.canary.waitTurns(1);
    },
  },
  {
    name: 'spoofed flood with a talking device\'s ssrc from another address: its echo is whole',
    expect: [{ counter: 'udp_address_rejected', min: 500 }],
    async run(ctx) {
      const d = await boundDevice(ctx);
      const s = await otherSocket(ctx);
      let flooding = true;
      const flood = (async () => {
        const forged = Buffer.concat([d.header(100, 0x7fffffff), Buffer.alloc(100, 0x44)]);
        for (let i = 0; flooding && i < 5000; i++) {
          await ctx.sendUdp(s, forged);
          if (i % 25 === 24) await sleep(3);
        }
      })();
      await d.publish({ type: 'listen', session_id: d.session(), state: 'start', mode: 'manual' });
      for (let i = 0; i < 8; i++) {
        await d.sendUdp(d.datagram(frames[i]!));
        await sleep(60);
      }
      await d.publish({ type: 'listen', session_id: d.session(), state: 'stop' });
      await d.waitFor((m) => m.type === 'tts' && m.state === 'stop', 10_000, 'tts stop');
      flooding = false;
      await flood;
      expect(d.datagrams.length, 'the whole echo (8 frames said)').toBeGreaterThanOrEqual(ctx.canary.expectedFrames);
    },
  },
  {
    name: 'uplink flood from the device\'s own address beyond uplinkPacketsPerSecond',
    expect: [{ counter: 'udp_rate_limited', min: 100 }],
    async run(ctx) {
      const d = await boundDevice(ctx);
      for (let i = 0; i < 300; i++) {
        await d.sendUdp(d.datagram(frames[i % frames.length]!));
        if (i % 50 === 49) await sleep(2);
      }
      await sleep(200);
    },
  },
  {
    name: 'unknown-ssrc flood (2 000 random ssrcs, paced)',
    expect: [{ counter: 'udp_unknown_ssrc', min: 1990 }],
    async run(ctx) {
      const s = await otherSocket(ctx);
      const b = Buffer.alloc(80, 0x11);
      b[0] = 1;
      b.writeUInt16BE(64, 2);
      for (let i = 0; i < 2000; i++) {
        b.writeUInt32BE((ctx.rng.u32() | 1) >>> 0, 4);
        await ctx.sendUdp(s, Buffer.from(b));
        if (i % 50 === 49) await sleep(3);
      }
      await sleep(100);
    },
  },
  {
    name: 'UDP from an address that has no MQTT connection at all',
    expect: [{ counter: 'udp_address_rejected', exact: 1 }],
    async run(ctx) {
      const d = await boundDevice(ctx);
      const s = await otherSocket(ctx, ctx.ip());
      await ctx.sendUdp(s, d.datagram(frames[4]!));
      await sleep(100);
    },
  },
];

/** Seeded random datagrams: the expected drop follows from the bytes (short, oversize, malformed, unknown ssrc). */
function randomCases(seed: number, n: number): HostileCase[] {
  const out: HostileCase[] = [];
  const sizesClass = [0, 1, 8, 15, 16, 17, 18, 40, 100, 700, 1499, 1500, 1501, 1600, 4000, 9000, 20_000, 65_507];
  let x = seed >>> 0;
  const next = (): number => {
    x = (Math.imul(x ^ (x >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) >>> 0;
    return x;
  };
  for (let i = 0; i < n; i++) {
    const size = sizesClass[next() % sizesClass.length]!;
    const mode = next() % 3;  // 0: all random, 1: type 1 + random, 2: type 1 + right length + random ssrc
    const s = next();
    out.push({
      name: `random datagram #${i + 1}: ${size} bytes, ${['all random', 'type 1, rest random', 'type 1, right payload_len, random ssrc'][mode]} (seed ${s})`,
      expect: [],
      async run(ctx) {
        const b = Buffer.alloc(size);
        let y = s;
        for (let k = 0; k < size; k++) {
          y = (Math.imul(y ^ (y >>> 13), 0x5bd1e995) + 0x9e3779b9) >>> 0;
          b[k] = y & 0xff;
        }
        if (size > 0 && mode >= 1) b[0] = 1;
        if (size >= 4 && mode === 2) b.writeUInt16BE((size - 16) & 0xffff, 2);
        const expected = size <= 16 ? 'udp_short' : size > 1500 ? 'udp_oversize'
          : b[0] !== 1 || b.readUInt16BE(2) !== size - 16 ? 'udp_malformed' : 'udp_unknown_ssrc';
        const s2 = await ctx.udp();
        const before = (await ctx.gw.state()).counters[expected] ?? 0;
        await ctx.sendUdp(s2, b);
        const deadline = performance.now() + 2000;
        for (;;) {
          const now = (await ctx.gw.state()).counters[expected] ?? 0;
          if (now - before >= 1) break;
          if (performance.now() > deadline) throw new Error(`expected ${expected} to move for this datagram`);
          await sleep(30);
        }
      },
    });
  }
  return out;
}

hostileCatalogue({
  file: 'udp',
  secondOctet: 13,
  seed: 0x55445021,
  gateway: {},
  categories: { sizes, 'header fields': headerFields, addresses, random: randomCases(0x5eed, 24) },
});
