// A raw MQTT socket for tests that talk to the broker byte by byte: malformed input, trickled bytes,
// and watching exactly what comes back. Packets are built and split by mqtt-bytes.mjs (from the
// specification, independent of mqtt-packet, which the broker uses).
import net from 'node:net';
import { splitPackets } from './mqtt-bytes.mjs';

// The byte builders live in mqtt-bytes.mjs (plain JS, shared with test/hostile/harness.mjs).
export { connectPacket, DISCONNECT, parsePublish, PINGREQ, publishPacket, remainingLength, subscribePacket, type ConnectFields } from './mqtt-bytes.mjs';

export interface RawPacket {
  type: number;
  flags: number;
  body: Buffer;
}

/** A socket speaking raw bytes, collecting every byte and packet the broker sends back. */
export class RawClient {
  readonly socket: net.Socket;
  readonly received: Buffer[] = [];
  readonly packets: RawPacket[] = [];
  closed = false;
  private buffer: Buffer = Buffer.alloc(0);
  private waiters: Array<() => void> = [];
  private readonly closedPromise: Promise<void>;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.on('data', (chunk: Buffer) => {
      this.received.push(chunk);
      this.buffer = Buffer.concat([this.buffer, chunk]);
      this.drainPackets();
      this.wake();
    });
    socket.on('error', () => {});
    this.closedPromise = new Promise((resolve) => socket.once('close', () => {
      this.closed = true;
      this.wake();
      resolve();
    }));
  }

  static connect(port: number, host = '127.0.0.1'): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ port, host });
      socket.once('connect', () => resolve(new RawClient(socket)));
      socket.once('error', reject);
    });
  }

  write(bytes: Buffer): Promise<void> {
    return new Promise((resolve) => {
      if (this.socket.destroyed) return resolve();
      this.socket.write(bytes, () => resolve());
    });
  }

  /** Writes bytes one at a time, `gapMs` apart. */
  async trickle(bytes: Buffer, gapMs: number): Promise<void> {
    for (let i = 0; i < bytes.length; i++) {
      await this.write(bytes.subarray(i, i + 1));
      await new Promise((r) => setTimeout(r, gapMs));
    }
  }

  allBytes(): Buffer {
    return Buffer.concat(this.received);
  }

  /** Resolves with the first packet (old or new) matching `pred`; rejects after `timeoutMs` or on close. */
  async waitFor(pred: (p: RawPacket) => boolean, timeoutMs = 2000, what = 'packet'): Promise<RawPacket> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.packets.find(pred);
      if (found) return found;
      if (this.closed) throw new Error(`connection closed while waiting for ${what}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => { clearTimeout(t); resolve(); });
      });
    }
  }

  /** Resolves with the CONNACK return code. */
  async connack(timeoutMs = 2000): Promise<number> {
    const p = await this.waitFor((x) => x.type === 2, timeoutMs, 'CONNACK');
    return p.body[1]!;
  }

  /** Resolves true when the connection closes within `timeoutMs`, false otherwise. */
  async closedWithin(timeoutMs: number): Promise<boolean> {
    if (this.closed) return true;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<false>((resolve) => { timer = setTimeout(() => resolve(false), timeoutMs); });
    const result = await Promise.race([this.closedPromise.then(() => true as const), timeout]);
    clearTimeout(timer);
    return result;
  }

  destroy(): void {
    this.socket.destroy();
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  private drainPackets(): void {
    const [packets, rest, malformed] = splitPackets(this.buffer);
    this.buffer = rest;
    for (const { type, flags, body } of packets) this.packets.push({ type, flags, body });
    if (malformed) throw new Error('malformed remaining length from broker');
  }
}
