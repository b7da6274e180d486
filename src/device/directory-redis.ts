// The cluster-wide device directory (`--redis-url`): every gateway process (an "owner": instance +
// worker) records the devices connected to it in Redis and listens on its own pub/sub channel.
//
// Keys (all under `xiaozhi:`):
//   dev:<mac>      hash {conn, since, owner, instance, worker, clientId, state, fw}: the live
//                  connection of a device. Expires unless its owner refreshes it (RECORD_TTL_MS).
//   alive:<owner>  set while the owner runs (heartbeat); records of a dead owner are not listed.
//   fw:<mac>       the firmware version OTA saw, for an MQTT session on any instance (FIRMWARE_TTL_S).
//   rl:<kind>:<ip>:<minute>  per-IP fixed-window counters (connects, OTA requests).
// Channel to:<owner>: takeovers and message deliveries for that owner's devices, and their replies.
//
// One device, one live session: a new connection claims the record unconditionally (the newest
// connection wins, as an MQTT takeover) and tells the previous owner, which closes its connection
// at once. The periodic refresh re-claims conditionally (the connection that started later wins),
// which also heals what a lost message or a Redis outage left behind.
import { randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import { RedisLink } from '../net/redis-link.js';
import { toEntry, type DeliveryResult, type DeviceDirectory, type DirectoryEntry, type LocalDevice, type LocalDevices } from './directory.js';

const PREFIX = 'xiaozhi:';
/** Heartbeat of an owner; it counts as dead ALIVE_TTL_MS after its last one. */
const HEARTBEAT_MS = 2000;
const ALIVE_TTL_MS = 6000;
/** Every record of this owner is re-claimed (and its session state written) this often. */
const REFRESH_MS = 10_000;
const RECORD_TTL_MS = 35_000;
/** A device asks OTA at every boot; a week covers a device that stays connected a long time. */
const FIRMWARE_TTL_S = 7 * 24 * 3600;
/** How long POST /devices/{id}/messages waits for the owner's answer. */
const DELIVERY_TIMEOUT_MS = 2000;

// KEYS[1] record; ARGV: conn, since, ttl ms, mode ('force' | 'keep'), then field/value pairs.
// 'keep' leaves a record of another connection that started later alone and answers 'newer'.
const CLAIM = `
local cur = redis.call('HMGET', KEYS[1], 'conn', 'since', 'clientId')
if cur[1] and cur[1] ~= ARGV[1] and ARGV[4] == 'keep' and tonumber(cur[2] or '0') > tonumber(ARGV[2]) then
  return {'newer', cur[1], cur[3] or ''}
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'conn', ARGV[1], 'since', ARGV[2], unpack(ARGV, 5))
redis.call('PEXPIRE', KEYS[1], ARGV[3])
if cur[1] and cur[1] ~= ARGV[1] then return {'took', cur[1], cur[3] or ''} end
return {'ok'}
`;
// KEYS[1] record; ARGV[1] conn: deleted only while it still names this connection.
const RELEASE = `
if redis.call('HGET', KEYS[1], 'conn') == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`;
// KEYS[1] record; ARGV[1] conn, ARGV[2] state.
const SET_STATE = `
if redis.call('HGET', KEYS[1], 'conn') == ARGV[1] then return redis.call('HSET', KEYS[1], 'state', ARGV[2]) end
return 0
`;

type ClusterMessage =
  | { t: 'takeover'; clientId: string; connectionId: number }
  | { t: 'deliver'; id: string; replyTo: string; deviceId: string; message: object }
  | { t: 'delivered'; id: string; ok: boolean };

export interface RedisDirectoryOptions {
  url: string;
  instance: string;
  worker: number;
  local: LocalDevices;
  logger: Logger;
  /** Counts cluster events: cluster_takeovers (a connection here closed for a newer one elsewhere). */
  count(event: string): void;
}

export class RedisDeviceDirectory implements DeviceDirectory {
  readonly owner: string;
  readonly #o: RedisDirectoryOptions;
  readonly #link: RedisLink;
  readonly #log: Logger;
  readonly #waiters = new Map<string, (ok: boolean) => void>();
  /** Redis writes per device run in order: a quick disconnect never overtakes its own claim. */
  readonly #queues = new Map<string, Promise<void>>();
  #heartbeat: ReturnType<typeof setInterval> | undefined;
  #refresh: ReturnType<typeof setInterval> | undefined;
  #closed = false;

  constructor(options: RedisDirectoryOptions) {
    this.#o = options;
    // The pid keeps a restarted worker apart from its dead predecessor (whose connection ids it reuses).
    this.owner = `${options.instance}/${options.worker}/${process.pid}`;
    this.#log = options.logger.child({ component: 'directory' });
    this.#link = new RedisLink({
      url: options.url,
      channel: channelOf(this.owner),
      logger: options.logger,
      onMessage: (m) => this.#onMessage(m as ClusterMessage),
      onReconnected: () => {
        void this.#beat();
        void this.reconcile();
      },
    });
  }

  get link(): RedisLink {
    return this.#link;
  }

  async start(): Promise<void> {
    await this.#link.start();
    this.#heartbeat = setInterval(() => void this.#beat(), HEARTBEAT_MS);
    this.#heartbeat.unref();
    this.#refresh = setInterval(() => void this.reconcile(), REFRESH_MS);
    this.#refresh.unref();
  }

  registerMetrics(registry: Registry): void {
    this.#link.registerMetrics(registry, this.#o.worker);
  }

  /** A device connected here: this connection becomes its one live session, cluster-wide. */
  connected(d: LocalDevice): Promise<void> {
    return this.#inOrder(d.deviceId, () => this.#claim(d, 'force'));
  }

  disconnected(d: { deviceId: string; connectionId: number }): Promise<void> {
    return this.#inOrder(d.deviceId, async () => {
      if (!this.#link.up) return;
      try {
        await this.#link.commands.eval(RELEASE, 1, devKey(d.deviceId), this.#conn(d.connectionId));
      } catch (err) {
        this.#link.failed(err as Error, 'release');
      }
    });
  }

  sessionChanged(d: { deviceId: string; connectionId: number; session: string }): Promise<void> {
    return this.#inOrder(d.deviceId, async () => {
      if (!this.#link.up) return;
      try {
        await this.#link.commands.eval(SET_STATE, 1, devKey(d.deviceId), this.#conn(d.connectionId), d.session);
      } catch (err) {
        this.#link.failed(err as Error, 'session state');
      }
    });
  }

  #inOrder(deviceId: string, op: () => Promise<void>): Promise<void> {
    const next = (this.#queues.get(deviceId) ?? Promise.resolve()).then(op, op);
    this.#queues.set(deviceId, next);
    void next.then(() => {
      if (this.#queues.get(deviceId) === next) this.#queues.delete(deviceId);
    });
    return next;
  }

  /** Redis writes still in flight (a drain waits for them before closing the link). */
  async settled(): Promise<void> {
    await Promise.allSettled([...this.#queues.values()]);
  }

  async firmwareSeen(mac: string, version: string): Promise<void> {
    if (!this.#link.up) return;
    try {
      await this.#link.commands.set(PREFIX + 'fw:' + mac, version, 'EX', FIRMWARE_TTL_S);
    } catch (err) {
      this.#link.failed(err as Error, 'firmware');
    }
  }

  async firmwareOf(mac: string): Promise<string | undefined> {
    if (!this.#link.up) return undefined;
    try {
      return (await this.#link.commands.get(PREFIX + 'fw:' + mac)) ?? undefined;
    } catch (err) {
      this.#link.failed(err as Error, 'firmware');
      return undefined;
    }
  }

  /**
   * Cluster-wide per-IP rate, a fixed one-minute window per key: true while this minute's count is
   * within `perMinute`. Tolerance: up to 2 x perMinute across a window boundary. With Redis away
   * it answers true (the local token bucket, checked first, still holds per process).
   */
  async allow(kind: 'connect' | 'ota', ipKey: string, perMinute: number): Promise<boolean> {
    if (!this.#link.up) return true;
    const key = `${PREFIX}rl:${kind}:${ipKey}:${Math.floor(Date.now() / 60_000)}`;
    try {
      const r = await this.#link.commands.multi().incr(key).pexpire(key, 120_000).exec();
      const n = r?.[0]?.[1];
      return typeof n !== 'number' || n <= perMinute;
    } catch (err) {
      this.#link.failed(err as Error, 'rate limit');
      return true;
    }
  }

  /** Every live device record of every live owner. */
  async list(): Promise<DirectoryEntry[]> {
    if (!this.#link.up) throw Object.assign(new Error('Redis is unreachable: the cluster-wide directory cannot be read'), { code: 'ERR_REDIS_DOWN' });
    const keys: string[] = [];
    let cursor = '0';
    do {
      const [next, batch] = await this.#link.commands.scan(cursor, 'MATCH', PREFIX + 'dev:*', 'COUNT', 1000);
      cursor = next;
      keys.push(...batch);
    } while (cursor !== '0');
    const unique = [...new Set(keys)];
    if (unique.length === 0) return [];
    const pipeline = this.#link.commands.pipeline();
    for (const k of unique) pipeline.hgetall(k);
    const records = ((await pipeline.exec()) ?? []).map(([, v]) => v as Record<string, string> | null).filter((r): r is Record<string, string> => !!r && !!r.owner);
    const owners = [...new Set(records.map((r) => r.owner!))];
    const alive = await this.#link.commands.mget(owners.map(aliveKey));
    const live = new Set(owners.filter((_, i) => alive[i] !== null));
    return records.filter((r) => live.has(r.owner!)).map((r) => ({
      deviceId: r.mac!, clientId: r.clientId!, instance: r.instance!, worker: Number(r.worker), session: r.state ?? 'none',
      ...(r.fw ? { firmware: r.fw } : {}),
      connectedSince: new Date(Number(r.since)).toISOString(),
    }));
  }

  async deliver(deviceId: string, message: object): Promise<DeliveryResult> {
    const here = this.#o.local.find(deviceId);
    if (here) return this.#o.local.send(here.clientId, message) ? 'delivered' : 'offline';
    if (!this.#link.up) return 'unavailable';
    const record = await this.#link.commands.hmget(devKey(deviceId), 'owner');
    const owner = record[0];
    if (!owner || owner === this.owner) return 'offline';
    const id = randomUUID();
    const answer = new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => settle(false), DELIVERY_TIMEOUT_MS);
      const settle = (ok: boolean) => {
        clearTimeout(timer);
        this.#waiters.delete(id);
        resolve(ok);
      };
      this.#waiters.set(id, settle);
    });
    const receivers = await this.#link.publish(channelOf(owner), { t: 'deliver', id, replyTo: channelOf(this.owner), deviceId, message } satisfies ClusterMessage)
      .catch((err: Error) => { this.#link.failed(err, 'deliver'); return 0; });
    if (receivers === 0) this.#waiters.get(id)?.(false);
    return (await answer) ? 'delivered' : 'offline';
  }

  /**
   * Re-claims every device connected here (periodically, and when Redis is back): records lost or
   * expired are written again, and where another connection of the same device started later, the
   * one here is the stale one and is closed.
   */
  async reconcile(): Promise<void> {
    if (!this.#link.up || this.#closed) return;
    await Promise.all(this.#o.local.list().map((d) => this.#inOrder(d.deviceId, () => this.#claim(d, 'keep'))));
  }

  async #claim(d: LocalDevice, mode: 'force' | 'keep'): Promise<void> {
    if (!this.#link.up) return;
    let r: unknown;
    try {
      r = await this.#link.commands.eval(
        CLAIM, 1, devKey(d.deviceId), this.#conn(d.connectionId), String(d.connectedAt), String(RECORD_TTL_MS), mode,
        'owner', this.owner, 'instance', this.#o.instance, 'worker', String(this.#o.worker), 'mac', d.deviceId,
        'clientId', d.clientId, 'state', d.session, ...(d.firmware ? ['fw', d.firmware] : []),
      );
    } catch (err) {
      this.#link.failed(err as Error, 'claim');
      return;
    }
    const [verdict, otherConn, otherClientId] = r as [string, string?, string?];
    if (verdict === 'newer') {
      // Another connection of this device started later somewhere: this one is stale.
      this.#o.count('cluster_takeovers');
      this.#log.info({ deviceId: d.deviceId, connection: d.connectionId, newer: otherConn }, 'a newer connection of this device lives elsewhere: closing this one');
      this.#o.local.close(d.clientId, d.connectionId);
      return;
    }
    if (verdict === 'took' && otherConn) {
      const cut = otherConn.lastIndexOf('#');
      const otherOwner = otherConn.slice(0, cut);
      const connectionId = Number(otherConn.slice(cut + 1));
      // The same worker has closed its own old connection already (the broker's takeover).
      if (otherOwner === this.owner) return;
      await this.#link.publish(channelOf(otherOwner), { t: 'takeover', clientId: otherClientId ?? '', connectionId } satisfies ClusterMessage)
        .catch((err: Error) => this.#link.failed(err, 'takeover'));
    }
  }

  #onMessage(m: ClusterMessage): void {
    if (typeof m !== 'object' || m === null) return;
    switch (m.t) {
      case 'takeover':
        if (this.#o.local.close(m.clientId, m.connectionId)) {
          this.#o.count('cluster_takeovers');
          this.#log.info({ clientId: m.clientId, connection: m.connectionId }, 'device connected elsewhere in the cluster: this connection is closed');
        }
        break;
      case 'deliver': {
        const d = this.#o.local.find(m.deviceId);
        const ok = d !== undefined && typeof m.message === 'object' && m.message !== null && this.#o.local.send(d.clientId, m.message);
        void this.#link.publish(m.replyTo, { t: 'delivered', id: m.id, ok } satisfies ClusterMessage).catch((err: Error) => this.#link.failed(err, 'deliver reply'));
        break;
      }
      case 'delivered':
        this.#waiters.get(m.id)?.(m.ok === true);
        break;
    }
  }

  async #beat(): Promise<void> {
    if (!this.#link.up || this.#closed) return;
    try {
      await this.#link.commands.set(aliveKey(this.owner), String(Date.now()), 'PX', ALIVE_TTL_MS);
    } catch (err) {
      this.#link.failed(err as Error, 'heartbeat');
    }
  }

  #conn(connectionId: number): string {
    return `${this.owner}#${connectionId}`;
  }

  /** After the gateway closed its connections (their records are released): leaves the cluster. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.settled();
    clearInterval(this.#heartbeat);
    clearInterval(this.#refresh);
    for (const settle of this.#waiters.values()) settle(false);
    if (this.#link.up) await this.#link.commands.del(aliveKey(this.owner)).catch(() => {});
    await this.#link.close();
  }
}

function devKey(mac: string): string {
  return PREFIX + 'dev:' + mac;
}

function aliveKey(owner: string): string {
  return PREFIX + 'alive:' + owner;
}

function channelOf(owner: string): string {
  return PREFIX + 'to:' + owner;
}
