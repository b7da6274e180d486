// The broker's counters: one mutable MqttBrokerStats that every part of the broker increments in
// place, and MqttBroker.stats() copies out.
import type { DisconnectReason } from './connection-state.js';

export interface MqttBrokerStats {
  connections: {
    /** Devices connected (CONNACK sent) now. */
    current: number;
    /** Devices accepted since start. */
    total: number;
    /** Open sockets now, including connections that have not completed CONNECT. */
    sockets: number;
    socketsTotal: number;
  };
  /** Connections closed before authentication by a limit or the frame guard. */
  refused: {
    maxConnections: number;
    rateLimited: number;
    perIpConnections: number;
    connectTimeout: number;
    firstPacketNotConnect: number;
    reservedPacketType: number;
    malformedRemainingLength: number;
    oversizedPacket: number;
    tlsHandshake: number;
    /** PROXY protocol header missing, malformed or late (with proxyProtocol on). */
    proxyHeader: number;
  };
  /** CONNECTs refused with a CONNACK return code, by reason. */
  authFailures: {
    protocolVersion: number;
    cleanSession: number;
    keepalive: number;
    badClientId: number;
    badCredentials: number;
    stopping: number;
  };
  aclDenials: {
    /** PUBLISH to a topic other than the publish topic (connection closed). */
    publishTopic: number;
    /** PUBLISH with QoS 2 (connection closed). */
    publishQos: number;
    /** SUBSCRIBE filters refused (SUBACK 0x80). */
    subscribe: number;
    /** Deliveries aedes attempted other than sendToDevice (never expected). */
    forward: number;
  };
  /** PUBLISH with the retain flag, accepted with retain cleared. */
  retainCleared: number;
  /** PUBLISH packets over the connection's rate, dropped before they reach the gateway. */
  publishRateLimited: number;
  /** Will messages stripped from CONNECT. */
  willsStripped: number;
  messages: { in: number; out: number; bytesIn: number; bytesOut: number };
  takeovers: number;
  disconnects: Record<DisconnectReason, number>;
}

export function emptyStats(): MqttBrokerStats {
  return {
    connections: { current: 0, total: 0, sockets: 0, socketsTotal: 0 },
    refused: { maxConnections: 0, rateLimited: 0, perIpConnections: 0, connectTimeout: 0, firstPacketNotConnect: 0, reservedPacketType: 0, malformedRemainingLength: 0, oversizedPacket: 0, tlsHandshake: 0, proxyHeader: 0 },
    authFailures: { protocolVersion: 0, cleanSession: 0, keepalive: 0, badClientId: 0, badCredentials: 0, stopping: 0 },
    aclDenials: { publishTopic: 0, publishQos: 0, subscribe: 0, forward: 0 },
    retainCleared: 0,
    publishRateLimited: 0,
    willsStripped: 0,
    messages: { in: 0, out: 0, bytesIn: 0, bytesOut: 0 },
    takeovers: 0,
    disconnects: {
      'client-disconnect': 0, 'connection-lost': 0, 'keepalive-timeout': 0, takeover: 0,
      'server-disconnect': 0, 'acl-violation': 0, 'protocol-violation': 0, 'broker-stopped': 0,
    },
  };
}
