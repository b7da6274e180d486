// MQTT 3.1.1 packets built and parsed byte by byte from the specification, for tests that talk to the
// broker over a raw socket: malformed input, trickled bytes, and watching exactly what comes back.
// Independent of mqtt-packet (which the broker uses).
import net from 'node:net';

export function remainingLength(n: number): Buffer {
  const out: number[] = [];
  do {
    let byte = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) byte |= 0x80;
    out.push(byte);
  } while (n > 0);
  return Buffer.from(out);
}

function utf8Field(s: string | Buffer): Buffer {
  const b = typeof s === 'string' ? Buffer.from(s, 'utf8') : s;
  const len = Buffer.alloc(2);
  len.writeUInt16BE(b.length);
  return Buffer.concat([len, b]);
}

function packet(firstByte: number, body: Buffer): Buffer {
  return Buffer.concat([Buffer.from([firstByte]), remainingLength(body.length), body]);
}

export interface ConnectFields {
  clientId: string;
  username?: string;
  password?: string;
  keepalive?: number;
  clean?: boolean;
  /** 4 = MQTT 3.1.1 ("MQTT"), 3 = MQTT 3.1 ("MQIsdp"). */
  protocolLevel?: 3 | 4 | 5;
  will?: { topic: string; payload: string };
}

export function connectPacket(f: ConnectFields): Buffer {
  const level = f.protocolLevel ?? 4;
  let flags = 0;
  if (f.clean !== false) flags |= 0x02;
  if (f.will) flags |= 0x04;
  if (f.username !== undefined) flags |= 0x80;
  if (f.password !== undefined) flags |= 0x40;
  const keepalive = Buffer.alloc(2);
  keepalive.writeUInt16BE(f.keepalive ?? 60);
  const parts = [
    utf8Field(level === 3 ? 'MQIsdp' : 'MQTT'),
    Buffer.from([level, flags]),
    keepalive,
    ...(level === 5 ? [Buffer.from([0])] : []),
    utf8Field(f.clientId),
  ];
  if (f.will) parts.push(...(level === 5 ? [Buffer.from([0])] : []), utf8Field(f.will.topic), utf8Field(f.will.payload));
  if (f.username !== undefined) parts.push(utf8Field(f.username));
  if (f.password !== undefined) parts.push(utf8Field(f.password));
  return packet(0x10, Buffer.concat(parts));
}

export function publishPacket(topic: string, payload: Buffer | string, opts: { qos?: 0 | 1 | 2; retain?: boolean; messageId?: number } = {}): Buffer {
  const qos = opts.qos ?? 0;
  const first = 0x30 | (qos << 1) | (opts.retain ? 1 : 0);
  const id = Buffer.alloc(qos > 0 ? 2 : 0);
  if (qos > 0) id.writeUInt16BE(opts.messageId ?? 1);
  return packet(first, Buffer.concat([utf8Field(topic), id, typeof payload === 'string' ? Buffer.from(payload) : payload]));
}

export function subscribePacket(messageId: number, topics: string[]): Buffer {
  const id = Buffer.alloc(2);
  id.writeUInt16BE(messageId);
  return packet(0x82, Buffer.concat([id, ...topics.flatMap((t) => [utf8Field(t), Buffer.from([0])])]));
}

export const PINGREQ = Buffer.from([0xc0, 0x00]);
export const DISCONNECT = Buffer.from([0xe0, 0x00]);

export interface RawPacket {
  type: number;
  flags: number;
  body: Buffer;
}

export function parsePublish(p: RawPacket): { topic: string; payload: Buffer; qos: number; retain: boolean } {
  const len = p.body.readUInt16BE(0);
  const topic = p.body.subarray(2, 2 + len).toString('utf8');
  const qos = (p.flags >> 1) & 3;
  const payload = p.body.subarray(2 + len + (qos > 0 ? 2 : 0));
  return { topic, payload, qos, retain: (p.flags & 1) === 1 };
}

/** A socket speaking raw bytes, collecting every byte and packet the broker sends back. */
export class RawClient {
  readonly socket: net.Socket;
  readonly received: Buffer[] = [];
  readonly packets: RawPacket[] = [];
  closed = false;
  private buffer = Buffer.alloc(0);
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
    for (;;) {
      if (this.buffer.length < 2) return;
      let len = 0;
      let mult = 1;
      let i = 1;
      for (;;) {
        if (i >= this.buffer.length) return;
        const b = this.buffer[i++]!;
        len += (b & 0x7f) * mult;
        mult *= 128;
        if (!(b & 0x80)) break;
        if (i > 4) throw new Error('malformed remaining length from broker');
      }
      if (this.buffer.length < i + len) return;
      const first = this.buffer[0]!;
      this.packets.push({ type: first >> 4, flags: first & 0x0f, body: Buffer.from(this.buffer.subarray(i, i + len)) });
      this.buffer = this.buffer.subarray(i + len);
    }
  }
}
