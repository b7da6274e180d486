// The broker's options: their types, defaults and validation. Everything the constructor of
// MqttBroker accepts is checked here once, with an error naming the option, so the rest of the
// broker works with a complete, valid BrokerConfig.
import type { Logger } from 'pino';
import { describe, rangeError, typeError } from '../native/errors.js';
import { validatePublishTopic } from '../net/mqtt-topics.js';
import { CONFIG_DEFAULTS } from '../config.js';

/** PROTOCOL.md §2: MCP tools/list replies reach ~8 KB; packets of at least 16 KB must pass. */
export const MIN_MAX_PACKET_SIZE = 16_384;
/** CONNECT is parsed before authentication, so it gets a tighter cap than other packets. */
export const MAX_CONNECT_PACKET_SIZE = 8_192;

export interface MqttBrokerLimits {
  /** Open sockets (devices plus connections still before CONNECT). Beyond it sockets are closed at accept. */
  maxConnections: number;
  /** New connections per remote address per minute (token bucket; IPv6 by /64). */
  connectsPerIpPerMinute: number;
  /** Open sockets per remote address at once (IPv6 by /64); beyond it sockets are closed at accept. */
  maxConnectionsPerIp: number;
  /** PUBLISH packets per connection per second (burst: two seconds' worth); the excess is dropped, counted. */
  publishesPerSecond: number;
  /** Largest packet accepted from a device, in bytes (fixed header included); at least 16384. */
  maxPacketSize: number;
  /** Time from accept (TLS: from handshake completion) to a complete CONNECT packet. */
  connectTimeoutMs: number;
  /** CONNECT keepalive must lie in [keepaliveMinS, keepaliveMaxS]; 0 (no keepalive) is refused. */
  keepaliveMinS: number;
  keepaliveMaxS: number;
}

export type MqttAuthOptions = { mode: 'signature'; signatureKey: string } | { mode: 'open' };

export interface MqttBrokerOptions {
  port?: number;
  host?: string;
  tls?: { port?: number; cert: string | Buffer; key: string | Buffer };
  auth: MqttAuthOptions;
  publishTopic?: string;
  limits?: Partial<MqttBrokerLimits>;
  logger: Logger;
  /** Monotonic milliseconds, for the connect rate limiter. */
  clock?: () => number;
  /**
   * The plain TCP listener expects a PROXY protocol v2 header (HAProxy send-proxy-v2) before MQTT:
   * the limits and the identity's remoteAddress use the address it names. Off by default.
   */
  proxyProtocol?: boolean;
  /** A cluster-wide per-IP connect check (Redis) after the local limits, before CONNACK; false refuses with return code 3. */
  clusterAdmit?: (ipKey: string) => Promise<boolean>;
}

export interface BrokerTlsConfig {
  readonly port: number;
  readonly cert: string | Buffer;
  readonly key: string | Buffer;
}

/** MqttBrokerOptions checked and completed with defaults. */
export interface BrokerConfig {
  readonly logger: Logger;
  readonly port: number;
  readonly host: string;
  readonly tls: BrokerTlsConfig | undefined;
  readonly auth: MqttAuthOptions;
  readonly publishTopic: string;
  readonly limits: MqttBrokerLimits;
  readonly clock: () => number;
  readonly proxyProtocol: boolean;
  readonly clusterAdmit: ((ipKey: string) => Promise<boolean>) | undefined;
}

const DEFAULT_LIMITS: MqttBrokerLimits = {
  maxConnections: CONFIG_DEFAULTS.maxConnections,
  connectsPerIpPerMinute: CONFIG_DEFAULTS.connectsPerIpPerMinute,
  maxConnectionsPerIp: CONFIG_DEFAULTS.maxConnectionsPerIp,
  publishesPerSecond: CONFIG_DEFAULTS.publishesPerSecond,
  maxPacketSize: 65_536,
  connectTimeoutMs: 10_000,
  keepaliveMinS: 30,
  keepaliveMaxS: 1_200,
};

function checkInteger(name: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value)) throw typeError('ERR_INVALID_ARG_TYPE', `${name}: expected an integer, got ${describe(value)}`);
  if (value < min || value > max) throw rangeError('ERR_OUT_OF_RANGE', `${name}: expected ${min}..${max}, got ${value}`);
  return value;
}

/** Validates `options` in the order they are documented; throws a coded TypeError or RangeError naming the first bad one. */
export function resolveBrokerConfig(options: MqttBrokerOptions): BrokerConfig {
  if (typeof options !== 'object' || options === null) throw typeError('ERR_INVALID_ARG_TYPE', `options: expected an object, got ${describe(options)}`);
  if (typeof options.logger?.child !== 'function') throw typeError('ERR_INVALID_ARG_TYPE', 'logger: expected a pino logger');
  const port = checkInteger('port', options.port ?? 1883, 0, 65_535);
  const host = options.host ?? '0.0.0.0';
  if (typeof host !== 'string' || host.length === 0) throw typeError('ERR_INVALID_ARG_TYPE', `host: expected a non-empty string, got ${describe(options.host)}`);

  let tls: BrokerTlsConfig | undefined;
  if (options.tls !== undefined) {
    const { cert, key } = options.tls;
    if (!(typeof cert === 'string' || Buffer.isBuffer(cert)) || cert.length === 0) throw typeError('ERR_INVALID_ARG_TYPE', 'tls.cert: expected a PEM string or Buffer');
    if (!(typeof key === 'string' || Buffer.isBuffer(key)) || key.length === 0) throw typeError('ERR_INVALID_ARG_TYPE', 'tls.key: expected a PEM string or Buffer');
    tls = { port: checkInteger('tls.port', options.tls.port ?? 8883, 0, 65_535), cert, key };
  }

  let auth: MqttAuthOptions;
  const given = options.auth as MqttAuthOptions | undefined;
  if (given?.mode === 'signature') {
    if (typeof given.signatureKey !== 'string' || given.signatureKey.length === 0) throw typeError('ERR_INVALID_ARG_TYPE', 'auth.signatureKey: expected a non-empty string');
    auth = { mode: 'signature', signatureKey: given.signatureKey };
  } else if (given?.mode === 'open') {
    auth = { mode: 'open' };
  } else {
    throw typeError('ERR_INVALID_ARG_VALUE', `auth: expected {mode: 'signature', signatureKey} or {mode: 'open'}, got ${describe(given)}`);
  }

  const publishTopic = validatePublishTopic(options.publishTopic ?? CONFIG_DEFAULTS.publishTopic);

  const l = { ...DEFAULT_LIMITS, ...(options.limits ?? {}) };
  const limits: MqttBrokerLimits = {
    maxConnections: checkInteger('limits.maxConnections', l.maxConnections, 1, 10_000_000),
    connectsPerIpPerMinute: checkInteger('limits.connectsPerIpPerMinute', l.connectsPerIpPerMinute, 1, 1_000_000),
    maxConnectionsPerIp: checkInteger('limits.maxConnectionsPerIp', l.maxConnectionsPerIp, 1, 10_000_000),
    publishesPerSecond: checkInteger('limits.publishesPerSecond', l.publishesPerSecond, 1, 100_000),
    maxPacketSize: checkInteger('limits.maxPacketSize', l.maxPacketSize, MIN_MAX_PACKET_SIZE, 268_435_455),
    connectTimeoutMs: checkInteger('limits.connectTimeoutMs', l.connectTimeoutMs, 1, 600_000),
    keepaliveMinS: checkInteger('limits.keepaliveMinS', l.keepaliveMinS, 1, 65_535),
    keepaliveMaxS: checkInteger('limits.keepaliveMaxS', l.keepaliveMaxS, 1, 65_535),
  };
  if (limits.keepaliveMinS > limits.keepaliveMaxS) {
    throw rangeError('ERR_OUT_OF_RANGE', `limits.keepaliveMinS (${limits.keepaliveMinS}) must not exceed limits.keepaliveMaxS (${limits.keepaliveMaxS})`);
  }
  const clock = options.clock ?? (() => performance.now());
  if (typeof clock !== 'function') throw typeError('ERR_INVALID_ARG_TYPE', `clock: expected a function, got ${describe(clock)}`);
  return {
    logger: options.logger,
    port,
    host,
    tls,
    auth,
    publishTopic,
    limits,
    clock,
    proxyProtocol: options.proxyProtocol === true,
    clusterAdmit: options.clusterAdmit,
  };
}
