// The one UDP socket for every session. It demultiplexes by the header's ssrc without decrypting
// (bytes 4..7, PROTOCOL.md §3.1); datagrams for an unknown ssrc are dropped silently (counted).
import dgram from 'node:dgram';
import type { Logger } from 'pino';

export interface UdpPeer {
  address: string;
  port: number;
}

export type DatagramHandler = (datagram: Buffer, from: UdpPeer) => void;

export interface UdpStats {
  received: number;
  droppedShort: number;
  droppedUnknownSsrc: number;
  sent: number;
  sendErrors: number;
}

export class UdpAudioServer {
  readonly stats: UdpStats = { received: 0, droppedShort: 0, droppedUnknownSsrc: 0, sent: 0, sendErrors: 0 };
  readonly #socket: dgram.Socket;
  readonly #handlers = new Map<number, DatagramHandler>();
  readonly #logger: Logger;
  #closed = false;

  constructor(logger: Logger) {
    this.#logger = logger;
    this.#socket = dgram.createSocket({ type: 'udp4', recvBufferSize: 4 << 20, sendBufferSize: 4 << 20 });
    this.#socket.on('message', (msg, rinfo) => this.#onMessage(msg, rinfo));
    this.#socket.on('error', (err) => this.#logger.error({ err }, 'udp socket error'));
  }

  async listen(port: number, host: string): Promise<number> {
    await new Promise<void>((resolve, reject) => {
      this.#socket.once('error', reject);
      this.#socket.bind(port, host, () => {
        this.#socket.off('error', reject);
        resolve();
      });
    });
    return this.#socket.address().port;
  }

  /** A fresh random ssrc no live session uses. */
  allocateSsrc(): number {
    for (;;) {
      const ssrc = (Math.random() * 0x100000000) >>> 0;
      if (ssrc !== 0 && !this.#handlers.has(ssrc)) return ssrc;
    }
  }

  register(ssrc: number, handler: DatagramHandler): void {
    this.#handlers.set(ssrc, handler);
  }

  unregister(ssrc: number, handler: DatagramHandler): void {
    if (this.#handlers.get(ssrc) === handler) this.#handlers.delete(ssrc);
  }

  get sessions(): number {
    return this.#handlers.size;
  }

  #onMessage(msg: Buffer, rinfo: dgram.RemoteInfo): void {
    this.stats.received++;
    if (msg.length < 16) {
      this.stats.droppedShort++;
      return;
    }
    const handler = this.#handlers.get(msg.readUInt32BE(4));
    if (!handler) {
      this.stats.droppedUnknownSsrc++;
      return;
    }
    handler(msg, { address: rinfo.address, port: rinfo.port });
  }

  send(datagram: Buffer, to: UdpPeer): void {
    if (this.#closed) return;
    this.#socket.send(datagram, to.port, to.address, (err) => {
      if (err) {
        this.stats.sendErrors++;
        this.#logger.debug({ err, to }, 'udp send failed');
      }
    });
    this.stats.sent++;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await new Promise<void>((resolve) => this.#socket.close(() => resolve()));
  }
}
