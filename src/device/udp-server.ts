// The one UDP socket for every session. It checks each datagram's size and header shape first
// (PROTOCOL.md §3.1: at most 1500 bytes, type 0x01, payload_len = length - 16), then demultiplexes by
// the header's ssrc without decrypting (bytes 4..7). Everything else is a counted drop: nothing a
// peer sends can reach the native core malformed, and no handler's failure can escape the socket.
import { randomInt } from 'node:crypto';
import dgram from 'node:dgram';
import type { Logger } from 'pino';

/** PROTOCOL.md §3: the device's largest datagram. */
export const MAX_DATAGRAM_BYTES = 1500;
export const HEADER_BYTES = 16;

export interface UdpPeer {
  address: string;
  port: number;
}

export type DatagramHandler = (datagram: Buffer, from: UdpPeer) => void;

export interface UdpStats {
  received: number;
  /** Shorter than a header plus one payload byte. */
  droppedShort: number;
  /** Longer than MAX_DATAGRAM_BYTES. */
  droppedOversize: number;
  /** Header type is not 0x01, or payload_len disagrees with the datagram length. */
  droppedMalformed: number;
  droppedUnknownSsrc: number;
  /** A session handler threw: the datagram is dropped, the socket and process go on. */
  handlerErrors: number;
  sent: number;
  sendErrors: number;
}

export class UdpAudioServer {
  readonly stats: UdpStats = { received: 0, droppedShort: 0, droppedOversize: 0, droppedMalformed: 0, droppedUnknownSsrc: 0, handlerErrors: 0, sent: 0, sendErrors: 0 };
  readonly #socket: dgram.Socket;
  readonly #handlers = new Map<number, DatagramHandler>();
  readonly #logger: Logger;
  #closed = false;
  #lastHandlerErrorLog = -Infinity;

  constructor(logger: Logger) {
    this.#logger = logger;
    this.#socket = dgram.createSocket({ type: 'udp4', recvBufferSize: 4 << 20, sendBufferSize: 4 << 20 });
    this.#socket.on('message', (msg, rinfo) => this.#onMessage(msg, rinfo));
    this.#socket.on('error', (err) => this.#logger.error({ err }, 'udp socket error'));
  }

  async listen(port: number, host: string): Promise<number> {
    await new Promise<void>((resolve, reject) => {
      this.#socket.once('error', (err: NodeJS.ErrnoException) => {
        reject(Object.assign(new Error(`UDP: cannot listen on ${host}:${port}: ${err.code ?? err.message}`, { cause: err }), { code: 'ERR_UDP_LISTEN' }));
      });
      // exclusive: in a cluster worker (--workers N) the socket is this process's own, not a handle
      // shared through the primary: each worker has its own UDP port and its own sessions.
      this.#socket.bind({ port, address: host, exclusive: true }, () => {
        this.#socket.off('error', reject);
        resolve();
      });
    });
    return this.#socket.address().port;
  }

  /** A fresh ssrc no live session uses, from the CSPRNG: the ssrc is half of what routes a datagram. */
  allocateSsrc(): number {
    for (;;) {
      const ssrc = randomInt(1, 0x100000000);
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
    if (msg.length <= HEADER_BYTES) {
      this.stats.droppedShort++;
      return;
    }
    if (msg.length > MAX_DATAGRAM_BYTES) {
      this.stats.droppedOversize++;
      return;
    }
    if (msg[0] !== 0x01 || msg.readUInt16BE(2) !== msg.length - HEADER_BYTES) {
      this.stats.droppedMalformed++;
      return;
    }
    const handler = this.#handlers.get(msg.readUInt32BE(4));
    if (!handler) {
      this.stats.droppedUnknownSsrc++;
      return;
    }
    try {
      handler(msg, { address: rinfo.address, port: rinfo.port });
    } catch (err) {
      this.stats.handlerErrors++;
      const now = performance.now();
      if (now - this.#lastHandlerErrorLog >= 10_000) {
        this.#lastHandlerErrorLog = now;
        this.#logger.error({ err, handlerErrors: this.stats.handlerErrors }, 'udp datagram handler failed: datagram dropped (logged at most every 10 s)');
      }
    }
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
