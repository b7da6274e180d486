// The IPC messages between the primary and its gateway workers (`--workers N`). They carry only
// connection-level facts (a device connected here, OTA saw this firmware, a scrape): nothing on the
// per-frame audio path ever crosses a process. Every type is prefixed so it never meets prom-client's
// own cluster messages ('prom-client:*') or Node's internal ones on the same channel.
import type { DeliveryResult, DirectoryEntry } from '../device/directory.js';
import type { GatewayPorts } from '../gateway.js';

/** A directory question without Redis: the primary asks every worker and merges the answers. */
export type DirectoryQuestion = { op: 'list' } | { op: 'deliver'; deviceId: string; message: object };

export type PrimaryToWorker =
  /** Everything a worker needs from the primary before it starts its gateway. */
  | {
    type: 'xiaozhi:init';
    index: number;
    /** The UDP port to bind (0: ephemeral), and whether 0 may be tried if it is taken (ephemeral range). */
    udpPort: number;
    udpPortFallback: boolean;
    publicUdpPort?: number;
    /** One key for every worker (OTA on one worker, MQTT on another must agree). */
    signatureKey?: string;
    /** Firmware versions OTA saw so far, so a restarted worker knows them too. */
    firmware: Array<[mac: string, version: string]>;
  }
  /** The same client id connected on another worker: close this connection (takeover). */
  | { type: 'xiaozhi:close-device'; clientId: string; connectionId: number }
  | { type: 'xiaozhi:firmware'; mac: string; version: string }
  | { type: 'xiaozhi:metrics-reply'; id: number; text?: string; error?: string }
  /** The primary collects every worker's registry (getMetricsAsJSON) and sums it (prom-client's aggregate). */
  | { type: 'xiaozhi:metrics-collect'; id: number }
  /** A directory question to answer from this worker's own devices. */
  | { type: 'xiaozhi:directory-query'; id: number; question: DirectoryQuestion }
  /** The merged answer to this worker's directory request. */
  | { type: 'xiaozhi:directory-reply'; id: number; devices?: DirectoryEntry[]; result?: DeliveryResult }
  /**
   * Recycle: take no new connection, let conversations finish, close idle devices (they reconnect
   * to the other workers), then stop and exit 0; after `drainS` whatever is left gets a goodbye.
   */
  | { type: 'xiaozhi:drain'; drainS: number }
  /** Drain: goodbye to every device, stop, exit 0. */
  | { type: 'xiaozhi:stop'; reason: string };

export type WorkerToPrimary =
  /** The worker listens for messages now (anything sent before would be lost). */
  | { type: 'xiaozhi:want-init' }
  | { type: 'xiaozhi:ready'; ports: GatewayPorts; pid: number }
  | { type: 'xiaozhi:start-failed'; error: string; code?: string }
  | { type: 'xiaozhi:device-connected'; clientId: string; connectionId: number }
  | { type: 'xiaozhi:device-disconnected'; clientId: string; connectionId: number }
  | { type: 'xiaozhi:firmware'; mac: string; version: string }
  | { type: 'xiaozhi:metrics-request'; id: number }
  /**
   * Replace this worker: it has accepted `sessions` audio sessions (at least --recycle-after-sessions),
   * or rtc-node retains `retained` audio sources of closed sessions (at least --recycle-retained-sources).
   */
  | { type: 'xiaozhi:recycle-request'; sessions: number; retained: number }
  /** GET /devices or POST /devices/{id}/messages on this worker, without Redis: ask every worker. */
  | { type: 'xiaozhi:directory-request'; id: number; question: DirectoryQuestion }
  | { type: 'xiaozhi:directory-answer'; id: number; devices?: DirectoryEntry[]; result?: DeliveryResult }
  | { type: 'xiaozhi:metrics-json'; id: number; metrics?: unknown[]; error?: string };

/** Set by the primary on every worker it forks: the CLI runs as a worker exactly when it is present. */
export const WORKER_INDEX_ENV = 'XIAOZHI_WORKER_INDEX';

export function isClusterMessage<T extends { type: string }>(m: unknown): m is T {
  return typeof m === 'object' && m !== null && typeof (m as { type?: unknown }).type === 'string' && (m as { type: string }).type.startsWith('xiaozhi:');
}
