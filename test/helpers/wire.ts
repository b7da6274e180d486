// The device's UDP packet format (PROTOCOL.md §3.1), written from the spec with DataView and
// node:crypto only: a reference independent of the addon's packet codec and AES-CTR.
//
//   offset 0 type u8 | 1 flags u8 | 2 payload_len u16 BE | 4 ssrc u32 BE | 8 timestamp u32 BE |
//   12 sequence u32 BE | 16.. AES-128-CTR(Opus), IV = the 16 header bytes as on the wire.
import { createCipheriv, createDecipheriv } from 'node:crypto';
import type { PacketHeaderFields } from '../../src/native/packet.js';

export const HEADER_BYTES = 16;

/** The package's header type (a type only: this reference imports no code of the package). */
export type WireHeader = PacketHeaderFields;

export function writeWireHeader(h: WireHeader): Uint8Array {
  const out = new Uint8Array(HEADER_BYTES);
  const v = new DataView(out.buffer);
  v.setUint8(0, h.type);
  v.setUint8(1, h.flags);
  v.setUint16(2, h.payloadLength, false);
  v.setUint32(4, h.ssrc >>> 0, false);
  v.setUint32(8, h.timestamp >>> 0, false);
  v.setUint32(12, h.sequence >>> 0, false);
  return out;
}

export function readWireHeader(datagram: Uint8Array): WireHeader {
  if (datagram.length < HEADER_BYTES) throw new Error(`datagram of ${datagram.length} bytes has no header`);
  const v = new DataView(datagram.buffer, datagram.byteOffset, HEADER_BYTES);
  return {
    type: v.getUint8(0),
    flags: v.getUint8(1),
    payloadLength: v.getUint16(2, false),
    ssrc: v.getUint32(4, false),
    timestamp: v.getUint32(8, false),
    sequence: v.getUint32(12, false),
  };
}

/** AES-128-CTR over the full 128-bit counter (OpenSSL semantics) with the header as IV. */
export function ctr(key: Uint8Array, iv: Uint8Array, data: Uint8Array): Uint8Array {
  const c = createCipheriv('aes-128-ctr', key, iv);
  return new Uint8Array(Buffer.concat([c.update(data), c.final()]));
}

export function ctrDecrypt(key: Uint8Array, iv: Uint8Array, data: Uint8Array): Uint8Array {
  const d = createDecipheriv('aes-128-ctr', key, iv);
  return new Uint8Array(Buffer.concat([d.update(data), d.final()]));
}

/** The conventional hello nonce: 01 00 0000 <ssrc u32> 00000000 00000000. */
export function helloNonce(ssrc: number, flags = 0): Uint8Array {
  return writeWireHeader({ type: 1, flags, payloadLength: 0, ssrc, timestamp: 0, sequence: 0 });
}

/** What a stock device sends: header copied from the nonce with payload_len and sequence filled in. */
export function deviceDatagram(
  key: Uint8Array,
  nonce: Uint8Array,
  sequence: number,
  opus: Uint8Array,
  overrides: Partial<WireHeader> = {},
): Uint8Array {
  const n = readWireHeader(nonce);
  const header = writeWireHeader({
    type: n.type,
    flags: n.flags,
    payloadLength: opus.length,
    ssrc: n.ssrc,
    timestamp: 0,
    sequence,
    ...overrides,
  });
  const out = new Uint8Array(HEADER_BYTES + opus.length);
  out.set(header, 0);
  out.set(ctr(key, header, opus), HEADER_BYTES);
  return out;
}

/** What the device does with a downlink datagram: parse the header, decrypt with it as IV. */
export function openDatagram(key: Uint8Array, datagram: Uint8Array): { header: WireHeader; opus: Uint8Array } {
  const header = readWireHeader(datagram);
  const iv = datagram.subarray(0, HEADER_BYTES);
  return { header, opus: ctrDecrypt(key, iv, datagram.subarray(HEADER_BYTES)) };
}
