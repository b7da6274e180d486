// The device's downlink datagram rules (MqttProtocol's UDP OnMessage, PROTOCOL.md §3.1), and a
// network-level sequence tracker that tells loss from reordering. Pure logic: no sockets, no clock.
import type { FirmwareRules } from './firmware.js';
import type { PacketHeaderFields } from '../native/packet.js';

export const HEADER_SIZE = 16;

/** Why the device would not play a downlink datagram. */
export const DROP_REASONS = [
  'short',
  'bad-type',
  'length-mismatch',
  'old-sequence',
  'decrypt',
  'decode',
  'queue-overflow',
  'before-tts-start',
  'after-tts-stop',
  'after-abort',
] as const;
export type DropReason = (typeof DROP_REASONS)[number];

export const DROP_REASON_LABELS: Readonly<Record<DropReason, string>> = {
  short: 'shorter than the 16-byte header',
  'bad-type': 'type byte not 0x01',
  'length-mismatch': 'payload_len != datagram length - 16',
  'old-sequence': 'sequence not newer than the last accepted',
  decrypt: 'undecryptable (no key)',
  decode: 'Opus decode failure',
  'queue-overflow': 'decode queue full (40 packets)',
  'before-tts-start': 'audio before tts start',
  'after-tts-stop': 'audio after tts stop',
  'after-abort': 'audio after the device aborted (barge-in)',
};

export interface PacketCipher {
  /** AES-128-CTR with `iv` as the initial counter block (the addon's AesCtr or node:crypto). */
  crypt(iv: Uint8Array, data: Uint8Array, output?: Uint8Array): Uint8Array;
}

/** The header as the firmware reads it: the package's one header type. */
export type DownlinkHeader = PacketHeaderFields;

export function readHeader(d: Uint8Array): DownlinkHeader {
  return {
    type: d[0]!,
    flags: d[1]!,
    payloadLength: (d[2]! << 8) | d[3]!,
    ssrc: ((d[4]! << 24) | (d[5]! << 16) | (d[6]! << 8) | d[7]!) >>> 0,
    timestamp: ((d[8]! << 24) | (d[9]! << 16) | (d[10]! << 8) | d[11]!) >>> 0,
    sequence: ((d[12]! << 24) | (d[13]! << 16) | (d[14]! << 8) | d[15]!) >>> 0,
  };
}

export function writeHeader(out: Uint8Array, h: DownlinkHeader): void {
  out[0] = h.type;
  out[1] = h.flags;
  out[2] = (h.payloadLength >>> 8) & 0xff;
  out[3] = h.payloadLength & 0xff;
  out[4] = h.ssrc >>> 24;
  out[5] = (h.ssrc >>> 16) & 0xff;
  out[6] = (h.ssrc >>> 8) & 0xff;
  out[7] = h.ssrc & 0xff;
  out[8] = h.timestamp >>> 24;
  out[9] = (h.timestamp >>> 16) & 0xff;
  out[10] = (h.timestamp >>> 8) & 0xff;
  out[11] = h.timestamp & 0xff;
  out[12] = h.sequence >>> 24;
  out[13] = (h.sequence >>> 16) & 0xff;
  out[14] = (h.sequence >>> 8) & 0xff;
  out[15] = h.sequence & 0xff;
}

export type ReceiveVerdict =
  | {
      ok: true;
      header: DownlinkHeader;
      /** Decrypted Opus packet (a new buffer). */
      opus: Uint8Array;
      /** Sequences skipped since the last accepted packet (the firmware only logs them). */
      gap: number;
    }
  | { ok: false; reason: DropReason; header?: DownlinkHeader };

/**
 * One audio channel's receive rules. Each accepted hello makes a new one (new key, sequence 0).
 *
 * v2.4: datagram ≥ 16 bytes, type 0x01, payload_len == length − 16, sequence > last accepted,
 * decrypt payload_len bytes with the header as IV, then remember the sequence.
 * legacy: no length check, sequence ≥ last, decrypts everything after the header.
 */
export class DownlinkReceiver {
  readonly rules: FirmwareRules;
  #cipher: PacketCipher | null;
  #remoteSequence = 0;

  constructor(rules: FirmwareRules, cipher: PacketCipher | null) {
    this.rules = rules;
    this.#cipher = cipher;
  }

  /** Last accepted sequence (0 before the first, like remote_sequence_). */
  get remoteSequence(): number {
    return this.#remoteSequence;
  }

  receive(datagram: Uint8Array): ReceiveVerdict {
    if (datagram.length < HEADER_SIZE) return { ok: false, reason: 'short' };
    const header = readHeader(datagram);
    if (header.type !== 0x01) return { ok: false, reason: 'bad-type', header };
    if (this.rules.strictLength && datagram.length !== HEADER_SIZE + header.payloadLength) {
      return { ok: false, reason: 'length-mismatch', header };
    }
    const last = this.#remoteSequence;
    const old = this.rules.sequenceRule === 'greater' ? header.sequence <= last : header.sequence < last;
    if (old) return { ok: false, reason: 'old-sequence', header };
    if (!this.#cipher) return { ok: false, reason: 'decrypt', header };
    const size = this.rules.strictLength ? header.payloadLength : datagram.length - HEADER_SIZE;
    const opus = this.#cipher.crypt(datagram.subarray(0, HEADER_SIZE), datagram.subarray(HEADER_SIZE, HEADER_SIZE + size));
    const gap = header.sequence > last + 1 ? header.sequence - last - 1 : 0;
    this.#remoteSequence = header.sequence;
    return { ok: true, header, opus, gap };
  }
}

/**
 * Network view of a downlink sequence stream (independent of what the firmware accepts): packets
 * that never arrived (holes below the highest sequence seen), packets that arrived after a higher
 * one (reordered, filling a hole), and duplicates. A 4096-sequence window bounds memory; a packet
 * older than the window counts as reordered.
 */
export class SequenceTracker {
  static readonly WINDOW = 4096;
  #seen = new Uint8Array(SequenceTracker.WINDOW);
  #highest = -1;
  #first = -1;
  received = 0;
  lost = 0;
  reordered = 0;
  duplicates = 0;

  /** Feeds one arriving sequence; returns 'new' | 'reordered' | 'duplicate'. */
  observe(sequence: number): 'new' | 'reordered' | 'duplicate' {
    const W = SequenceTracker.WINDOW;
    const slot = sequence % W;
    if (this.#highest < 0) {
      this.#first = this.#highest = sequence;
      this.#seen[slot] = 1;
      this.received++;
      return 'new';
    }
    if (sequence > this.#highest) {
      const jump = sequence - this.#highest;
      // Clear the slots the window slides over; they become holes until filled.
      const clear = Math.min(jump, W);
      for (let i = 1; i <= clear; i++) this.#seen[(this.#highest + i) % W] = 0;
      this.lost += jump - 1;
      this.#highest = sequence;
      this.#seen[slot] = 1;
      this.received++;
      return 'new';
    }
    if (sequence === this.#highest || (this.#highest - sequence < W && this.#seen[slot] === 1)) {
      this.duplicates++;
      return 'duplicate';
    }
    this.received++;
    this.reordered++;
    if (this.#highest - sequence < W && sequence >= this.#first) {
      this.#seen[slot] = 1;
      this.lost--;
    }
    return 'reordered';
  }

  get highest(): number {
    return this.#highest;
  }
}
