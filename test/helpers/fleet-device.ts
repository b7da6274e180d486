// A device for the deployment test: its own loopback source address (127.x.y.z, as each real device
// has its own IP: per-IP limits and the UDP address binding see it through HAProxy's PROXY header),
// OTA and MQTT through the load balancer, UDP straight to the instance that answered the hello, and
// the firmware's reconnect behaviour (78/xiaozhi-esp32 main/protocols/mqtt_protocol.cc):
//  - MQTT lost: the audio channel is gone; a reconnect timer fires after MQTT_RECONNECT_INTERVAL_MS
//    (60 s at 48142026) if the device is idle then (MqttProtocol's reconnect_timer_); the application
//    registers no OnDisconnected, so a conversation in progress ends at the device's next send,
//    which fails (SERVER_ERROR → idle). These devices send at the end of every turn; the test ends
//    the conversation at the loss itself, at most one turn earlier than the firmware would;
//  - the next conversation opens the audio channel, which connects MQTT first when it is down
//    (OpenAudioChannel -> StartMqttClient) with the stored credentials: no new OTA.
import { createCipheriv } from 'node:crypto';
import dgram from 'node:dgram';
import http from 'node:http';
import net from 'node:net';
import { MqttClient } from 'mqtt';

const FIRMWARE_RECONNECT_MS = 60_000;
const HELLO_TIMEOUT_MS = 10_000;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface Turn {
  start: number;
  end: number;
  ok: boolean;
  /** Downlink datagrams of the turn, and whether their sequence numbers had a gap. */
  frames: number;
  gap: boolean;
  udpPort: number;
  error?: string;
}

type Creds = { endpoint: string; client_id: string; username: string; password: string; publish_topic: string; keepalive: number };
type Msg = Record<string, unknown>;

export class FleetDevice {
  readonly turns: Turn[] = [];
  readonly messages: Msg[] = [];
  /** performance.now() of each MQTT connection loss, and of each (re)connection. */
  readonly losses: number[] = [];
  readonly connects: number[] = [];
  creds: Creds | undefined;
  lastConnectError: string | undefined;
  mqtt: MqttClient | undefined;
  connected = false;
  hello: { session_id: string; udp: { server: string; port: number; key: string; nonce: string } } | undefined;
  #udp: dgram.Socket | undefined;
  #down: Buffer[] = [];
  #seq = 0;
  #waiters: Array<{ pred: (m: Msg) => boolean; resolve: (m: Msg) => void; reject: (err: Error) => void }> = [];
  #running = false;
  #inTurn = false;
  #loop: Promise<void> | undefined;
  #reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  #connecting: Promise<boolean> | undefined;

  constructor(readonly mac: string, readonly localAddress: string, readonly otaPort: number, readonly frames: Buffer[]) {}

  get uuid(): string {
    return '00000000-0000-4000-8000-' + this.mac.replace(/:/g, '');
  }

  /** Ota::CheckVersion: tried again on failure (the firmware's retry, shortened to 1 s, 2 s). */
  async ota(): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      try {
        await this.#otaOnce();
        return;
      } catch (err) {
        if (attempt >= 2) throw err;
        await sleep(1000 * 2 ** attempt);
      }
    }
  }

  async #otaOnce(): Promise<void> {
    const body = JSON.stringify({ mac_address: this.mac, uuid: this.uuid, application: { name: 'xiaozhi', version: '2.4.0' }, board: { type: 'deployment-test' } });
    const reply = await new Promise<{ status: number; text: string }>((resolve, reject) => {
      const req = http.request({
        host: '127.0.0.1', port: this.otaPort, path: '/xiaozhi/ota/', method: 'POST', localAddress: this.localAddress,
        headers: { 'Device-Id': this.mac, 'Client-Id': this.uuid, 'User-Agent': 'deployment-board/2.4.0', 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body) },
      }, (res) => {
        let text = '';
        res.on('data', (c: Buffer) => { text += c.toString(); });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
      });
      req.on('error', reject);
      req.setTimeout(10_000, () => req.destroy(new Error('OTA timeout')));
      req.end(body);
    });
    if (reply.status !== 200) throw new Error(`OTA ${reply.status}: ${reply.text.slice(0, 200)}`);
    this.creds = (JSON.parse(reply.text) as { mqtt: Creds }).mqtt;
  }

  /** StartMqttClient: one attempt with the stored credentials. */
  connect(): Promise<boolean> {
    this.#connecting ??= this.#connect().finally(() => { this.#connecting = undefined; });
    return this.#connecting;
  }

  #connect(): Promise<boolean> {
    const c = this.creds!;
    const [host, port] = c.endpoint.split(':') as [string, string];
    this.mqtt?.end(true);
    const client = new MqttClient(() => net.connect({ host, port: Number(port), localAddress: this.localAddress }), {
      protocolVersion: 4, clean: true, clientId: c.client_id, username: c.username, password: c.password,
      keepalive: c.keepalive, reconnectPeriod: 0, connectTimeout: 5000, queueQoSZero: false, resubscribe: false,
    });
    this.mqtt = client;
    client.on('message', (_t, payload) => {
      if (this.mqtt !== client) return;
      let m: Msg;
      try {
        m = JSON.parse(payload.toString()) as Msg;
      } catch {
        return;
      }
      this.messages.push(m);
      this.#waiters = this.#waiters.filter((w) => (w.pred(m) ? (w.resolve(m), false) : true));
    });
    return new Promise((resolve) => {
      let settled = false;
      client.on('connect', () => {
        if (settled) return;
        settled = true;
        this.connected = true;
        this.connects.push(performance.now());
        resolve(true);
      });
      client.on('error', (err) => {
        if (!settled) { settled = true; this.lastConnectError = err.message; resolve(false); }
      });
      client.on('close', () => {
        if (!settled) { settled = true; this.lastConnectError = 'closed before CONNACK'; resolve(false); }
        if (this.mqtt !== client || !this.connected) return;
        this.connected = false;
        this.hello = undefined;
        this.losses.push(performance.now());
        // The conversation in progress ends (in the firmware: at its next send, which fails; see above).
        for (const w of this.#waiters.splice(0)) w.reject(new Error('MQTT connection lost'));
        // MqttProtocol's reconnect timer: reconnect if the device is idle then.
        clearTimeout(this.#reconnectTimer);
        this.#reconnectTimer = setTimeout(() => {
          if (this.#running && !this.connected && !this.#inTurn) void this.connect();
        }, FIRMWARE_RECONNECT_MS);
      });
    });
  }

  publish(m: Msg): void {
    if (this.connected) this.mqtt!.publish(this.creds!.publish_topic, JSON.stringify(m));
  }

  waitFor(pred: (m: Msg) => boolean, timeoutMs: number): Promise<Msg> {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        this.#waiters = this.#waiters.filter((w) => w.resolve !== done);
        reject(new Error('timed out waiting for a message'));
      }, timeoutMs);
      const done = (m: Msg) => { clearTimeout(t); resolve(m); };
      const fail = (err: Error) => { clearTimeout(t); reject(err); };
      this.#waiters.push({ pred, resolve: done, reject: fail });
    });
  }

  /** OpenAudioChannel: MQTT first if it is down, then hello and the UDP socket. */
  async #openAudioChannel(): Promise<void> {
    if (!this.connected && !(await this.connect())) throw new Error(`MQTT connect failed: ${this.lastConnectError}`);
    const reply = this.waitFor((m) => m.type === 'hello', HELLO_TIMEOUT_MS);
    this.publish({ type: 'hello', version: 3, transport: 'udp', features: { mcp: true }, audio_params: { format: 'opus', sample_rate: 16000, channels: 1, frame_duration: 60 } });
    this.hello = (await reply) as unknown as FleetDevice['hello'];
    this.#seq = 0;
    if (!this.#udp) {
      const udp = dgram.createSocket('udp4');
      udp.on('message', (data) => this.#down.push(data));
      udp.on('error', () => {});
      await new Promise<void>((r) => udp.bind(0, this.localAddress, () => r()));
      this.#udp = udp;
    }
  }

  #datagram(opus: Buffer): Buffer {
    const nonce = Buffer.from(this.hello!.udp.nonce, 'hex');
    const h = Buffer.alloc(16);
    nonce.copy(h, 0, 0, 16);
    h.writeUInt16BE(opus.length, 2);
    h.writeUInt32BE(0, 8);
    h.writeUInt32BE(++this.#seq, 12);
    const key = Buffer.from(this.hello!.udp.key, 'hex');
    return Buffer.concat([h, createCipheriv('aes-128-ctr', key, h).update(opus)]);
  }

  /** One conversation turn (manual mode): speak the frames, wait for the echo's tts stop. */
  async turn(): Promise<Turn> {
    const start = performance.now();
    this.#inTurn = true;
    let udpPort = this.hello?.udp.port ?? 0;
    try {
      if (!this.hello) await this.#openAudioChannel();
      udpPort = this.hello!.udp.port;
      const sid = this.hello!.session_id;
      this.#down = [];
      const stop = this.waitFor((m) => m.type === 'tts' && m.state === 'stop', 15_000);
      stop.catch(() => {});  // awaited below; a loss while speaking must not be an unhandled rejection
      this.publish({ session_id: sid, type: 'listen', state: 'start', mode: 'manual' });
      for (const f of this.frames) {
        if (!this.hello) break;
        this.#udp!.send(this.#datagram(f), this.hello!.udp.port, this.hello!.udp.server);
        await sleep(60);
      }
      // Listen stop goes by MQTT, the audio by UDP: on a busy machine the stop can overtake the last
      // datagrams and the echo agent would end the utterance short. The test is about failover, not
      // that race, so the last frame gets a head start.
      await sleep(200);
      this.publish({ session_id: sid, type: 'listen', state: 'stop' });
      await stop;
      if (this.#udpPortOf() !== udpPort) throw new Error('the session changed during the turn');
      // The last datagrams may sit unread behind the MQTT message in this busy test process (the
      // gateway sent them first): give the UDP socket a moment before counting.
      await sleep(300);
      const seqs = this.#down.map((d) => d.readUInt32BE(12));
      const gap = seqs.length > 0 && seqs.at(-1)! - seqs[0]! + 1 !== seqs.length;
      const t: Turn = { start, end: performance.now(), ok: seqs.length >= this.frames.length - 1 && !gap, frames: seqs.length, gap, udpPort };
      this.turns.push(t);
      return t;
    } catch (err) {
      const t: Turn = { start, end: performance.now(), ok: false, frames: 0, gap: false, udpPort, error: (err as Error).message };
      this.turns.push(t);
      // The channel is broken: the next conversation opens a new one (and MQTT first if needed).
      this.hello = undefined;
      return t;
    } finally {
      this.#inTurn = false;
    }
  }

  #udpPortOf(): number | undefined {
    return this.hello?.udp.port;
  }

  /** Conversations until stop(): a turn, then a pause of pauseMs..2 x pauseMs. */
  run(pauseMs: number): void {
    this.#running = true;
    this.#loop = (async () => {
      while (this.#running) {
        await this.turn();
        await sleep(pauseMs * (1 + Math.random()));
      }
    })();
  }

  async stop(): Promise<void> {
    this.#running = false;
    clearTimeout(this.#reconnectTimer);
    await this.#loop;
    this.mqtt?.end(true);
    this.#udp?.close();
    this.#udp = undefined;
  }
}
