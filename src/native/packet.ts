// The device's UDP packet (PROTOCOL.md §3): 16-byte big-endian header + AES-CTR(Opus). The header,
// exactly as on the wire, is the AES-CTR IV.
import { native } from './addon.js';
import { expectBytes, expectInteger, expectOptions, rangeError, rejectUnknownKeys } from './errors.js';

export const HEADER_SIZE = 16;
export const PACKET_TYPE_AUDIO = 0x01;
export const MAX_DATAGRAM_SIZE = 1500;
const U32_MAX = 0xffffffff;

/** The 16-byte header's fields (PROTOCOL.md §3.1), the one header type every reader and writer uses. */
export interface PacketHeaderFields {
  /** 0x01 for audio. */
  type: number;
  flags: number;
  /** Bytes after the header. */
  payloadLength: number;
  ssrc: number;
  timestamp: number;
  sequence: number;
}

/** What encode() takes: payloadLength comes from the payload; type defaults to audio, flags to 0. */
export type PacketHeader = Omit<PacketHeaderFields, 'type' | 'flags' | 'payloadLength'> & Partial<Pick<PacketHeaderFields, 'type' | 'flags'>>;

export interface ParsedPacket extends PacketHeaderFields {
  /** A view into the datagram (no copy). */
  payload: Uint8Array;
}

/** Stable codes of packet.parse() failures. */
export const PACKET_ERRORS = ['ERR_PACKET_SHORT', 'ERR_PACKET_TYPE', 'ERR_PACKET_LENGTH'] as const;
export type PacketErrorCode = (typeof PACKET_ERRORS)[number];

/** Builds header + payload into a new Buffer; payload_length is set from the payload. */
export function encode(header: PacketHeader, payload: Uint8Array): Buffer {
  const h = expectOptions('header', header);
  rejectUnknownKeys('header', h, ['type', 'flags', 'ssrc', 'timestamp', 'sequence', 'payloadLength']);
  const type = h.type === undefined ? PACKET_TYPE_AUDIO : expectInteger('header.type', h.type, 0, 255);
  const flags = h.flags === undefined ? 0 : expectInteger('header.flags', h.flags, 0, 255);
  const ssrc = expectInteger('header.ssrc', h.ssrc, 0, U32_MAX);
  const timestamp = expectInteger('header.timestamp', h.timestamp, 0, U32_MAX);
  const sequence = expectInteger('header.sequence', h.sequence, 0, U32_MAX);
  expectBytes('payload', payload);
  if (payload.length > MAX_DATAGRAM_SIZE - HEADER_SIZE) {
    throw rangeError('ERR_PACKET_TOO_LARGE', `payload: at most ${MAX_DATAGRAM_SIZE - HEADER_SIZE} bytes fit a 1500-byte datagram, got ${payload.length}`);
  }
  const out = Buffer.allocUnsafe(HEADER_SIZE + payload.length);
  native.packetEncode(type, flags, ssrc, timestamp, sequence, payload, out);
  return out;
}

const fields = new Uint32Array(6);

/**
 * Parses a received datagram. Throws a RangeError whose code is ERR_PACKET_SHORT (< 16 bytes),
 * ERR_PACKET_TYPE (type byte not 0x01) or ERR_PACKET_LENGTH (payload_length != length - 16).
 */
export function parse(datagram: Uint8Array): ParsedPacket {
  expectBytes('datagram', datagram);
  const code = native.packetParse(datagram, fields);
  if (code) {
    throw rangeError(code, `datagram of ${datagram.length} bytes rejected: ${native.packetErrorMessage(code)}`);
  }
  const [type, flags, payloadLength, ssrc, timestamp, sequence] = fields as unknown as number[];
  return {
    type: type!, flags: flags!, payloadLength: payloadLength!, ssrc: ssrc!, timestamp: timestamp!, sequence: sequence!,
    payload: datagram.subarray(HEADER_SIZE),
  };
}

export type ReplayVerdict = 'fresh' | 'replay' | 'too-far-ahead';

/**
 * Receiver sequence rule: strictly increasing with a bounded forward jump (default 1024 frames,
 * ~61 s), so a forged packet with a huge sequence cannot lock the device out. `check` only looks;
 * `commit` records a sequence once its packet proved valid (decrypted and decoded).
 */
export class ReplayWindow {
  readonly maxJump: number;
  #impl: InstanceType<typeof native.NativeReplayWindow>;

  constructor(options: { maxJump?: number } = {}) {
    const o = expectOptions('options', options);
    rejectUnknownKeys('ReplayWindow options', o, ['maxJump']);
    this.maxJump = o.maxJump === undefined ? 1024 : expectInteger('options.maxJump', o.maxJump, 1, U32_MAX);
    this.#impl = new native.NativeReplayWindow(this.maxJump);
  }

  check(sequence: number): ReplayVerdict {
    const code = this.#impl.check(expectInteger('sequence', sequence, 0, U32_MAX));
    return code === '' ? 'fresh' : code === 'ERR_PACKET_REPLAY' ? 'replay' : 'too-far-ahead';
  }

  /** Records an accepted sequence; throws RangeError ERR_PACKET_REPLAY / ERR_PACKET_SEQUENCE_JUMP if not fresh. */
  commit(sequence: number): void {
    this.#impl.commit(expectInteger('sequence', sequence, 0, U32_MAX));
  }

  /** Last committed sequence (0 before the first). */
  get last(): number {
    return this.#impl.last;
  }

  reset(): void {
    this.#impl.reset();
  }
}

/**
 * Downlink headers/IVs (PROTOCOL.md §3.2): flags = nonce flags ^ 1 (never an uplink IV), a timestamp
 * strictly increasing per packet (counter ranges of two packets never overlap), sequence 1, 2, 3...
 */
export class DownlinkIv {
  #impl: InstanceType<typeof native.NativeDownlinkIv>;

  constructor(nonce: Uint8Array) {
    this.#impl = new native.NativeDownlinkIv(expectBytes('nonce', nonce, HEADER_SIZE));
  }

  /**
   * The header (= IV) of the next downlink packet. `timestampMs` is raised when needed to stay
   * strictly increasing. Throws RangeError ERR_IV_EXHAUSTED after 2^32 packets/ms: re-key first.
   */
  next(payloadLength: number, timestampMs: number): Buffer {
    const out = Buffer.allocUnsafe(HEADER_SIZE);
    this.#impl.next(
      expectInteger('payloadLength', payloadLength, 0, MAX_DATAGRAM_SIZE - HEADER_SIZE),
      expectInteger('timestampMs', timestampMs, 0, U32_MAX),
      out,
    );
    return out;
  }
}
