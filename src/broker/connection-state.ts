// What the broker knows about one accepted connection, from attach to close, and why it ended.
// Every hook and event handler of the broker reads and updates this one record.
import type { Client } from 'aedes';
import type { DeviceIdentity } from '../device/identity.js';
import type { TokenBucket } from '../net/rate-limit.js';
import type { GuardedConnection } from './frame-guard.js';

export type DisconnectReason =
  | 'client-disconnect'   // the device sent DISCONNECT
  | 'connection-lost'     // the socket closed or failed without DISCONNECT
  | 'keepalive-timeout'   // nothing received for 1.5 x keepalive
  | 'takeover'            // a new connection with the same client id replaced this one
  | 'server-disconnect'   // disconnectDevice()
  | 'acl-violation'       // published to a topic other than the publish topic, or with QoS 2
  | 'protocol-violation'  // malformed or oversized packet after CONNECT
  | 'broker-stopped';     // stop()

export interface ConnectionState {
  readonly id: number;
  readonly conn: GuardedConnection;
  readonly remoteAddress: string;
  readonly remotePort: number;
  readonly tls: boolean;
  client?: Client;
  connect?: { keepalive: number; clean: boolean; protocolVersion: number };
  identity?: DeviceIdentity;
  deviceTopic?: string;
  /** device-connected was emitted and device-disconnected not yet. */
  announced: boolean;
  /** First known cause of the coming disconnect; later causes do not overwrite it. */
  reason?: DisconnectReason;
  subscribeWarned?: boolean;
  publishes?: TokenBucket;
  publishRateWarned?: boolean;
}

/** A connected device (CONNACK sent), by client id. */
export interface DeviceEntry {
  readonly client: Client;
  readonly state: ConnectionState;
}
