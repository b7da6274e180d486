// A minimal xiaozhi device for the benchmarks that drive a gateway from outside (`bench e2e`,
// `bench churn`), written from PROTOCOL.md: OTA, MQTT hello, AES-CTR UDP audio. It records send and
// arrival times only (absolute ms): the benchmarks time the gateway, not the audio.
import { createCipheriv } from 'node:crypto';
import dgram from 'node:dgram';
import { connect as tcpConnect } from 'node:net';
import { MqttClient } from 'mqtt';

const abs = () => performance.timeOrigin + performance.now();

export interface BenchDeviceOptions {
  /** Listen mode announced right after the hello; null: no listen start. Default 'realtime'. */
  listen?: 'realtime' | 'manual' | 'auto' | null;
  /** Source address of its MQTT and UDP sockets (a loopback 127.x.y.z gives each device its own IP). */
  localAddress?: string;
}

export class BenchDevice {
  mqtt!: MqttClient;
  topic = 'device-server';
  sessionId = '';
  mac = '';
  key!: Buffer;
  nonce!: Buffer;
  udpPort = 0;
  seq = 0;
  readonly udp = dgram.createSocket('udp4');
  /** Absolute send time of every uplink datagram, and arrival time of every downlink datagram. */
  readonly sent: number[] = [];
  readonly received: number[] = [];
  /** Control messages from the gateway with their arrival time (`at`, absolute ms). */
  readonly messages: Array<Record<string, unknown> & { at: number }> = [];
  #helloWaiter: ((m: Record<string, unknown>) => void) | null = null;

  static async connect(httpPort: number, mac: string, options: BenchDeviceOptions = {}): Promise<BenchDevice> {
    const d = new BenchDevice();
    d.mac = mac;
    const local = options.localAddress;
    const uuid = '00000000-0000-4000-8000-' + mac.replace(/:/g, '');
    const res = await fetch(`http://127.0.0.1:${httpPort}/xiaozhi/ota/`, {
      method: 'POST',
      headers: { 'Device-Id': mac, 'Client-Id': uuid, 'User-Agent': 'bench/2.4.0', 'Content-Type': 'application/json' },
      body: JSON.stringify({ mac_address: mac, uuid, application: { name: 'xiaozhi', version: '2.4.0' } }),
    });
    if (res.status !== 200) throw new Error(`OTA for ${mac} answered ${res.status}: ${await res.text()}`);
    const ota = (await res.json()) as { mqtt: { endpoint: string; client_id: string; username: string; password: string; publish_topic: string } };
    d.topic = ota.mqtt.publish_topic;
    const [host, port] = ota.mqtt.endpoint.split(':');
    d.mqtt = new MqttClient(() => tcpConnect({ host: host!, port: Number(port), ...(local ? { localAddress: local } : {}) }), {
      protocolVersion: 4, clean: true, keepalive: 240, clientId: ota.mqtt.client_id,
      username: ota.mqtt.username, password: ota.mqtt.password, reconnectPeriod: 0,
    });
    d.udp.on('message', () => d.received.push(abs()));
    await new Promise<void>((r) => d.udp.bind(0, local ?? '127.0.0.1', () => r()));
    await new Promise((resolve, reject) => {
      d.mqtt.once('connect', resolve);
      d.mqtt.once('error', reject);
    });
    d.mqtt.on('message', (_t, payload) => {
      const m: Record<string, unknown> & { at: number } = { ...(JSON.parse(payload.toString()) as Record<string, unknown>), at: abs() };
      d.messages.push(m);
      if (m.type === 'hello' && d.#helloWaiter) d.#helloWaiter(m);
    });
    await d.hello(options.listen === undefined ? 'realtime' : options.listen);
    return d;
  }

  /** Says hello (a new session: new key, sequences from 1) and, with `listen`, starts listening. */
  async hello(listen: BenchDeviceOptions['listen'] = null): Promise<void> {
    const reply = new Promise<Record<string, unknown>>((resolve) => { this.#helloWaiter = resolve; });
    this.publish({ type: 'hello', version: 3, transport: 'udp', features: { mcp: true }, audio_params: { format: 'opus', sample_rate: 16000, channels: 1, frame_duration: 60 } });
    const h = (await reply) as { session_id: string; udp: { port: number; key: string; nonce: string } };
    this.#helloWaiter = null;
    this.sessionId = h.session_id;
    this.key = Buffer.from(h.udp.key, 'hex');
    this.nonce = Buffer.from(h.udp.nonce, 'hex');
    this.udpPort = h.udp.port;
    this.seq = 0;
    if (listen) this.publish({ session_id: this.sessionId, type: 'listen', state: 'start', mode: listen });
  }

  publish(message: Record<string, unknown>): void {
    this.mqtt.publish(this.topic, JSON.stringify(message));
  }

  sendOpus(opus: Uint8Array): void {
    const h = Buffer.alloc(16);
    this.nonce.copy(h, 0, 0, 8);
    h.writeUInt16BE(opus.length, 2);
    h.writeUInt32BE(++this.seq, 12);
    const datagram = Buffer.concat([h, createCipheriv('aes-128-ctr', this.key, h).update(opus)]);
    this.sent.push(abs());
    this.udp.send(datagram, this.udpPort, '127.0.0.1');
  }

  async close(): Promise<void> {
    this.udp.close();
    await this.mqtt.endAsync(true).catch(() => {});
  }
}
