// A minimal device for gateway tests, written from PROTOCOL.md with node:crypto, dgram and mqtt.js,
// independent of src/sim. It exposes the raw pieces so tests can also misbehave on purpose.
import { createCipheriv } from 'node:crypto';
import dgram from 'node:dgram';
import mqtt, { type MqttClient } from 'mqtt';

export interface OtaReply {
  mqtt: { endpoint: string; client_id: string; username: string; password: string; publish_topic: string; keepalive: number };
  server_time: { timestamp: number; timezone_offset: number };
}

export async function ota(httpPort: number, mac: string, uuid: string): Promise<OtaReply> {
  const res = await fetch(`http://127.0.0.1:${httpPort}/xiaozhi/ota/`, {
    method: 'POST',
    headers: { 'Device-Id': mac, 'Client-Id': uuid, 'User-Agent': 'test-board/2.4.0', 'Content-Type': 'application/json' },
    body: JSON.stringify({ mac_address: mac, uuid, application: { name: 'xiaozhi', version: '2.4.0' }, board: { type: 'test' } }),
  });
  if (res.status !== 200) throw new Error(`OTA ${res.status}: ${await res.text()}`);
  return (await res.json()) as OtaReply;
}

export interface HelloReply {
  type: 'hello';
  transport: 'udp';
  session_id: string;
  audio_params: { format: string; sample_rate: number; channels: number; frame_duration: number };
  udp: { server: string; port: number; key: string; nonce: string };
}

/** A control message the device received, with its arrival time (performance.now()). */
export type Message = Record<string, unknown> & { at: number };

export class RawDevice {
  readonly messages: Message[] = [];
  readonly datagrams: Array<{ at: number; data: Buffer }> = [];
  mqtt!: MqttClient;
  creds!: OtaReply['mqtt'];
  udp: dgram.Socket | null = null;
  hello: HelloReply | null = null;
  seq = 0;
  private waiters: Array<{ pred: (m: Message) => boolean; resolve: (m: Message) => void }> = [];

  static async connect(httpPort: number, mac: string, uuid = '00000000-0000-4000-8000-' + mac.replace(/:/g, '')): Promise<RawDevice> {
    const d = new RawDevice();
    const reply = await ota(httpPort, mac, uuid);
    d.creds = reply.mqtt;
    const [host, port] = reply.mqtt.endpoint.split(':');
    d.mqtt = mqtt.connect({
      host, port: Number(port), protocolVersion: 4, clean: true, keepalive: reply.mqtt.keepalive,
      clientId: reply.mqtt.client_id, username: reply.mqtt.username, password: reply.mqtt.password, reconnectPeriod: 0,
    });
    d.mqtt.on('message', (_topic, payload) => {
      const m = { ...(JSON.parse(payload.toString()) as Record<string, unknown>), at: performance.now() };
      d.messages.push(m);
      d.waiters = d.waiters.filter((w) => (w.pred(m) ? (w.resolve(m), false) : true));
    });
    await new Promise((resolve, reject) => {
      d.mqtt.once('connect', resolve);
      d.mqtt.once('error', reject);
    });
    return d;
  }

  publish(message: Record<string, unknown> | string): void {
    this.mqtt.publish(this.creds.publish_topic, typeof message === 'string' ? message : JSON.stringify(message));
  }

  waitFor(pred: (m: Message) => boolean, timeoutMs = 5000): Promise<Message> {
    const found = this.messages.find(pred);
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('timed out waiting for a message')), timeoutMs);
      this.waiters.push({ pred, resolve: (m) => { clearTimeout(t); resolve(m); } });
    });
  }

  async sayHello(): Promise<HelloReply> {
    const before = this.messages.length;
    this.publish({ type: 'hello', version: 3, transport: 'udp', features: { mcp: true }, audio_params: { format: 'opus', sample_rate: 16000, channels: 1, frame_duration: 60 } });
    const reply = (await this.waitFor((m) => m.type === 'hello' && this.messages.indexOf(m as never) >= before)) as unknown as HelloReply;
    this.hello = reply;
    this.seq = 0;
    if (!this.udp) {
      this.udp = dgram.createSocket('udp4');
      this.udp.on('message', (data) => this.datagrams.push({ at: performance.now(), data }));
      await new Promise<void>((r) => this.udp!.bind(0, '127.0.0.1', () => r()));
    }
    return reply;
  }

  /** Header exactly as the firmware builds it from the nonce (PROTOCOL.md §3.1). */
  header(payloadLength: number, sequence: number, timestamp = 0): Buffer {
    const nonce = Buffer.from(this.hello!.udp.nonce, 'hex');
    const h = Buffer.alloc(16);
    h[0] = nonce[0]!;
    h[1] = nonce[1]!;
    h.writeUInt16BE(payloadLength, 2);
    nonce.copy(h, 4, 4, 8);
    h.writeUInt32BE(timestamp, 8);
    h.writeUInt32BE(sequence, 12);
    return h;
  }

  datagram(opus: Uint8Array, sequence = ++this.seq): Buffer {
    const h = this.header(opus.length, sequence);
    const key = Buffer.from(this.hello!.udp.key, 'hex');
    return Buffer.concat([h, createCipheriv('aes-128-ctr', key, h).update(opus)]);
  }

  sendUdp(data: Buffer, socket: dgram.Socket = this.udp!): void {
    socket.send(data, this.hello!.udp.port, '127.0.0.1');
  }

  /** Decrypts a received downlink datagram with the session key (IV = its header). */
  decrypt(datagram: Buffer): { header: Buffer; opus: Buffer } {
    const key = Buffer.from(this.hello!.udp.key, 'hex');
    const header = datagram.subarray(0, 16);
    return { header, opus: createCipheriv('aes-128-ctr', key, header).update(datagram.subarray(16)) };
  }

  session(): string {
    return this.hello!.session_id;
  }

  async close(): Promise<void> {
    this.udp?.close();
    this.udp = null;
    await this.mqtt.endAsync(true).catch(() => {});
  }
}
