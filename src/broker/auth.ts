// Who may connect and what a connected device may do, as aedes hooks:
// - preConnect: wills are dropped, MQTT other than 3.1.1 is refused with return code 1.
// - authenticate: clean session, keepalive bounds, a parseable client id and (signature mode) the
//   signed credentials of the OTA reply; then the device's identity and its own topic are fixed,
//   a second connection with the same client id takes over the first, and the cluster-wide
//   connect check has the last word.
// - authorizePublish / authorizeSubscribe (the ACL): a device may publish only to the shared
//   publish topic (QoS 0 or 1, retain cleared) and subscribe to nothing, so no device can see
//   another device's topic or messages. Deliveries to devices are guarded by direct-send.ts.
import type { AuthenticateError, Client, ConnectPacket, PublishPacket, Subscription } from 'aedes';
import type { Logger } from 'pino';
import { macToTopicId, parseClientIdDetailed, verifyCredentials } from '../device/credentials.js';
import type { DeviceIdentity } from '../device/identity.js';
import { DEVICE_TOPIC_PREFIX } from '../net/mqtt-topics.js';
import type { MqttAuthOptions, MqttBrokerLimits } from './broker-config.js';
import type { MqttBrokerStats } from './broker-stats.js';
import type { ConnectionAdmission } from './connection-admission.js';
import type { ConnectionState, DeviceEntry } from './connection-state.js';
import { short } from './log-text.js';

export interface BrokerAuthOptions {
  readonly auth: MqttAuthOptions;
  readonly publishTopic: string;
  readonly limits: MqttBrokerLimits;
  readonly log: Logger;
  /** The broker's counters, updated in place. */
  readonly counters: MqttBrokerStats;
  readonly admission: ConnectionAdmission;
  /** The record of an attached connection. */
  readonly stateOf: (client: Client) => ConnectionState | undefined;
  /** The device currently connected with a client id (for takeovers). */
  readonly deviceOf: (clientId: string) => DeviceEntry | undefined;
  /** True once the broker is stopping: CONNECTs are refused with return code 3. */
  readonly isStopping: () => boolean;
}

/** A CONNACK refusal: aedes sends `returnCode` and closes the connection. */
function authError(message: string, returnCode: 1 | 2 | 3 | 4 | 5): AuthenticateError {
  return Object.assign(new Error(message), { returnCode }) as AuthenticateError;
}

export class BrokerAuth {
  private readonly auth: MqttAuthOptions;
  private readonly publishTopic: string;
  private readonly limits: MqttBrokerLimits;
  private readonly log: Logger;
  private readonly counters: MqttBrokerStats;
  private readonly admission: ConnectionAdmission;
  private readonly stateOf: (client: Client) => ConnectionState | undefined;
  private readonly deviceOf: (clientId: string) => DeviceEntry | undefined;
  private readonly isStopping: () => boolean;

  constructor(options: BrokerAuthOptions) {
    this.auth = options.auth;
    this.publishTopic = options.publishTopic;
    this.limits = options.limits;
    this.log = options.log;
    this.counters = options.counters;
    this.admission = options.admission;
    this.stateOf = options.stateOf;
    this.deviceOf = options.deviceOf;
    this.isStopping = options.isStopping;
  }

  preConnect(client: Client, packet: ConnectPacket, done: (error: Error | null, success: boolean) => void): void {
    const state = this.stateOf(client);
    if (!state) return done(new Error('unknown connection'), false);
    state.connect = { keepalive: packet.keepalive ?? 0, clean: packet.clean !== false, protocolVersion: packet.protocolVersion ?? 4 };
    if (packet.will) {
      // The firmware never sets a will; a will from any client would be published on its behalf
      // after it is gone, so it is dropped rather than stored.
      this.counters.willsStripped++;
      this.log.warn({ remoteAddress: state.remoteAddress, clientId: short(packet.clientId, 128) }, 'CONNECT will message ignored: wills are not supported');
      delete (packet as { will?: unknown }).will;
    }
    if (packet.protocolVersion !== 4) {
      this.counters.authFailures.protocolVersion++;
      this.log.warn({ remoteAddress: state.remoteAddress, clientId: short(packet.clientId, 128), protocolVersion: packet.protocolVersion }, 'CONNECT refused (return code 1): only MQTT 3.1.1 (protocol level 4) is accepted');
      // aedes answers a protocol level below 3 with CONNACK return code 1 and closes: the one way to
      // refuse MQTT 3.1 (level 3) with the right code, since authenticate may only use codes 2-5.
      if (packet.protocolVersion === 3) (packet as { protocolVersion: number }).protocolVersion = 0;
    }
    done(null, true);
  }

  authenticate(
    client: Client,
    username: Readonly<string | undefined>,
    password: Readonly<Buffer | undefined>,
    done: (error: AuthenticateError | null, success: boolean | null) => void,
  ): void {
    const state = this.stateOf(client);
    const clientId = client.id;
    const remoteAddress = state?.remoteAddress ?? 'unknown';
    const refuse = (reason: keyof MqttBrokerStats['authFailures'], returnCode: 2 | 3 | 4, message: string): void => {
      this.counters.authFailures[reason]++;
      this.log.warn({ remoteAddress, clientId: short(clientId, 128), returnCode }, `CONNECT refused: ${message}`);
      done(authError(message, returnCode), null);
    };
    if (!state?.connect) return refuse('badClientId', 2, 'connection state missing');
    if (this.isStopping()) return refuse('stopping', 3, 'broker is stopping');
    if (!state.connect.clean) return refuse('cleanSession', 2, 'clean session is required (the firmware always connects with a clean session)');
    const { keepalive } = state.connect;
    if (keepalive < this.limits.keepaliveMinS || keepalive > this.limits.keepaliveMaxS) {
      return refuse('keepalive', 2, `keepalive ${keepalive} s is outside the accepted range ${this.limits.keepaliveMinS}..${this.limits.keepaliveMaxS} s`);
    }
    const parsed = parseClientIdDetailed(clientId);
    if (!parsed.ok) return refuse('badClientId', 2, `client id not accepted: ${parsed.reason}`);
    if (this.auth.mode === 'signature') {
      const ok = verifyCredentials({ clientId, username: username ?? undefined, password: password ?? undefined, signatureKey: this.auth.signatureKey });
      if (!ok) return refuse('badCredentials', 4, 'bad username or password');
    }

    const identity: DeviceIdentity = Object.freeze({
      connectionId: state.id,
      clientId,
      mac: parsed.value.mac,
      ...(parsed.value.uuid !== undefined ? { uuid: parsed.value.uuid } : {}),
      group: parsed.value.group,
      remoteAddress: state.remoteAddress,
      remotePort: state.remotePort,
      keepalive,
      tls: state.tls,
    });
    state.identity = identity;
    state.deviceTopic = DEVICE_TOPIC_PREFIX + macToTopicId(identity.mac);
    const previous = this.deviceOf(clientId);
    if (previous && previous.client !== client) {
      // aedes closes the previous connection when it registers this one [MQTT-3.1.4-2].
      previous.state.reason ??= 'takeover';
      this.counters.takeovers++;
      this.log.info({ clientId, previousConnection: previous.state.id, connection: state.id }, 'client id connected again: the previous connection is taken over');
    }
    this.admission.admitCluster(state.remoteAddress, (ok) => {
      if (ok) done(null, true);
      else done(authError('cluster-wide connect rate exceeded', 3), null);
    });
  }

  authorizePublish(client: Client | null, packet: PublishPacket, done: (error?: Error | null) => void): void {
    if (client === null) return done(new Error('publishing without a client (will) is not allowed'));
    const state = this.stateOf(client);
    if (!state?.identity) return done(new Error('not authenticated'));
    if (packet.topic !== this.publishTopic) {
      this.counters.aclDenials.publishTopic++;
      state.reason ??= 'acl-violation';
      this.log.warn({ clientId: state.identity.clientId, topic: short(packet.topic) }, `PUBLISH refused, connection closed: devices may publish only to "${this.publishTopic}"`);
      return done(new Error('publish topic not allowed'));
    }
    if (packet.qos === 2) {
      this.counters.aclDenials.publishQos++;
      state.reason ??= 'acl-violation';
      this.log.warn({ clientId: state.identity.clientId }, 'PUBLISH refused, connection closed: QoS 2 is not supported (devices publish QoS 0)');
      return done(new Error('QoS 2 not allowed'));
    }
    if (packet.retain) {
      // Nothing is ever stored: retained messages would be replayed to future subscribers.
      packet.retain = false;
      this.counters.retainCleared++;
    }
    done(null);
  }

  authorizeSubscribe(client: Client, sub: Subscription, done: (error: Error | null, subscription?: Subscription | null) => void): void {
    this.counters.aclDenials.subscribe++;
    const state = this.stateOf(client);
    const fields = { clientId: short(client.id, 128), topic: short(sub.topic) };
    // One warning per connection: a SUBSCRIBE may list thousands of filters.
    if (state && !state.subscribeWarned) {
      state.subscribeWarned = true;
      this.log.warn(fields, 'SUBSCRIBE refused (0x80): devices receive their messages without subscribing (further refusals on this connection are logged at debug)');
    } else {
      this.log.debug(fields, 'SUBSCRIBE refused (0x80)');
    }
    done(null, null);
  }
}
