// A byte-level guard in front of the MQTT parser. aedes hands every byte to mqtt-packet, which
// buffers a packet until its whole remaining length has arrived (up to 256 MB) and only then looks
// at its type. The guard follows the fixed headers as bytes stream by, without buffering anything,
// and rejects a connection as soon as a header says:
//   - the first packet is not CONNECT (or its flags are not 0),
//   - a packet type is reserved (0 or 15),
//   - a remaining length is malformed (more than 4 length bytes),
//   - a packet is larger than the configured cap (a smaller cap applies to CONNECT, which is
//     processed before authentication).
// GuardedConnection is the Duplex that aedes sees instead of the socket: reads pass the guard,
// writes go straight to the socket, and destroying either side destroys both.
import { Duplex } from 'node:stream';
import type { Socket } from 'node:net';

export type FrameViolation =
  | { kind: 'first-packet-not-connect'; packetType: number }
  | { kind: 'reserved-packet-type'; packetType: number }
  | { kind: 'malformed-remaining-length' }
  | { kind: 'oversized-packet'; packetType: number; size: number; limit: number };

const CONNECT_FIRST_BYTE = 0x10;
const enum State { Header, Length, Body }

export const PACKET_TYPE_NAMES: readonly string[] = [
  'reserved(0)', 'CONNECT', 'CONNACK', 'PUBLISH', 'PUBACK', 'PUBREC', 'PUBREL', 'PUBCOMP',
  'SUBSCRIBE', 'SUBACK', 'UNSUBSCRIBE', 'UNSUBACK', 'PINGREQ', 'PINGRESP', 'DISCONNECT', 'reserved(15)',
];

export function describeViolation(v: FrameViolation): string {
  switch (v.kind) {
    case 'first-packet-not-connect': return `first packet is ${PACKET_TYPE_NAMES[v.packetType]}, not CONNECT`;
    case 'reserved-packet-type': return `reserved packet type ${v.packetType}`;
    case 'malformed-remaining-length': return 'malformed remaining length (more than 4 bytes)';
    case 'oversized-packet': return `${PACKET_TYPE_NAMES[v.packetType]} packet of ${v.size} bytes exceeds the limit of ${v.limit}`;
  }
}

/** Incremental MQTT fixed-header scanner: O(1) state, never holds packet bytes. */
export class FrameScanner {
  private state = State.Header;
  private first = true;
  private packetType = 0;
  private length = 0;
  private multiplier = 1;
  private lengthBytes = 0;
  private remaining = 0;
  /** A DISCONNECT header went by (tells a clean goodbye from a lost connection). */
  disconnectSeen = false;

  constructor(private readonly maxPacketSize: number, private readonly maxConnectSize: number) {}

  /** Scans a chunk; returns the first violation in it, or null when the chunk is acceptable. */
  feed(chunk: Uint8Array): FrameViolation | null {
    let i = 0;
    const n = chunk.length;
    while (i < n) {
      switch (this.state) {
        case State.Header: {
          const byte = chunk[i++]!;
          const type = byte >> 4;
          if (this.first && byte !== CONNECT_FIRST_BYTE) return { kind: 'first-packet-not-connect', packetType: type };
          if (type === 0 || type === 15) return { kind: 'reserved-packet-type', packetType: type };
          this.first = false;
          this.packetType = type;
          this.length = 0;
          this.multiplier = 1;
          this.lengthBytes = 0;
          this.state = State.Length;
          break;
        }
        case State.Length: {
          const byte = chunk[i++]!;
          this.length += (byte & 0x7f) * this.multiplier;
          this.multiplier *= 128;
          this.lengthBytes++;
          if (byte & 0x80) {
            if (this.lengthBytes >= 4) return { kind: 'malformed-remaining-length' };
            break;
          }
          const size = 1 + this.lengthBytes + this.length;
          const limit = this.packetType === 1 ? Math.min(this.maxConnectSize, this.maxPacketSize) : this.maxPacketSize;
          if (size > limit) return { kind: 'oversized-packet', packetType: this.packetType, size, limit };
          if (this.packetType === 14) this.disconnectSeen = true;
          this.remaining = this.length;
          this.state = this.remaining === 0 ? State.Header : State.Body;
          break;
        }
        case State.Body: {
          const take = Math.min(this.remaining, n - i);
          i += take;
          this.remaining -= take;
          if (this.remaining === 0) this.state = State.Header;
          break;
        }
      }
    }
    return null;
  }
}

/**
 * The stream aedes reads from and writes to. Bytes from the socket are scanned before they are
 * pushed; on a violation nothing of the offending chunk is pushed and the socket is destroyed.
 */
export class GuardedConnection extends Duplex {
  private readonly scanner: FrameScanner;
  private violated = false;

  constructor(
    readonly socket: Socket,
    limits: { maxPacketSize: number; maxConnectSize: number },
    private readonly onViolation: (violation: FrameViolation) => void,
  ) {
    super({ allowHalfOpen: false, decodeStrings: true });
    this.scanner = new FrameScanner(limits.maxPacketSize, limits.maxConnectSize);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('end', () => this.push(null));
    socket.on('error', (err) => this.destroy(err));
    socket.on('close', () => { if (!this.destroyed) this.destroy(); });
    socket.on('drain', () => this.emit('socket-drain'));
  }

  get remoteAddress(): string | undefined { return this.socket.remoteAddress; }
  /** The client sent DISCONNECT (at least its header). */
  get sawDisconnect(): boolean { return this.scanner.disconnectSeen; }
  get remotePort(): number | undefined { return this.socket.remotePort; }

  private onData(chunk: Buffer): void {
    if (this.violated) return;
    const violation = this.scanner.feed(chunk);
    if (violation) {
      this.violated = true;
      this.socket.pause();
      try {
        this.onViolation(violation);
      } finally {
        this.destroy();
      }
      return;
    }
    if (!this.push(chunk)) this.socket.pause();
  }

  override _read(): void {
    if (!this.violated && !this.socket.destroyed) this.socket.resume();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    if (this.socket.destroyed) return callback(new Error('socket closed'));
    if (this.socket.write(chunk)) callback();
    else this.once('socket-drain', () => callback());
  }

  override _writev(chunks: Array<{ chunk: Buffer }>, callback: (error?: Error | null) => void): void {
    if (this.socket.destroyed) return callback(new Error('socket closed'));
    this.socket.cork();
    let flushed = true;
    for (const { chunk } of chunks) flushed = this.socket.write(chunk);
    this.socket.uncork();
    if (flushed) callback();
    else this.once('socket-drain', () => callback());
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.socket.end();
    callback();
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.socket.destroy();
    // Wake writers waiting for a drain that will never come.
    this.emit('socket-drain');
    callback(error);
  }
}
