// The broker's record of every connection, from the moment an admitted socket is handed to aedes
// (behind the frame guard) until it closes: the ConnectionState of each aedes client, the devices
// currently connected by client id, and the first known reason each connection ended. aedes'
// connection events land here; device-connected / device-disconnected leave through the two
// callbacks.
import type net from 'node:net';
import type { Aedes, Client } from 'aedes';
import type { Logger } from 'pino';
import type { DeviceIdentity } from '../device/identity.js';
import { normalizeIp } from '../net/address.js';
import { MAX_CONNECT_PACKET_SIZE, type MqttBrokerLimits } from './broker-config.js';
import type { MqttBrokerStats } from './broker-stats.js';
import type { ConnectionState, DeviceEntry, DisconnectReason } from './connection-state.js';
import { describeViolation, GuardedConnection, type FrameViolation } from './frame-guard.js';
import { short } from './log-text.js';

export interface ConnectionsOptions {
  readonly limits: MqttBrokerLimits;
  readonly log: Logger;
  /** The broker's counters, updated in place. */
  readonly counters: MqttBrokerStats;
  readonly onDeviceConnected: (identity: DeviceIdentity) => void;
  readonly onDeviceDisconnected: (identity: DeviceIdentity, reason: DisconnectReason) => void;
}

export class Connections {
  private readonly limits: MqttBrokerLimits;
  private readonly log: Logger;
  private readonly counters: MqttBrokerStats;
  private readonly onDeviceConnected: (identity: DeviceIdentity) => void;
  private readonly onDeviceDisconnected: (identity: DeviceIdentity, reason: DisconnectReason) => void;
  private readonly states = new WeakMap<Client, ConnectionState>();
  /** Attached connections whose guarded stream has not closed yet. */
  private readonly open = new Set<ConnectionState>();
  /** Devices connected (CONNACK sent), by client id. */
  private readonly devices = new Map<string, DeviceEntry>();
  private nextConnectionId = 1;

  constructor(options: ConnectionsOptions) {
    this.limits = options.limits;
    this.log = options.log;
    this.counters = options.counters;
    this.onDeviceConnected = options.onDeviceConnected;
    this.onDeviceDisconnected = options.onDeviceDisconnected;
  }

  /** Hands an admitted socket to aedes behind the frame guard; `remote` is the address from a PROXY header. */
  attach(aedes: Aedes, socket: net.Socket, secure: boolean, remote?: { address: string; port: number }): void {
    const remoteAddress = normalizeIp(remote?.address ?? socket.remoteAddress ?? 'unknown');
    const remotePort = remote?.port ?? socket.remotePort ?? 0;
    let state: ConnectionState | undefined;
    const conn = new GuardedConnection(
      socket,
      { maxPacketSize: this.limits.maxPacketSize, maxConnectSize: MAX_CONNECT_PACKET_SIZE },
      (violation) => this.onFrameViolation(state!, violation),
    );
    state = { id: this.nextConnectionId++, conn, remoteAddress, remotePort, tls: secure, announced: false };
    this.open.add(state);
    const current = state;
    conn.once('close', () => this.open.delete(current));
    state.client = aedes.handle(conn);
    this.states.set(state.client, state);
  }

  stateOf(client: Client): ConnectionState | undefined {
    return this.states.get(client);
  }

  /** The device currently connected with `clientId`, if any. */
  device(clientId: string): DeviceEntry | undefined {
    return this.devices.get(clientId);
  }

  connectedDevices(): IterableIterator<DeviceEntry> {
    return this.devices.values();
  }

  /** Records `reason` as the cause of the coming disconnect unless one is known already. */
  setReason(client: Client, reason: DisconnectReason): void {
    const state = this.states.get(client);
    if (state) state.reason ??= reason;
  }

  /** At stop, before aedes closes its clients: every open connection ends with 'broker-stopped' unless it had a reason. */
  markStopping(): void {
    for (const state of this.open) state.reason ??= 'broker-stopped';
  }

  /** At stop, after aedes has closed its clients: whatever is still open is destroyed. */
  destroyAll(): void {
    for (const state of this.open) state.conn.destroy();
  }

  private onFrameViolation(state: ConnectionState, violation: FrameViolation): void {
    const key = ({
      'first-packet-not-connect': 'firstPacketNotConnect',
      'reserved-packet-type': 'reservedPacketType',
      'malformed-remaining-length': 'malformedRemainingLength',
      'oversized-packet': 'oversizedPacket',
    } as const)[violation.kind];
    this.counters.refused[key]++;
    state.reason ??= 'protocol-violation';
    this.log.warn({ remoteAddress: state.remoteAddress, clientId: state.identity?.clientId }, `connection closed: ${describeViolation(violation)}`);
  }

  // ---- aedes events ----------------------------------------------------------------------------

  onConnackSent(client: Client): void {
    const state = this.states.get(client);
    if (!state?.identity) {
      this.log.error({ clientId: client.id }, 'connected client without identity: closing');
      client.close();
      return;
    }
    this.devices.set(state.identity.clientId, { client, state });
    state.announced = true;
    this.counters.connections.current++;
    this.counters.connections.total++;
    this.log.info({ clientId: state.identity.clientId, remoteAddress: state.remoteAddress, connection: state.id, keepalive: state.identity.keepalive, tls: state.tls }, 'device connected');
    this.onDeviceConnected(state.identity);
  }

  onClientDisconnect(client: Client): void {
    const state = this.states.get(client);
    if (!state?.identity || !state.announced) return;
    state.announced = false;
    const identity = state.identity;
    const entry = this.devices.get(identity.clientId);
    if (entry?.client === client) this.devices.delete(identity.clientId);
    this.counters.connections.current--;
    const reason: DisconnectReason = state.reason ?? (state.conn.sawDisconnect ? 'client-disconnect' : 'connection-lost');
    this.counters.disconnects[reason]++;
    this.log.info({ clientId: identity.clientId, connection: state.id, reason }, 'device disconnected');
    this.onDeviceDisconnected(identity, reason);
  }

  onClientError(client: Client, err: Error & { code?: string }): void {
    const state = this.states.get(client);
    // System errors (ECONNRESET, EPIPE) and a peer that stopped reading are lost connections;
    // anything else aedes reports here is a packet it could not accept.
    if (state && !state.reason) state.reason = err.code || err.message === 'drain timeout' ? 'connection-lost' : 'protocol-violation';
    this.log.debug({ clientId: short(client.id, 128), err: err.message }, 'client error');
  }

  onConnectionError(client: Client, err: Error): void {
    const state = this.states.get(client);
    if (err.message === 'connect did not arrive in time') {
      this.counters.refused.connectTimeout++;
      this.log.info({ remoteAddress: state?.remoteAddress, timeoutMs: this.limits.connectTimeoutMs }, 'connection closed: no CONNECT within the deadline');
      return;
    }
    this.log.debug({ remoteAddress: state?.remoteAddress, err: err.message }, 'connection error before CONNECT completed');
  }
}
