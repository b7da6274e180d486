// Who may open a connection, decided on the raw socket before TLS or MQTT cost anything: the total
// socket cap, open sockets per address, and the per-address connect rate (IPv6 by /64). The
// cluster-wide rate check (Redis) comes later, at CONNECT, but refuses for the same reason and
// shares the "log once a minute per address" bookkeeping.
import type net from 'node:net';
import type { Logger } from 'pino';
import { ipLimitKey, normalizeIp } from '../net/address.js';
import { KeyedRateLimiter } from '../net/rate-limit.js';
import type { MqttBrokerLimits } from './broker-config.js';
import type { MqttBrokerStats } from './broker-stats.js';

export interface ConnectionAdmissionOptions {
  readonly limits: MqttBrokerLimits;
  readonly log: Logger;
  /** The broker's counters, updated in place. */
  readonly counters: MqttBrokerStats;
  readonly clock: () => number;
  readonly clusterAdmit: ((ipKey: string) => Promise<boolean>) | undefined;
  /** True once the broker is stopping: every new socket is closed. */
  readonly isStopping: () => boolean;
}

export class ConnectionAdmission {
  private readonly limits: MqttBrokerLimits;
  private readonly log: Logger;
  private readonly counters: MqttBrokerStats;
  private readonly clusterAdmit: ((ipKey: string) => Promise<boolean>) | undefined;
  private readonly isStopping: () => boolean;
  private readonly rateLimiter: KeyedRateLimiter;
  /** Open sockets per ipLimitKey. */
  private readonly socketsPerIp = new Map<string, number>();
  /** Every admitted socket, including TLS sockets still in their handshake. */
  private readonly sockets = new Set<net.Socket>();
  /** Refusals already logged this minute, by kind and address. */
  private readonly warned = new Set<string>();
  private sweepTimer: NodeJS.Timeout | undefined;

  constructor(options: ConnectionAdmissionOptions) {
    this.limits = options.limits;
    this.log = options.log;
    this.counters = options.counters;
    this.clusterAdmit = options.clusterAdmit;
    this.isStopping = options.isStopping;
    this.rateLimiter = new KeyedRateLimiter({ perMinute: this.limits.connectsPerIpPerMinute, now: options.clock });
  }

  /** Connection cap and per-IP rate, checked on the raw socket. Returns false when refused (socket destroyed). */
  admit(socket: net.Socket, address?: string): boolean {
    const remoteAddress = normalizeIp(address ?? socket.remoteAddress ?? 'unknown');
    if (this.isStopping()) {
      socket.destroy();
      return false;
    }
    if (this.counters.connections.sockets >= this.limits.maxConnections) {
      this.counters.refused.maxConnections++;
      this.log.debug({ remoteAddress, maxConnections: this.limits.maxConnections }, 'connection refused: connection limit reached');
      socket.destroy();
      return false;
    }
    const ipKey = ipLimitKey(remoteAddress);
    const open = this.socketsPerIp.get(ipKey) ?? 0;
    if (open >= this.limits.maxConnectionsPerIp) {
      this.counters.refused.perIpConnections++;
      if (!this.warned.has(`open:${ipKey}`)) {
        this.warned.add(`open:${ipKey}`);
        this.log.warn({ remoteAddress: ipKey, maxConnectionsPerIp: this.limits.maxConnectionsPerIp }, 'connection refused: too many open connections from this address (further refusals this minute are not logged)');
      }
      socket.destroy();
      return false;
    }
    if (!this.rateLimiter.tryConsume(ipKey)) {
      this.counters.refused.rateLimited++;
      if (!this.warned.has(remoteAddress)) {
        this.warned.add(remoteAddress);
        this.log.warn({ remoteAddress, perMinute: this.limits.connectsPerIpPerMinute }, 'connection refused: connect rate limit exceeded for this address (further refusals this minute are not logged)');
      }
      socket.destroy();
      return false;
    }
    this.counters.connections.sockets++;
    this.counters.connections.socketsTotal++;
    this.sockets.add(socket);
    this.socketsPerIp.set(ipKey, open + 1);
    socket.once('close', () => {
      this.counters.connections.sockets--;
      this.sockets.delete(socket);
      const left = (this.socketsPerIp.get(ipKey) ?? 1) - 1;
      if (left > 0) this.socketsPerIp.set(ipKey, left);
      else this.socketsPerIp.delete(ipKey);
    });
    socket.on('error', () => { /* reported through the guarded connection; never unhandled */ });
    return true;
  }

  /**
   * The cluster-wide connect check for an authenticated CONNECT. `admitted` is called synchronously
   * when no cluster check is configured; a failing check admits (the local limits still apply).
   */
  admitCluster(remoteAddress: string, admitted: (ok: boolean) => void): void {
    if (!this.clusterAdmit) return admitted(true);
    this.clusterAdmit(ipLimitKey(remoteAddress)).then(
      (ok) => {
        if (ok) return admitted(true);
        this.counters.refused.rateLimited++;
        if (!this.warned.has(`cluster:${remoteAddress}`)) {
          this.warned.add(`cluster:${remoteAddress}`);
          this.log.warn({ remoteAddress, perMinute: this.limits.connectsPerIpPerMinute }, 'CONNECT refused (return code 3): cluster-wide connect rate exceeded for this address (further refusals this minute are not logged)');
        }
        admitted(false);
      },
      () => admitted(true),
    );
  }

  /** Once a minute: forget idle rate buckets and allow each refusal kind to be logged again. */
  startSweep(): void {
    this.sweepTimer = setInterval(() => {
      this.rateLimiter.sweep();
      this.warned.clear();
    }, 60_000);
    this.sweepTimer.unref();
  }

  stopSweep(): void {
    if (this.sweepTimer) clearInterval(this.sweepTimer);
  }

  /** Closes every admitted socket (at stop, after aedes has closed its clients). */
  destroyAll(): void {
    for (const socket of this.sockets) socket.destroy();
  }
}
