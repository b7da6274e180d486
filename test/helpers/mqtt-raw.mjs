// A raw MQTT socket for tests that talk to the broker byte by byte: malformed input, trickled bytes,
// and watching exactly what comes back, from any local address. Packets are built and split by
// mqtt-bytes.mjs (from the specification, independent of mqtt-packet, which the broker uses). Plain
// ESM: test/broker.test.ts and the hostile harness (test/hostile/harness.mjs, also run by
// scripts/fuzz-live.mjs without a TypeScript step) use it. Types: mqtt-raw.d.mts.
import net from 'node:net';
import { splitPackets } from './mqtt-bytes.mjs';

/** A TCP connection to the broker, collecting every packet (and so every byte) it sends back. */
export class RawMqtt {
  constructor(socket) {
    this.socket = socket;
    this.packets = [];
    this.closed = false;
    this.onPacket = null;
    this.buffer = Buffer.alloc(0);
    this.waiters = [];
    socket.on('data', (chunk) => {
      this.buffer = Buffer.concat([this.buffer, chunk]);
      const [packets, rest, malformed] = splitPackets(this.buffer);
      this.buffer = rest;
      for (const p of packets) {
        this.packets.push(p);
        this.onPacket?.(p);
      }
      this.wake();
      // The broker never sends this: fail loudly rather than wait for packets that cannot be split.
      if (malformed) throw new Error('malformed remaining length from broker');
    });
    socket.on('error', () => {});
    this.closedPromise = new Promise((resolve) => socket.once('close', () => {
      this.closed = true;
      this.wake();
      resolve();
    }));
  }

  /** Connects to the broker on 127.0.0.1 from `localAddress` (any 127.x.y.z). */
  static connect(port, localAddress = '127.0.0.1') {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ port, host: '127.0.0.1', localAddress });
      socket.setNoDelay(true);
      socket.once('connect', () => resolve(new RawMqtt(socket)));
      socket.once('error', reject);
    });
  }

  write(bytes) {
    return new Promise((resolve) => {
      if (this.socket.destroyed || !this.socket.writable) return resolve();
      this.socket.write(bytes, () => resolve());
    });
  }

  /** Writes bytes one at a time, `gapMs` apart, until the connection closes. */
  async trickle(bytes, gapMs) {
    for (let i = 0; i < bytes.length && !this.closed; i++) {
      await this.write(bytes.subarray(i, i + 1));
      await new Promise((r) => setTimeout(r, gapMs));
    }
  }

  /** Every byte received so far: the packets, then what does not make a whole packet yet. */
  allBytes() {
    return Buffer.concat([...this.packets.map((p) => p.raw), this.buffer]);
  }

  /** Resolves with the first packet (old or new) matching `pred`; rejects after `timeoutMs` or on close. */
  async waitFor(pred, timeoutMs = 3000, what = 'packet') {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.packets.find(pred);
      if (found) return found;
      if (this.closed) throw new Error(`connection closed while waiting for ${what}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
      await new Promise((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  /** CONNACK return code, or null when none came within `timeoutMs` (or the connection closed first). */
  async connack(timeoutMs = 3000) {
    try {
      const p = await this.waitFor((x) => x.type === 2, timeoutMs, 'CONNACK');
      return p.body[1];
    } catch {
      return null;
    }
  }

  /** Resolves true when the connection closes within `timeoutMs`, false otherwise. */
  async closedWithin(timeoutMs) {
    if (this.closed) return true;
    let timer;
    const r = await Promise.race([this.closedPromise.then(() => true), new Promise((res) => { timer = setTimeout(() => res(false), timeoutMs); })]);
    clearTimeout(timer);
    return r;
  }

  destroy() {
    this.socket.destroy();
  }

  wake() {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }
}
