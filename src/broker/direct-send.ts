// Delivery of one PUBLISH to exactly one device connection, without any subscription.
//
// Why: devices never subscribe (every SUBSCRIBE is refused), and no message may ever travel from
// one client to another. The gateway still has to push messages to a device on its own topic
// (devices/p2p/<mac>). aedes has no "write this packet to that connection" API outside its
// fan-out, but `client.publish()` writes to one connection and asks the broker's authorizeForward
// hook first. authorizeForward refuses every delivery except the one this class has announced
// for the duration of its own `client.publish()` call.
//
// The aedes assumption this relies on: for a QoS 0 packet, `Client.publish()` calls
// `broker.authorizeForward(client, packet)` synchronously, before it defers the socket write
// (aedes 1.x lib/client.js: publish -> deliverQoS0 -> getToForwardPacket -> authorizeForward,
// then setImmediate(write)). If a future aedes made that call asynchronous, the announcement would
// be gone by the time the hook ran: every message to a device would be blocked (fail closed) and
// counted as aclDenials.forward. send() checks the hook was consulted during the call and throws
// ERR_BROKER_DIRECT_SEND otherwise, so such an upgrade fails on the first send instead of leaving
// devices silently without messages.
import type { AedesPublishPacket, Client, PublishPacket } from 'aedes';
import type { Logger } from 'pino';
import { codedError } from '../native/errors.js';
import type { MqttBrokerStats } from './broker-stats.js';
import { short } from './log-text.js';

export interface DirectSendOptions {
  readonly log: Logger;
  /** The broker's counters, updated in place. */
  readonly counters: MqttBrokerStats;
}

export class DirectSend {
  private readonly log: Logger;
  private readonly counters: MqttBrokerStats;
  /** Set only while send() hands a packet to aedes: the one delivery authorizeForward lets through. */
  private pending: { client: Client; topic: string; authorized: boolean } | null = null;

  constructor(options: DirectSendOptions) {
    this.log = options.log;
    this.counters = options.counters;
  }

  /** Writes one QoS 0 PUBLISH to `client`'s connection; `onError` reports a failed write (later, asynchronously). */
  send(client: Client, topic: string, payload: Buffer, onError: (err: Error) => void): void {
    const packet: PublishPacket = { cmd: 'publish', topic, payload, qos: 0, retain: false, dup: false };
    const pending = { client, topic, authorized: false };
    this.pending = pending;
    try {
      client.publish(packet, (err) => {
        if (err) onError(err);
      });
    } finally {
      this.pending = null;
    }
    if (!pending.authorized) {
      throw codedError('ERR_BROKER_DIRECT_SEND', 'direct send: aedes did not call authorizeForward during client.publish(); this version of aedes breaks the assumption in src/broker/direct-send.ts, and no message can reach a device');
    }
  }

  /** aedes' authorizeForward hook: only the delivery send() is making passes. */
  authorizeForward(client: Client, packet: AedesPublishPacket): AedesPublishPacket | null {
    const pending = this.pending;
    if (pending !== null && pending.client === client && pending.topic === packet.topic) {
      pending.authorized = true;
      return packet;
    }
    this.counters.aclDenials.forward++;
    this.log.error({ clientId: client.id, topic: short(packet.topic) }, 'delivery blocked: only sendToDevice may write to a device connection');
    return null;
  }
}
