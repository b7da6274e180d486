// The device's audio transport (the firmware's Udp and MqttProtocol::SendAudio): a UDP socket
// connected to the hello reply's udp.server:udp.port, so datagrams are accepted from exactly there,
// and the uplink packet: the 16-byte header copied from the nonce with payload_len, timestamp and
// an increasing sequence written in, then AES-128-CTR with the header as IV (PROTOCOL.md §3).
import { createSocket, type Socket } from 'node:dgram';
import { isIPv6 } from 'node:net';
import type { AesCtr } from '../native/index.js';
import { HEADER_SIZE } from './receiver.js';

export class UdpChannel {
  readonly #socket: Socket;

  private constructor(socket: Socket) {
    this.#socket = socket;
  }

  /**
   * Udp::Connect. Resolves with the channel, or with the reason it could not connect.
   * `onDatagram` receives every datagram from the server, with the channel it came on.
   */
  static connect(server: string, port: number, localAddress: string | undefined, onDatagram: (msg: Buffer, channel: UdpChannel) => void): Promise<UdpChannel | string> {
    return new Promise((resolve) => {
      const sock = createSocket({ type: isIPv6(server) ? 'udp6' : 'udp4' });
      const channel = new UdpChannel(sock);
      let done = false;
      const finish = (why?: string): void => {
        if (done) return;
        done = true;
        if (why === undefined) {
          resolve(channel);
          return;
        }
        channel.close();
        resolve(`connect ${server}:${port}: ${why}`);
      };
      sock.on('error', (err) => {
        finish(err.message);
        // A connected socket reports ICMP unreachable as errors on later sends; the device ignores them.
      });
      sock.on('message', (msg) => onDatagram(msg, channel));
      if (localAddress) sock.bind({ address: localAddress, port: 0 }, () => sock.connect(port, server, () => finish()));
      else sock.connect(port, server, () => finish());
    });
  }

  /** Udp::Send: errors on a connected socket (ICMP unreachable) are ignored, like its result. */
  send(datagram: Buffer): void {
    this.#socket.send(datagram, () => undefined);
  }

  close(): void {
    try {
      this.#socket.close();
    } catch {
      /* already closed */
    }
  }
}

/** The uplink packets of one session (one hello reply's nonce and key). */
export class UplinkPacketizer {
  readonly #nonce: Buffer;
  readonly #cipher: AesCtr;
  #sequence = 0;

  constructor(nonce: Buffer, cipher: AesCtr) {
    this.#nonce = nonce;
    this.#cipher = cipher;
  }

  /** The next datagram carrying `opus`, stamped with `timestamp` (the AEC reference; else 0). */
  packet(opus: Buffer, timestamp: number): Buffer {
    const out = Buffer.allocUnsafe(HEADER_SIZE + opus.length);
    this.#nonce.copy(out, 0, 0, HEADER_SIZE);
    out.writeUInt16BE(opus.length, 2);
    out.writeUInt32BE(timestamp >>> 0, 8);
    this.#sequence = (this.#sequence + 1) >>> 0;
    out.writeUInt32BE(this.#sequence, 12);
    this.#cipher.crypt(out.subarray(0, HEADER_SIZE), opus, out.subarray(HEADER_SIZE));
    return out;
  }
}
