// The OTA / activation endpoint the firmware asks at every boot (PROTOCOL.md §1): POST (or GET when
// it has no system info) to /xiaozhi/ota/ with headers Device-Id (MAC), Client-Id (board uuid),
// User-Agent (<board>/<version>), Activation-Version, and a JSON body of system info.
//
// The reply tells the device where and how to connect over MQTT:
//   {"mqtt": {"endpoint", "client_id", "username", "password", "publish_topic", "keepalive"},
//    "server_time": {"timestamp": <ms>, "timezone_offset": <minutes>},
//    "firmware": {"version", "url", "force": 0|1}}            (only when an upgrade is offered)
// No "activation" (no activation flow) and no "websocket" (pure MQTT + UDP deployment).
//
// Firmware facts this follows (read from the firmware sources, v1.6 - v2.4):
// - Every string/number member of "mqtt" is written to the device's settings as-is; members not
//   sent are never erased, so every member the gateway relies on is always sent. Names <= 15 chars.
// - "endpoint" is split at the first ':' (v1.6.2+); v1.6.0/1.6.1 use it as a bare host name and
//   always connect with TLS to port 8883. TLS is used if and only if the port is 8883. Hence: with
//   TLS on 8883 the endpoint is the bare host (works for every version); otherwise "host:port".
//   The host cannot be an IPv6 literal (its ':' would be taken as the port separator).
// - "firmware.force" is honoured only as the number 1.
// - Client-Id is sent since v1.5; older firmware has only the body's "uuid", used as a fallback.
//
// Credentials: in signature mode the password is the HMAC the broker verifies. In open mode there
// is no secret; the reply still carries a username and a random password (never checked), so the
// device's stored settings have the same shape in both modes.
import type http from 'node:http';
import type { Logger } from 'pino';
import { CONFIG_DEFAULTS } from '../config.js';
import { describe, rangeError, typeError } from '../native/errors.js';
import {
  buildClientId,
  isGroup,
  isUuid,
  issueCredentials,
  issueOpenCredentials,
  normalizeMac,
} from './credentials.js';
import { ipLimitKey, normalizeIp } from '../net/address.js';
import { LogBudget } from '../net/log-budget.js';
import { validatePublishTopic } from '../net/mqtt-topics.js';
import { KeyedRateLimiter } from '../net/rate-limit.js';

export const OTA_PATHS: readonly string[] = ['/xiaozhi/ota/', '/xiaozhi/ota'];
export const DEFAULT_MAX_BODY_BYTES = 64 * 1024;
/** The firmware uses TLS exactly when the endpoint port is 8883. */
export const TLS_PORT = 8883;

export interface FirmwareOffer {
  version: string;
  url: string;
  /** Install even if not newer than the running version. */
  force?: boolean;
}

/** What the gateway knows about the asking device; passed to a `firmware` function. */
export interface OtaDeviceInfo {
  mac: string;
  uuid: string;
  /** Board name from User-Agent "<board>/<version>". */
  board?: string;
  /** Firmware version from User-Agent, or body.application.version. */
  firmwareVersion?: string;
  userAgent?: string;
  activationVersion?: string;
  remoteIp: string;
  /** The parsed JSON body, if any. */
  body?: Record<string, unknown>;
}

export interface OtaHandlerOptions {
  /** Host name or IPv4 address devices reach the broker at (no port, no IPv6 literal). */
  publicHost: string;
  /** Public port of the plain MQTT listener (used when useTls is false). */
  mqttPort: number;
  /** Public port of the TLS listener; defaults to mqttPort when useTls is set. Should be 8883. */
  mqttTlsPort?: number;
  useTls?: boolean;
  /** Signature secret; undefined = open auth mode (random, unchecked passwords). */
  signatureKey?: string;
  /** Group in the client id, without "GID_". Default 'xiaozhi'. */
  group?: string;
  publishTopic?: string;
  /** Seconds; the firmware's own default is 240. */
  keepalive?: number;
  timezoneOffsetMinutes?: number;
  firmware?: FirmwareOffer | ((device: OtaDeviceInfo) => FirmwareOffer | undefined);
  logger: Logger;
  /** Wall-clock milliseconds since the epoch, for server_time. Default Date.now. */
  clock?: () => number;
  maxBodyBytes?: number;
  /** Take the client address from the first X-Forwarded-For entry (only behind a trusted proxy). */
  trustProxy?: boolean;
  /** The client address of a request (X-Forwarded-For from trusted proxies, src/net/forwarded.ts); overrides trustProxy. */
  clientAddress?: (req: http.IncomingMessage) => string;
  /** A cluster-wide per-IP check after the local limiter (Redis); false answers 429. */
  admit?: (ipKey: string) => Promise<boolean>;
  /** Called for every configured device (e.g. to remember its firmware version for its sessions). */
  onDevice?: (device: OtaDeviceInfo) => void;
  /** Requests per client IP (IPv6: per /64) per minute; beyond it 429 with Retry-After. Default 120. */
  requestsPerIpPerMinute?: number;
  /** Monotonic milliseconds for the rate limit. Default performance.now. */
  now?: () => number;
  /** Counts refused and failed requests: `ota_rate_limited`, `ota_rejected` (4xx), `ota_client_gone` (hung up mid-request), `ota_errors` (5xx). */
  count?: (event: OtaCounter) => void;
}

export type OtaCounter = 'ota_rate_limited' | 'ota_rejected' | 'ota_client_gone' | 'ota_errors';

/** Rejected requests are logged at most this many times a minute in all (then only counted). */
const REJECT_LOG_LINES_PER_MINUTE = 30;

/**
 * Firmware version per device MAC, as last seen at OTA (the User-Agent "<board>/<version>", else
 * body.application.version). The MQTT hello does not carry it, and the device asks OTA at every
 * boot, so sessions look it up here. Bounded: the oldest entries go first.
 */
export class FirmwareVersions {
  readonly #m = new Map<string, string>();
  constructor(readonly max = 10_000) {}

  set(mac: string, version: string): void {
    this.#m.delete(mac);
    this.#m.set(mac, version);
    if (this.#m.size > this.max) this.#m.delete(this.#m.keys().next().value!);
  }

  get(mac: string): string | undefined {
    return this.#m.get(mac);
  }

  get size(): number {
    return this.#m.size;
  }
}

export interface OtaReply {
  mqtt: {
    endpoint: string;
    client_id: string;
    username: string;
    password: string;
    publish_topic: string;
    keepalive: number;
  };
  server_time: { timestamp: number; timezone_offset: number };
  firmware?: { version: string; url: string; force: 0 | 1 };
}

export type OtaRequestHandler = (req: http.IncomingMessage, res: http.ServerResponse) => void;

class HttpError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

/** The client went away before its request was complete: nobody to answer, not our failure. */
class ClientGone extends Error {}

function shown(value: string): string {
  return JSON.stringify(value.length > 40 ? value.slice(0, 40) + '…' : value);
}

function header(req: http.IncomingMessage, name: string): string | undefined {
  const value = req.headers[name];
  if (Array.isArray(value)) return value.join(', ');
  return value === undefined ? undefined : value.trim();
}

function checkPort(name: string, value: unknown): number {
  if (typeof value !== 'number' || !Number.isInteger(value)) throw typeError('ERR_INVALID_ARG_TYPE', `${name}: expected an integer port, got ${describe(value)}`);
  if (value < 1 || value > 65_535) throw rangeError('ERR_OUT_OF_RANGE', `${name}: expected 1..65535, got ${value}`);
  return value;
}

function checkHost(value: unknown): string {
  if (typeof value !== 'string' || value.length === 0) throw typeError('ERR_INVALID_ARG_TYPE', `publicHost: expected a non-empty host name or IPv4 address, got ${describe(value)}`);
  if (value.includes(':')) throw rangeError('ERR_INVALID_HOST', `publicHost: must not contain ':' (the firmware splits the endpoint at the first ':'; IPv6 literals and ports are not possible here), got ${shown(value)}`);
  if (value.length > 253 || !/^[A-Za-z0-9.-]+$/.test(value)) throw rangeError('ERR_INVALID_HOST', `publicHost: expected a DNS name or IPv4 address, got ${shown(value)}`);
  return value;
}

function validateOffer(offer: unknown, where: string): FirmwareOffer {
  if (typeof offer !== 'object' || offer === null) throw typeError('ERR_INVALID_ARG_TYPE', `${where}: expected {version, url, force?}, got ${describe(offer)}`);
  const { version, url, force } = offer as Record<string, unknown>;
  if (typeof version !== 'string' || !/^\d+(\.\d+)*$/.test(version)) throw rangeError('ERR_INVALID_ARG_VALUE', `${where}.version: expected dotted numbers like "2.4.2" (the firmware compares them numerically), got ${typeof version === 'string' ? shown(version) : describe(version)}`);
  if (typeof url !== 'string' || !/^https?:\/\/\S+$/.test(url)) throw rangeError('ERR_INVALID_ARG_VALUE', `${where}.url: expected an http(s) URL, got ${typeof url === 'string' ? shown(url) : describe(url)}`);
  if (force !== undefined && typeof force !== 'boolean') throw typeError('ERR_INVALID_ARG_TYPE', `${where}.force: expected a boolean, got ${describe(force)}`);
  return { version, url, force: force === true };
}

/** "board-name/1.2.3" -> {board, version}; anything else -> {}. */
function parseUserAgent(ua: string | undefined): { board?: string; version?: string } {
  if (!ua) return {};
  const slash = ua.indexOf('/');
  if (slash <= 0) return { board: ua.slice(0, 64) };
  return { board: ua.slice(0, slash).slice(0, 64), version: ua.slice(slash + 1).split(/\s/)[0]!.slice(0, 32) };
}

export function createOtaHandler(options: OtaHandlerOptions): OtaRequestHandler {
  if (typeof options !== 'object' || options === null) throw typeError('ERR_INVALID_ARG_TYPE', `options: expected an object, got ${describe(options)}`);
  if (typeof options.logger?.child !== 'function') throw typeError('ERR_INVALID_ARG_TYPE', 'logger: expected a pino logger');
  const log = options.logger;
  const publicHost = checkHost(options.publicHost);
  const useTls = options.useTls === true;
  const port = useTls ? checkPort('mqttTlsPort', options.mqttTlsPort ?? options.mqttPort) : checkPort('mqttPort', options.mqttPort);
  if (!useTls && port === TLS_PORT) {
    throw rangeError('ERR_INVALID_ARG_VALUE', `mqttPort: ${TLS_PORT} without TLS cannot work: the firmware always uses TLS on port ${TLS_PORT}`);
  }
  if (useTls && port !== TLS_PORT) {
    log.warn({ port }, `OTA: TLS endpoint port is not ${TLS_PORT}; the firmware uses TLS only on port ${TLS_PORT} and will connect without TLS`);
  }
  // Bare host on 8883: understood by every firmware version, including v1.6.0/1.6.1 (see top).
  const endpoint = port === TLS_PORT ? publicHost : `${publicHost}:${port}`;

  const signatureKey = options.signatureKey;
  if (signatureKey !== undefined && (typeof signatureKey !== 'string' || signatureKey.length === 0)) {
    throw typeError('ERR_INVALID_ARG_TYPE', 'signatureKey: expected a non-empty string or undefined (open mode)');
  }
  const group = options.group ?? 'xiaozhi';
  if (!isGroup(group)) throw rangeError('ERR_INVALID_GROUP', `group: expected 1-64 characters of [A-Za-z0-9_.-], got ${typeof group === 'string' ? shown(group) : describe(group)}`);
  const publishTopic = validatePublishTopic(options.publishTopic ?? CONFIG_DEFAULTS.publishTopic);
  const keepalive = options.keepalive ?? CONFIG_DEFAULTS.keepaliveS;
  if (!Number.isInteger(keepalive) || keepalive < 1 || keepalive > 65_535) throw rangeError('ERR_OUT_OF_RANGE', `keepalive: expected an integer 1..65535 seconds, got ${describe(keepalive)}`);
  const timezoneOffset = options.timezoneOffsetMinutes ?? CONFIG_DEFAULTS.timezoneOffsetMinutes;
  if (!Number.isInteger(timezoneOffset) || timezoneOffset < -720 || timezoneOffset > 840) throw rangeError('ERR_OUT_OF_RANGE', `timezoneOffsetMinutes: expected an integer -720..840, got ${describe(timezoneOffset)}`);
  const clock = options.clock ?? Date.now;
  const maxBodyBytes = options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  if (!Number.isInteger(maxBodyBytes) || maxBodyBytes < 1024) throw rangeError('ERR_OUT_OF_RANGE', `maxBodyBytes: expected an integer >= 1024, got ${describe(maxBodyBytes)}`);
  const staticOffer = typeof options.firmware === 'function' || options.firmware === undefined ? undefined : validateOffer(options.firmware, 'firmware');
  const offerFor = typeof options.firmware === 'function' ? options.firmware : undefined;
  const now = options.now ?? (() => performance.now());
  const perIp = options.requestsPerIpPerMinute ?? CONFIG_DEFAULTS.otaRequestsPerIpPerMinute;
  if (!Number.isInteger(perIp) || perIp < 1) throw rangeError('ERR_OUT_OF_RANGE', `requestsPerIpPerMinute: expected a positive integer, got ${describe(perIp)}`);
  const limiter = new KeyedRateLimiter({ perMinute: perIp, now });
  const count = options.count ?? (() => {});
  const rejected = new LogBudget(log, REJECT_LOG_LINES_PER_MINUTE, now);
  if (signatureKey === undefined) log.warn('OTA: open auth mode: handing out unsigned credentials (the broker must run with auth mode "open")');

  function reply(res: http.ServerResponse, status: number, body: unknown, extraHeaders: Record<string, string> = {}): void {
    if (res.headersSent) return;
    const text = JSON.stringify(body);
    res.writeHead(status, {
      'content-type': 'application/json; charset=utf-8',
      'content-length': Buffer.byteLength(text),
      // The reply carries credentials.
      'cache-control': 'no-store',
      ...extraHeaders,
    });
    res.end(text);
  }

  function readBody(req: http.IncomingMessage): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      const declared = Number(req.headers['content-length'] ?? NaN);
      if (Number.isFinite(declared) && declared > maxBodyBytes) {
        reject(new HttpError(413, `request body of ${declared} bytes exceeds the limit of ${maxBodyBytes}`));
        return;
      }
      const chunks: Buffer[] = [];
      let size = 0;
      let done = false;
      req.on('data', (chunk: Buffer) => {
        if (done) return;
        size += chunk.length;
        if (size > maxBodyBytes) {
          done = true;
          chunks.length = 0;
          reject(new HttpError(413, `request body exceeds the limit of ${maxBodyBytes} bytes`));
          return;
        }
        chunks.push(chunk);
      });
      req.on('end', () => {
        if (done) return;
        done = true;
        resolve(Buffer.concat(chunks, size));
      });
      req.on('error', (err) => {
        if (done) return;
        done = true;
        reject(new ClientGone(err.message));
      });
    });
  }

  function parseBody(raw: Buffer): Record<string, unknown> | undefined {
    const text = raw.toString('utf8');
    if (text.trim().length === 0) return undefined;
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch (err) {
      throw new HttpError(400, `request body is not valid JSON: ${(err as Error).message}`);
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
      throw new HttpError(400, `request body must be a JSON object, got ${Array.isArray(parsed) ? 'an array' : parsed === null ? 'null' : typeof parsed}`);
    }
    return parsed as Record<string, unknown>;
  }

  function remoteIpOf(req: http.IncomingMessage): string {
    if (options.clientAddress) return options.clientAddress(req);
    if (options.trustProxy) {
      const forwarded = header(req, 'x-forwarded-for')?.split(',')[0]?.trim();
      if (forwarded) return normalizeIp(forwarded);
    }
    return normalizeIp(req.socket.remoteAddress ?? 'unknown');
  }

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0]!;
    if (!OTA_PATHS.includes(path)) throw new HttpError(404, `not found: the OTA path is ${OTA_PATHS[0]}`);
    const ipKey = ipLimitKey(remoteIpOf(req));
    if (!limiter.tryConsume(ipKey) || (options.admit && !(await options.admit(ipKey)))) {
      count('ota_rate_limited');
      reply(res, 429, { error: `too many OTA requests from this address: at most ${perIp} per minute` }, { 'retry-after': '60', connection: 'close' });
      res.once('finish', () => req.destroy());
      return;
    }
    if (req.method !== 'GET' && req.method !== 'POST') {
      count('ota_rejected');
      reply(res, 405, { error: `method ${req.method} not allowed: use POST (with system info) or GET` }, { allow: 'GET, POST' });
      req.resume();
      return;
    }

    const deviceId = header(req, 'device-id');
    if (deviceId === undefined || deviceId.length === 0) throw new HttpError(400, 'missing Device-Id header (the device MAC, e.g. aa:bb:cc:dd:ee:ff)');
    let mac: string;
    try {
      mac = normalizeMac(deviceId);
    } catch {
      throw new HttpError(400, `invalid Device-Id header: expected a MAC like aa:bb:cc:dd:ee:ff, got ${shown(deviceId)}`);
    }
    const clientIdHeader = header(req, 'client-id');
    if (clientIdHeader !== undefined && clientIdHeader.length > 0 && !isUuid(clientIdHeader)) {
      throw new HttpError(400, `invalid Client-Id header: expected the board UUID (8-4-4-4-12 hex digits), got ${shown(clientIdHeader)}`);
    }

    const body = parseBody(await readBody(req));

    let uuid = clientIdHeader !== undefined && clientIdHeader.length > 0 ? clientIdHeader : undefined;
    if (uuid === undefined) {
      // Firmware before v1.5 sends no Client-Id header; its body carries the same uuid.
      const bodyUuid = body?.['uuid'];
      if (bodyUuid === undefined) throw new HttpError(400, 'missing Client-Id header (the board UUID), and the body has no "uuid"');
      if (!isUuid(bodyUuid)) throw new HttpError(400, `missing Client-Id header, and body "uuid" is not a UUID: ${typeof bodyUuid === 'string' ? shown(bodyUuid) : describe(bodyUuid)}`);
      uuid = bodyUuid;
    }

    const userAgent = header(req, 'user-agent');
    const ua = parseUserAgent(userAgent);
    const application = body?.['application'];
    const appVersion = typeof application === 'object' && application !== null ? (application as Record<string, unknown>)['version'] : undefined;
    const remoteIp = remoteIpOf(req);
    const activationVersion = header(req, 'activation-version');
    const bodyMac = body?.['mac_address'];
    if (typeof bodyMac === 'string' && bodyMac.toLowerCase() !== mac) {
      log.warn({ mac, bodyMac: bodyMac.slice(0, 40) }, 'OTA: body mac_address differs from the Device-Id header; using the header');
    }

    const info: OtaDeviceInfo = {
      mac,
      uuid,
      remoteIp,
      ...(ua.board !== undefined ? { board: ua.board } : {}),
      ...(ua.version !== undefined ? { firmwareVersion: ua.version } : typeof appVersion === 'string' ? { firmwareVersion: appVersion.slice(0, 32) } : {}),
      ...(userAgent !== undefined ? { userAgent } : {}),
      ...(activationVersion !== undefined ? { activationVersion } : {}),
      ...(body !== undefined ? { body } : {}),
    };

    const clientId = buildClientId({ group, mac, uuid });
    const credentials = signatureKey !== undefined
      ? issueCredentials({ clientId, remoteIp, signatureKey })
      : issueOpenCredentials({ remoteIp });

    const result: OtaReply = {
      mqtt: {
        endpoint,
        client_id: clientId,
        username: credentials.username,
        password: credentials.password,
        publish_topic: publishTopic,
        keepalive,
      },
      server_time: { timestamp: Math.round(clock()), timezone_offset: timezoneOffset },
    };

    let offer = staticOffer;
    if (offerFor) {
      const chosen = offerFor(info);
      offer = chosen === undefined ? undefined : validateOffer(chosen, 'firmware()');
    }
    if (offer) result.firmware = { version: offer.version, url: offer.url, force: offer.force ? 1 : 0 };
    options.onDevice?.(info);

    log.info({
      method: req.method, mac, uuid, remoteIp, board: info.board, firmwareVersion: info.firmwareVersion,
      activationVersion, firmwareOffered: offer?.version,
    }, 'OTA: device configured');
    reply(res, 200, result);
  }

  return (req, res) => {
    handle(req, res).catch((err: unknown) => {
      if (err instanceof ClientGone) {
        count('ota_client_gone');
        req.destroy();
        return;
      }
      if (err instanceof HttpError) {
        count('ota_rejected');
        rejected.info({ status: err.status, remoteIp: remoteIpOf(req), error: err.message }, 'OTA: request rejected');
        if (err.status === 413) {
          // Stop reading an oversized body: answer, then close the connection.
          reply(res, 413, { error: err.message }, { connection: 'close' });
          res.once('finish', () => req.destroy());
          return;
        }
        reply(res, err.status, { error: err.message });
        req.resume();
        return;
      }
      count('ota_errors');
      log.error({ err }, 'OTA: request failed');
      reply(res, 500, { error: 'internal error' });
      req.resume();
    }).catch((err: unknown) => {
      // Answering failed too (the socket is gone): nothing to tell the client, never an unhandled rejection.
      count('ota_errors');
      log.debug({ err }, 'OTA: could not answer');
      req.destroy();
    });
  };
}
