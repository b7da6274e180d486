// A minimal xiaozhi device for `bench e2e` (PROTOCOL.md): OTA, MQTT hello, AES-CTR UDP audio.
import { createCipheriv } from 'node:crypto';
import dgram from 'node:dgram';
import mqtt, { type MqttClient } from 'mqtt';

const abs = () => performance.timeOrigin + performance.now();

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
  readonly messages: Array<Record<string, unknown>> = [];

  static async connect(httpPort: number, mac: string): Promise<BenchDevice> {
    const d = new BenchDevice();
    d.mac = mac;
    const uuid = '00000000-0000-4000-8000-' + mac.replace(/:/g, '');
    const res = await fetch(`http://127.0.0.1:${httpPort}/xiaozhi/ota/`, {
      method: 'POST',
      headers: { 'Device-Id': mac, 'Client-Id': uuid, 'User-Agent': 'bench/2.4.0', 'Content-Type': 'application/json' },
      body: JSON.stringify({ mac_address: mac, uuid, application: { name: 'xiaozhi', version: '2.4.0' } }),
    });
    const ota = (await res.json()) as { mqtt: { endpoint: string; client_id: string; username: string; password: string; publish_topic: string } };
    d.topic = ota.mqtt.publish_topic;
    const [host, port] = ota.mqtt.endpoint.split(':');
    d.mqtt = mqtt.connect({ host, port: Number(port), protocolVersion: 4, clean: true, keepalive: 240, clientId: ota.mqtt.client_id, username: ota.mqtt.username, password: ota.mqtt.password, reconnectPeriod: 0 });
    d.udp.on('message', () => d.received.push(abs()));
    await new Promise<void>((r) => d.udp.bind(0, '127.0.0.1', () => r()));
    await new Promise((resolve, reject) => {
      d.mqtt.once('connect', resolve);
      d.mqtt.once('error', reject);
    });
    const hello = new Promise<Record<string, unknown>>((resolve) => {
      d.mqtt.on('message', (_t, payload) => {
        const m = JSON.parse(payload.toString()) as Record<string, unknown>;
        d.messages.push(m);
        if (m.type === 'hello') resolve(m);
      });
    });
    d.mqtt.publish(d.topic, JSON.stringify({ type: 'hello', version: 3, transport: 'udp', features: { mcp: true }, audio_params: { format: 'opus', sample_rate: 16000, channels: 1, frame_duration: 60 } }));
    const h = (await hello) as { session_id: string; udp: { port: number; key: string; nonce: string } };
    d.sessionId = h.session_id;
    d.key = Buffer.from(h.udp.key, 'hex');
    d.nonce = Buffer.from(h.udp.nonce, 'hex');
    d.udpPort = h.udp.port;
    d.mqtt.publish(d.topic, JSON.stringify({ session_id: d.sessionId, type: 'listen', state: 'start', mode: 'realtime' }));
    return d;
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
