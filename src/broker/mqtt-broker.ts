// The embedded MQTT broker devices connect to (PROTOCOL.md §2): an aedes instance behind a TCP (and
// optionally TLS) listener, locked down to what stock firmware does and nothing more.
//
// - Devices authenticate with the signed credentials of the OTA reply (or any parseable client id
//   in open mode), speak MQTT 3.1.1 with a clean session, and may publish only to the shared
//   publish topic. They may subscribe to nothing: every SUBSCRIBE is answered with 0x80.
// - The gateway receives device messages in-process (aedes' `published` hook), identified by the
//   connection that sent them, never by topic: the publish topic is shared by every device.
// - The gateway talks to a device by writing a PUBLISH straight to that device's connection
//   (topic devices/p2p/<mac_underscored>), without any subscription. authorizeForward refuses every
//   other delivery, so nothing published by one client can ever reach another one (direct-send.ts
//   says how, and which aedes behaviour that relies on).
// - Limits apply before the MQTT parser sees a byte: connection cap, per-IP connect rate, a
//   fixed-header guard (first packet must be CONNECT, packet size cap, no buffering of oversized
//   packets), the CONNECT deadline, and keepalive bounds.
//
// CONNACK return codes used (MQTT 3.1.1 has no others): 1 protocol level is not 4 (MQTT 3.1.1);
// 2 client id not accepted, session not clean, or keepalive out of bounds (as mosquitto does for
// max_keepalive); 3 broker stopping; 4 bad username or password.
//
// MqttBroker composes the parts, one per file, and keeps the public API: broker-config.ts (options,
// defaults, validation), listeners.ts (TCP/TLS, PROXY v2), connection-admission.ts (socket caps,
// connect rates), connections.ts (connection records, connected devices, disconnect reasons),
// auth.ts (CONNECT checks, ACL), device-messages.ts (messages in), direct-send.ts (messages out),
// broker-stats.ts (counters).
import { EventEmitter } from 'node:events';
import net from 'node:net';
import { Aedes, type Client } from 'aedes';
import type { Logger } from 'pino';
import { codedError, describe, typeError } from '../native/errors.js';
import type { DeviceIdentity } from '../device/identity.js';
export type { DeviceIdentity } from '../device/identity.js';  // its importers predate device/identity.ts
export { DEVICE_TOPIC_PREFIX, validatePublishTopic } from '../net/mqtt-topics.js';  // importers predate net/mqtt-topics.ts
import { resolveBrokerConfig, type MqttAuthOptions, type MqttBrokerLimits, type MqttBrokerOptions } from './broker-config.js';
export { MAX_CONNECT_PACKET_SIZE, MIN_MAX_PACKET_SIZE, type MqttAuthOptions, type MqttBrokerLimits, type MqttBrokerOptions } from './broker-config.js';
import { BrokerAuth } from './auth.js';
import { Connections } from './connections.js';
import { ConnectionAdmission } from './connection-admission.js';
import { BrokerListeners } from './listeners.js';
import { DeviceMessages } from './device-messages.js';
import { DirectSend } from './direct-send.js';
import { emptyStats, type MqttBrokerStats } from './broker-stats.js';
export type { MqttBrokerStats } from './broker-stats.js';
import type { DisconnectReason } from './connection-state.js';
export type { DisconnectReason } from './connection-state.js';

export interface MqttBrokerEvents {
  'device-connected': [identity: DeviceIdentity];
  'device-message': [identity: DeviceIdentity, payload: Buffer];
  'device-disconnected': [identity: DeviceIdentity, reason: DisconnectReason];
}

export class MqttBroker extends EventEmitter<MqttBrokerEvents> {
  private readonly log: Logger;
  private readonly auth: MqttAuthOptions;
  private readonly limits: MqttBrokerLimits;
  private readonly host: string;
  readonly publishTopic: string;

  private aedes: Aedes | undefined;
  private started = false;
  private stopping: Promise<void> | undefined;

  private readonly counters = emptyStats();

  // The parts behind aedes' hooks, one concept each; they share the counters and the connection records.
  private readonly connections: Connections;
  private readonly admission: ConnectionAdmission;
  private readonly servers: BrokerListeners;
  private readonly access: BrokerAuth;
  private readonly messages: DeviceMessages;
  private readonly directSend: DirectSend;

  constructor(options: MqttBrokerOptions) {
    super();
    const config = resolveBrokerConfig(options);
    this.log = config.logger.child({ component: 'mqtt-broker' });
    this.auth = config.auth;
    this.limits = config.limits;
    this.host = config.host;
    this.publishTopic = config.publishTopic;
    const log = this.log;
    const counters = this.counters;
    const limits = this.limits;
    const isStopping = (): boolean => this.stopping !== undefined;
    this.connections = new Connections({
      limits,
      log,
      counters,
      onDeviceConnected: (identity) => this.safeEmit('device-connected', identity),
      onDeviceDisconnected: (identity, reason) => this.safeEmit('device-disconnected', identity, reason),
    });
    const stateOf = (client: Client) => this.connections.stateOf(client);

    this.admission = new ConnectionAdmission({ limits, log, counters, clock: config.clock, clusterAdmit: config.clusterAdmit, isStopping });
    this.servers = new BrokerListeners({
      host: config.host,
      port: config.port,
      tls: config.tls,
      limits,
      proxyProtocol: config.proxyProtocol,
      log,
      counters,
      admission: this.admission,
      attach: (socket, secure, remote) => this.attach(socket, secure, remote),
    });
    this.access = new BrokerAuth({
      auth: config.auth,
      publishTopic: config.publishTopic,
      limits,
      log,
      counters,
      admission: this.admission,
      stateOf,
      deviceOf: (clientId) => this.connections.device(clientId),
      isStopping,
    });
    this.messages = new DeviceMessages({
      publishTopic: config.publishTopic,
      limits,
      clock: config.clock,
      log,
      counters,
      stateOf,
      deliver: (identity, payload) => this.safeEmit('device-message', identity, payload),
    });
    this.directSend = new DirectSend({ log, counters });
  }

  /** Starts aedes and the listeners. Port 0 binds an ephemeral port; the bound ports are returned. */
  async start(): Promise<{ port: number; tlsPort?: number }> {
    if (this.started) throw codedError('ERR_BROKER_STATE', 'MqttBroker.start(): already started');
    this.started = true;

    this.aedes = await Aedes.createBroker({
      connectTimeout: this.limits.connectTimeoutMs,
      keepaliveLimit: 0, // bounds are checked in authenticate, with a log line naming them
      drainTimeout: 30_000,
      preConnect: (client, packet, done) => this.access.preConnect(client, packet, done),
      authenticate: (client, username, password, done) => this.access.authenticate(client, username, password, done),
      authorizePublish: (client, packet, done) => this.access.authorizePublish(client, packet, done),
      authorizeSubscribe: (client, sub, done) => this.access.authorizeSubscribe(client, sub, done),
      authorizeForward: (client, packet) => this.directSend.authorizeForward(client, packet),
      published: (packet, client, done) => this.messages.published(packet, client, done),
    });
    const aedes = this.aedes;
    // device-connected fires when the CONNACK has been written, which is before aedes resumes reading
    // from the client (its 'clientReady' comes later): a device's first PUBLISH can never be reported
    // before the device itself.
    aedes.on('connackSent', (packet, client) => { if (packet.returnCode === 0) this.connections.onConnackSent(client); });
    aedes.on('clientDisconnect', (client) => this.connections.onClientDisconnect(client));
    aedes.on('keepaliveTimeout', (client) => this.connections.setReason(client, 'keepalive-timeout'));
    aedes.on('clientError', (client, err) => this.connections.onClientError(client, err));
    aedes.on('connectionError', (client, err) => this.connections.onConnectionError(client, err));
    // aedes reports internal (persistence) failures as 'error'; never let one crash the process.
    (aedes as unknown as EventEmitter).on('error', (err: Error) => this.log.error({ err: err.message }, 'aedes internal error'));

    try {
      const { port, tlsPort } = await this.servers.listen();

      this.admission.startSweep();

      this.log.info({ host: this.host, port, tlsPort, auth: this.auth.mode, publishTopic: this.publishTopic, limits: this.limits }, 'MQTT broker listening');
      if (this.auth.mode === 'open') {
        this.log.warn('MQTT AUTH IS OPEN: any client with a well-formed client id is accepted without a password check. Configure a signature key for production.');
      }
      return tlsPort === undefined ? { port } : { port, tlsPort };
    } catch (err) {
      await this.stop();
      throw err;
    }
  }

  /** Stops taking new connections (the listeners close); connections already open are kept. */
  stopListening(): void {
    void this.servers.close();
  }

  /** Closes the listeners and every connection; device-disconnected fires with 'broker-stopped'. */
  stop(): Promise<void> {
    this.stopping ??= this.doStop();
    return this.stopping;
  }

  private async doStop(): Promise<void> {
    this.admission.stopSweep();
    const closing = this.servers.close();
    this.connections.markStopping();
    if (this.aedes) {
      const aedes = this.aedes;
      await new Promise<void>((resolve) => aedes.close(() => resolve()));
    }
    this.connections.destroyAll();
    this.admission.destroyAll();
    await closing;
    this.log.info('MQTT broker stopped');
  }

  /** Pushes one JSON message to a connected device (QoS 0, retain 0, topic devices/p2p/<mac>). False if not connected. */
  sendToDevice(clientId: string, message: object): boolean {
    if (typeof message !== 'object' || message === null) throw typeError('ERR_INVALID_ARG_TYPE', `message: expected an object, got ${describe(message)}`);
    const entry = this.connections.device(clientId);
    if (!entry || entry.client.closed || !entry.state.deviceTopic) return false;
    let json: string | undefined;
    try {
      json = JSON.stringify(message);
    } catch (err) {
      throw typeError('ERR_INVALID_ARG_VALUE', `message: not serializable to JSON (${(err as Error).message})`);
    }
    if (json === undefined) throw typeError('ERR_INVALID_ARG_VALUE', 'message: not serializable to JSON');
    const payload = Buffer.from(json, 'utf8');
    this.directSend.send(entry.client, entry.state.deviceTopic, payload, (err) => {
      this.log.debug({ clientId, err: err.message }, 'delivery to device failed');
    });
    this.counters.messages.out++;
    this.counters.messages.bytesOut += payload.length;
    return true;
  }

  /** Closes a device's connection; device-disconnected fires with 'server-disconnect'. False if not connected. */
  disconnectDevice(clientId: string): boolean {
    const entry = this.connections.device(clientId);
    if (!entry || entry.client.closed) return false;
    entry.state.reason ??= 'server-disconnect';
    entry.client.close();
    return true;
  }

  isConnected(clientId: string): boolean {
    const entry = this.connections.device(clientId);
    return entry !== undefined && !entry.client.closed;
  }

  /** The device currently connected with `clientId`, if any. */
  getDevice(clientId: string): DeviceIdentity | undefined {
    return this.connections.device(clientId)?.state.identity;
  }

  connectedDevices(): DeviceIdentity[] {
    const out: DeviceIdentity[] = [];
    for (const entry of this.connections.connectedDevices()) if (entry.state.identity) out.push(entry.state.identity);
    return out;
  }

  /** A snapshot of the counters (a fresh plain object on each call). */
  stats(): MqttBrokerStats {
    return structuredClone(this.counters);
  }

  /** Hands an admitted socket to aedes; while stopping (or before start) it is closed instead. */
  private attach(socket: net.Socket, secure: boolean, remote?: { address: string; port: number }): void {
    if (!this.aedes || this.stopping) {
      socket.destroy();
      return;
    }
    this.connections.attach(this.aedes, socket, secure, remote);
  }

  /** Listeners run inside aedes callbacks: a throwing listener must not break the broker. */
  private safeEmit<K extends keyof MqttBrokerEvents>(event: K, ...args: MqttBrokerEvents[K]): void {
    try {
      (this.emit as (name: string, ...a: unknown[]) => boolean)(event, ...args);
    } catch (err) {
      this.log.error({ err, event }, 'MqttBroker event listener threw');
    }
  }
}
