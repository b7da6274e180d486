// Messages from devices into the gateway (aedes' `published` hook). A device is known by the
// connection that sent the message, never by topic: the publish topic is shared by every device.
// Each message costs the gateway a JSON parse and may open streams, so every connection gets a
// bounded rate (token bucket, burst of two seconds' worth); the excess is dropped and counted.
import type { AedesPublishPacket, Client } from 'aedes';
import type { Logger } from 'pino';
import type { DeviceIdentity } from '../device/identity.js';
import { TokenBucket } from '../net/rate-limit.js';
import type { MqttBrokerLimits } from './broker-config.js';
import type { MqttBrokerStats } from './broker-stats.js';
import type { ConnectionState } from './connection-state.js';

export interface DeviceMessagesOptions {
  readonly publishTopic: string;
  readonly limits: MqttBrokerLimits;
  readonly clock: () => number;
  readonly log: Logger;
  /** The broker's counters, updated in place. */
  readonly counters: MqttBrokerStats;
  /** The record of an attached connection. */
  readonly stateOf: (client: Client) => ConnectionState | undefined;
  /** Hands an accepted message to the gateway (the 'device-message' event). */
  readonly deliver: (identity: DeviceIdentity, payload: Buffer) => void;
}

export class DeviceMessages {
  private readonly publishTopic: string;
  private readonly limits: MqttBrokerLimits;
  private readonly clock: () => number;
  private readonly log: Logger;
  private readonly counters: MqttBrokerStats;
  private readonly stateOf: (client: Client) => ConnectionState | undefined;
  private readonly deliver: (identity: DeviceIdentity, payload: Buffer) => void;

  constructor(options: DeviceMessagesOptions) {
    this.publishTopic = options.publishTopic;
    this.limits = options.limits;
    this.clock = options.clock;
    this.log = options.log;
    this.counters = options.counters;
    this.stateOf = options.stateOf;
    this.deliver = options.deliver;
  }

  published(packet: AedesPublishPacket, client: Client | null, done: (error?: Error | null) => void): void {
    if (client) {
      const state = this.stateOf(client);
      const identity = state?.identity;
      if (state && identity && packet.topic === this.publishTopic && !client.closed) {
        const now = this.clock();
        state.publishes ??= new TokenBucket(this.limits.publishesPerSecond, this.limits.publishesPerSecond * 2, now);
        if (!state.publishes.take(now)) {
          this.counters.publishRateLimited++;
          if (!state.publishRateWarned) {
            state.publishRateWarned = true;
            this.log.warn({ clientId: identity.clientId, publishesPerSecond: this.limits.publishesPerSecond }, 'PUBLISH dropped: over the per-connection message rate (further drops on this connection are only counted)');
          }
          return done(null);
        }
        const payload = Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload);
        this.counters.messages.in++;
        this.counters.messages.bytesIn += payload.length;
        this.deliver(identity, payload);
      }
    }
    done(null);
  }
}
