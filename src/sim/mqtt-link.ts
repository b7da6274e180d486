// The device's MQTT connection (MqttProtocol over esp-mqtt): plain TCP, or TLS exactly when the
// port is 8883; MQTT 3.1.1, clean session, no subscriptions (the broker delivers to the device
// anyway), QoS 0, no automatic reconnect (the firmware reconnects only when it next needs the link).
// One MqttLink per device; connect() replaces the previous client, close() silences it for good.
import { connect as tcpConnect, isIP } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { MqttClient } from 'mqtt';
import type { MqttSettings } from './firmware.js';

export interface MqttLinkOptions {
  /** Accept any server certificate (self-signed gateways in tests and labs). */
  insecure: boolean;
  /** The device's source address towards `host`, if it has one of its own. */
  localAddress(host: string): string | undefined;
  /** A message from the broker on the current connection. */
  onMessage(payload: Buffer): void;
  /** The current connection, once established, closed. */
  onLost(): void;
}

export type ConnectResult = { ok: true } | { ok: false; why: string };

export class MqttLink {
  readonly #o: MqttLinkOptions;
  #client: MqttClient | null = null;
  #connected = false;

  constructor(options: MqttLinkOptions) {
    this.#o = options;
  }

  get connected(): boolean {
    return this.#connected;
  }

  /** Connects with `s`, ending any previous connection first; resolves at CONNACK or failure. */
  connect(s: MqttSettings): Promise<ConnectResult> {
    this.close(true);
    return new Promise((resolve) => {
      let settled = false;
      const settle = (r: ConnectResult): void => {
        if (settled) return;
        settled = true;
        resolve(r);
      };
      const local = this.#o.localAddress(s.host);
      const stream = () =>
        s.tls
          ? tlsConnect({
              host: s.host,
              port: s.port,
              ...(isIP(s.host) ? {} : { servername: s.host }),
              rejectUnauthorized: !this.#o.insecure,
              ...(local ? { localAddress: local } : {}),
            })
          : tcpConnect({ host: s.host, port: s.port, ...(local ? { localAddress: local } : {}) });
      const client = new MqttClient(stream, {
        protocolVersion: 4,
        clean: true,
        clientId: s.clientId,
        ...(s.username ? { username: s.username } : {}),
        ...(s.password ? { password: s.password } : {}),
        keepalive: s.keepalive,
        reconnectPeriod: 0,
        connectTimeout: 10_000,
        queueQoSZero: false,
        resubscribe: false,
      });
      this.#client = client;
      client.on('connect', () => {
        if (this.#client !== client) return;
        this.#connected = true;
        settle({ ok: true });
      });
      client.on('message', (_topic, payload) => {
        if (this.#client === client) this.#o.onMessage(payload);
      });
      client.on('error', (err) => settle({ ok: false, why: err.message }));
      client.on('close', () => {
        settle({ ok: false, why: 'connection closed before CONNACK' });
        if (this.#client !== client) return;
        const wasConnected = this.#connected;
        this.#connected = false;
        if (wasConnected) this.#o.onLost();
      });
    });
  }

  /** esp_mqtt_client_publish at QoS 0; false when there is no connection to publish on. */
  publish(topic: string, text: string): boolean {
    if (!this.#client || !this.#connected) return false;
    this.#client.publish(topic, text, { qos: 0, retain: false });
    return true;
  }

  /** Ends the connection without onLost (`force`: at once, else after in-flight writes). */
  close(force: boolean): void {
    const client = this.#client;
    this.#client = null;
    this.#connected = false;
    if (client) client.end(force, () => undefined);
  }
}
