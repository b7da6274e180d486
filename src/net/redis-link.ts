// One gateway process's link to Redis (`--redis-url`): a command connection and a subscriber
// connection (ioredis), health as metrics (xiaozhi_redis_up, xiaozhi_redis_errors_total) and a
// rate-limited log line, and this process's own pub/sub channel.
//
// Nothing on the per-frame audio path uses this link. Commands never queue while Redis is away
// (enableOfflineQueue off): they fail at once, the caller counts the failure and carries on locally,
// and `onReady` tells the directory to reconcile when Redis is back. An ioredis error is an event
// here, never an exception that escapes.
import { Redis, type RedisOptions } from 'ioredis';
import type { Logger } from 'pino';
import client, { type Registry } from 'prom-client';

/** Reconnect delay after the n-th failed attempt: 100 ms, 200 ms, ... capped at 2 s. */
export function redisRetryDelay(attempt: number): number {
  return Math.min(100 * attempt, 2000);
}

/** At most one "Redis unavailable" log line per this many ms (the counter counts every error). */
const ERROR_LOG_INTERVAL_MS = 10_000;

export interface RedisLinkOptions {
  url: string;
  /** This process's channel: takeovers and deliveries for the devices connected here arrive on it. */
  channel: string;
  logger: Logger;
  onMessage(message: unknown): void;
  /** Redis became reachable (at start, and again after every outage): republish what is local. */
  onReconnected(): void;
}

export class RedisLink {
  readonly commands: Redis;
  readonly #sub: Redis;
  readonly #options: RedisLinkOptions;
  readonly #log: Logger;
  #up = false;
  #everUp = false;
  #wasDown = false;
  #errors = 0;
  #lastErrorLog = -Infinity;
  #suppressed = 0;
  #closed = false;

  constructor(options: RedisLinkOptions) {
    this.#options = options;
    this.#log = options.logger.child({ component: 'redis' });
    const common: RedisOptions = {
      // Fail fast while disconnected: a connect or an OTA request must not wait for Redis.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 0,
      connectTimeout: 2000,
      // A Redis that accepts connections but does not answer (stopped, overloaded) fails the command
      // after a second instead of holding a device's CONNECT or an OTA request.
      commandTimeout: 1000,
      retryStrategy: redisRetryDelay,
      lazyConnect: true,
      connectionName: 'xiaozhi-gateway',
    };
    this.commands = new Redis(options.url, common);
    this.#sub = new Redis(options.url, { ...common, autoResubscribe: false });
    for (const [name, conn] of [['commands', this.commands], ['subscriber', this.#sub]] as const) {
      conn.on('error', (err: Error) => this.failed(err, name));
      conn.on('ready', () => this.#refreshUp());
      conn.on('close', () => this.#refreshUp());
      conn.on('end', () => this.#refreshUp());
    }
    // Subscribed again on every (re)connection: the subscription is this process's inbox.
    this.#sub.on('ready', () => {
      this.#sub.subscribe(options.channel).catch((err: Error) => this.failed(err, 'subscribe'));
    });
    this.#sub.on('message', (_channel: string, text: string) => {
      let message: unknown;
      try {
        message = JSON.parse(text);
      } catch {
        this.failed(new Error('unparseable cluster message'), 'message');
        return;
      }
      try {
        options.onMessage(message);
      } catch (err) {
        this.#log.error({ err }, 'cluster message handler failed');
      }
    });
  }

  /** Connects both connections; resolves when Redis answered or after `waitMs` (then it keeps trying in the background). */
  async start(waitMs = 3000): Promise<boolean> {
    const connect = (c: Redis) => c.connect().catch((err: Error) => this.failed(err, 'connect'));
    void connect(this.commands);
    void connect(this.#sub);
    const deadline = Date.now() + waitMs;
    while (!this.#up && Date.now() < deadline && !this.#closed) await new Promise((r) => setTimeout(r, 20));
    if (!this.#up) this.#log.warn({ url: redactUrl(this.#options.url) }, 'Redis not reachable at start: serving devices locally until it is (see README, Scale out)');
    return this.#up;
  }

  get up(): boolean {
    return this.#up;
  }

  get errors(): number {
    return this.#errors;
  }

  /** Publishes to another process's channel; the number of subscribers that got it (0: nobody listens there). */
  async publish(channel: string, message: unknown): Promise<number> {
    return this.commands.publish(channel, JSON.stringify(message));
  }

  /** Counts a failed Redis operation and logs it at most every 10 s (Redis down is one line, not one per device). */
  failed(err: Error, what: string): void {
    this.#errors++;
    if (this.#closed) return;
    const now = Date.now();
    if (now - this.#lastErrorLog < ERROR_LOG_INTERVAL_MS) {
      this.#suppressed++;
      return;
    }
    this.#lastErrorLog = now;
    this.#log.warn({ err: err.message, what, suppressed: this.#suppressed, errorsTotal: this.#errors }, 'Redis operation failed: serving locally (logged at most every 10 s)');
    this.#suppressed = 0;
  }

  registerMetrics(registry: Registry, worker: number | undefined): void {
    const labels = worker === undefined ? {} : { worker: String(worker) };
    const self = this;
    new client.Gauge({
      name: 'xiaozhi_redis_up', help: 'Whether this process reaches Redis (1) or serves locally without it (0).',
      labelNames: worker === undefined ? [] : ['worker'], registers: [registry],
      collect() { this.set(labels, self.#up ? 1 : 0); },
    });
    new client.Counter({
      name: 'xiaozhi_redis_errors_total', help: 'Redis operations that failed (connection errors included).',
      registers: [registry],
      collect() { this.reset(); this.inc(self.#errors); },
    });
  }

  #refreshUp(): void {
    const up = this.commands.status === 'ready' && this.#sub.status === 'ready';
    if (up === this.#up) return;
    this.#up = up;
    if (!up) {
      if (!this.#closed) {
        this.#wasDown = true;
        this.#log.warn('Redis connection lost: devices keep talking; new connections are served locally and reconciled when Redis is back');
      }
      return;
    }
    // Every arrival counts, the first one too: devices accepted while Redis was unreachable at
    // start are published now, like those accepted during an outage.
    if (this.#everUp || this.#wasDown) this.#log.info('Redis reachable again: republishing this process\'s devices');
    this.#wasDown = false;
    {
      try {
        this.#options.onReconnected();
      } catch (err) {
        this.#log.error({ err }, 'reconcile after Redis came back failed');
      }
    }
    this.#everUp = true;
  }

  async close(): Promise<void> {
    this.#closed = true;
    await Promise.allSettled([this.commands.quit(), this.#sub.quit()]);
    this.commands.disconnect();
    this.#sub.disconnect();
  }
}

/** A Redis URL without its password, for log lines. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '(unparseable URL)';
  }
}
