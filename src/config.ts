// Gateway configuration: defaults < config file (JSON) < environment (XIAOZHI_*) < command-line
// flags, validated with one schema. Errors name the key, the expected value and where it came from.
import { readFileSync } from 'node:fs';
import { availableParallelism, networkInterfaces } from 'node:os';
import { z } from 'zod';
import { trustedProxyList } from './net/forwarded.js';
import { publishTopicProblem } from './net/mqtt-topics.js';

const port = z.number().int().min(0).max(65535);

export const configSchema = z
  .object({
    mqttPort: port.default(1883),
    mqttHost: z.string().default('0.0.0.0'),
    mqttTls: z
      .object({ port: port.default(8883), certFile: z.string().min(1), keyFile: z.string().min(1) })
      .strict()
      .optional(),
    udpPort: port.default(8888),
    udpHost: z.string().default('0.0.0.0'),
    httpPort: port.default(8003),
    httpHost: z.string().default('0.0.0.0'),
    /** Host handed to devices (OTA endpoint, hello reply udp.server): IPv4 or DNS name. */
    publicHost: z.string().min(1).optional(),
    /** UDP port handed to devices when a NAT/forward maps it differently (default: udpPort). */
    publicUdpPort: port.optional(),
    /** MQTT port handed to devices by OTA when a load balancer or NAT listens on another one (default: mqttPort). */
    publicMqttPort: port.optional(),
    auth: z.enum(['signature', 'open']).default('signature'),
    /** HMAC key for device credentials; generated per process when unset (devices redo OTA after a restart). */
    signatureKey: z.string().min(16, 'signatureKey must be at least 16 characters').optional(),
    agent: z.enum(['echo', 'livekit']).default('echo'),
    /** Topic devices publish to (the broker refuses every other); the rule is net/mqtt-topics.ts. */
    publishTopic: z.string().superRefine((topic, ctx) => {
      const problem = publishTopicProblem(topic);
      if (problem) ctx.addIssue({ code: 'custom', message: `publishTopic: ${problem}` });
    }).default('device-server'),
    keepaliveS: z.number().int().min(30).max(1200).default(240),
    udpTimeoutS: z.number().positive().max(86400).default(120),
    udpRequireMqttIp: z.boolean().default(true),
    uplinkPacketsPerSecond: z.number().int().min(17).max(1000).default(50),
    maxConnections: z.number().int().min(1).default(10000),
    /** New MQTT connections per source IP per minute (many devices can share one NAT address). */
    connectsPerIpPerMinute: z.number().int().min(1).default(300),
    /** Open MQTT connections per source IP at once (IPv6: per /64); a school's NAT may hold hundreds of devices. */
    maxConnectionsPerIp: z.number().int().min(1).default(1000),
    /** PUBLISH messages per device connection per second (burst 2 s); the firmware sends a few per turn. */
    publishesPerSecond: z.number().int().min(1).max(10000).default(20),
    /** Hellos per device connection per minute (each opens native streams and an agent session). */
    hellosPerMinute: z.number().int().min(1).max(10000).default(20),
    /** OTA requests per source IP per minute (IPv6: per /64); a device asks once per boot. */
    otaRequestsPerIpPerMinute: z.number().int().min(1).max(1000000).default(300),
    /**
     * Admission control: refuse new sessions ("gateway busy") while the machine's CPU or this
     * process's event-loop delay is past its threshold. 'auto': on for the LiveKit agent (where a
     * session costs a real share of a core), off for the echo agent.
     */
    admission: z.enum(['auto', 'on', 'off']).default('auto'),
    /** Machine CPU utilisation (0..1) from which new sessions are refused (with admission on). */
    admissionMaxCpu: z.number().min(0.1).max(1).default(0.85),
    /** Event-loop delay p99 (ms) from which new sessions are refused (with admission on). */
    admissionMaxEventLoopLagMs: z.number().min(1).max(10000).default(40),
    /** Audio sessions at once in this process; beyond it new hellos get "gateway busy". 0 = no cap. */
    maxSessions: z.number().int().min(0).default(0),
    /** Log lines per device connection per minute about its rejected input; then one summary line. */
    logLinesPerMinute: z.number().int().min(1).max(100000).default(20),
    /**
     * Gateway processes on this machine: 1 is one process (no supervisor); N > 1 is a primary that
     * supervises N shared-nothing workers (src/cluster/); 'auto' is one per available core.
     */
    workers: z.union([z.number().int().min(1).max(256), z.literal('auto')]).default(1),
    /**
     * Replace a worker process after it has accepted this many audio sessions (0 = never). The
     * LiveKit client library keeps some native memory for every room it ever joined; recycling
     * bounds a worker's memory. The old worker takes no new connection, lets its devices finish
     * their conversations, closes idle ones (they reconnect to the others) and exits; its
     * replacement starts at once on one spare UDP port. Runs the supervisor even with one worker.
     */
    recycleAfterSessions: z.number().int().min(0).default(0),
    /**
     * With recycling on: a worker is also recycled once @livekit/rtc-node retains this many audio
     * sources of closed sessions (rooms the server ended: each keeps a thread waking every 10 ms,
     * ≈ 0.26 % of a core; src/livekit/rtc-retention.ts), however few sessions it has had. 0: off.
     */
    recycleRetainedSources: z.number().int().min(0).default(50),
    /** How long a recycled worker waits for its devices' conversations to end before it says goodbye to the rest. */
    recycleDrainS: z.number().int().min(1).max(86400).default(600),
    /**
     * Redis (any Redis >= 6.2 or Valkey) joining this instance's workers with other instances into
     * one cluster: one live session per device, shared firmware facts and per-IP limits, the device
     * directory (src/device/directory-redis.ts). Needs a configured signatureKey.
     */
    redisUrl: z.string().regex(/^rediss?:\/\//, 'redisUrl must start with redis:// or rediss://').optional(),
    /** This instance's name in the device directory; default <hostname>-<pid of the primary>. */
    instanceId: z.string().min(1).max(128).regex(/^[^/#\s]+$/, "instanceId must not contain '/', '#' or spaces").optional(),
    /** Bearer token for GET /devices and POST /devices/{id}/messages; without it these routes are off. */
    adminToken: z.string().min(16, 'adminToken must be at least 16 characters').optional(),
    /** The MQTT listener expects a PROXY protocol v2 header first (behind HAProxy's send-proxy-v2). */
    proxyProtocol: z.boolean().default(false),
    /** Addresses or CIDR blocks (comma-separated) whose X-Forwarded-For the OTA endpoint believes. */
    trustedProxies: z.string().default(''),
    logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
    shutdownTimeoutMs: z.number().int().min(100).max(60000).default(9000),
    timezoneOffsetMinutes: z.number().int().min(-720).max(840).default(0),
    // --- agent 'livekit' (src/livekit/): server and credentials as every LiveKit tool reads them ---
    /** LiveKit server URL (wss://<project>.livekit.cloud or ws://host:7880); env LIVEKIT_URL. */
    livekitUrl: z.string().regex(/^(wss?|https?):\/\//, 'livekitUrl must start with ws://, wss://, http:// or https://').optional(),
    livekitApiKey: z.string().min(1).optional(),
    livekitApiSecret: z.string().min(1).optional(),
    /** Room per device session; placeholders {device} (MAC, hex only), {deviceId}, {clientId}, {session}. */
    livekitRoomTemplate: z.string().min(1).default('xiaozhi-{device}-{session}'),
    /** Agent to dispatch explicitly (LiveKit Agents `agent_name`); empty: rely on automatic dispatch. */
    livekitAgentName: z.string().default(''),
    /** How the named agent is dispatched: in the participant token's room configuration, or with the AgentDispatch API. */
    livekitDispatch: z.enum(['token', 'api']).default('token'),
    /** No agent in the room after this long: alert + goodbye to the device. */
    livekitAgentJoinTimeoutMs: z.number().int().min(1000).max(600000).default(20000),
    /** RPC method the device participant registers for the agent's MCP JSON-RPC calls. */
    livekitMcpMethod: z.string().min(1).default('xiaozhi.mcp'),
    /** How long the device gets to answer an MCP request before the RPC fails with RESPONSE_TIMEOUT. */
    livekitMcpTimeoutMs: z.number().int().min(100).max(60000).default(8000),
    /** Microphone audio held while the room reconnects (older audio dropped first). */
    livekitReconnectBufferMs: z.number().int().min(0).max(10000).default(1000),
  })
  .strict();

/**
 * Every default, as the schema gives it: the one place a default lives. Modules that also run
 * without a GatewayConfig (the broker, the OTA handler, in tests and embedding) fall back to these.
 */
export const CONFIG_DEFAULTS = Object.freeze(configSchema.parse({}));

/** UDP ports a gateway binds from udpPort on: one per worker, plus a spare when workers are recycled. */
export function udpPortCount(c: { workers: number; recycleAfterSessions: number }): number {
  return c.workers + (c.recycleAfterSessions > 0 ? 1 : 0);
}

/** 'auto' workers is resolved to a count by loadConfig. */
export type GatewayConfig = Omit<z.infer<typeof configSchema>, 'workers'> & { publicHost: string; workers: number };
export type GatewayConfigInput = z.input<typeof configSchema>;

export class ConfigError extends Error {
  readonly code = 'ERR_CONFIG';
}

type ConfigKind = 'number' | 'string' | 'boolean' | 'number|auto';

/** Flags and environment variables, and the config key each sets. */
export const CONFIG_SOURCES: ReadonlyArray<{ key: keyof GatewayConfigInput; flag: string; env: string; kind: ConfigKind }> = [
  { key: 'mqttPort', flag: '--mqtt-port', env: 'XIAOZHI_MQTT_PORT', kind: 'number' },
  { key: 'udpPort', flag: '--udp-port', env: 'XIAOZHI_UDP_PORT', kind: 'number' },
  { key: 'httpPort', flag: '--http-port', env: 'XIAOZHI_HTTP_PORT', kind: 'number' },
  { key: 'publicHost', flag: '--public-host', env: 'XIAOZHI_PUBLIC_HOST', kind: 'string' },
  { key: 'auth', flag: '--auth', env: 'XIAOZHI_AUTH', kind: 'string' },
  { key: 'signatureKey', flag: '--signature-key', env: 'XIAOZHI_SIGNATURE_KEY', kind: 'string' },
  { key: 'agent', flag: '--agent', env: 'XIAOZHI_AGENT', kind: 'string' },
  { key: 'logLevel', flag: '--log-level', env: 'XIAOZHI_LOG_LEVEL', kind: 'string' },
  { key: 'udpTimeoutS', flag: '--udp-timeout', env: 'XIAOZHI_UDP_TIMEOUT_S', kind: 'number' },
  { key: 'maxConnections', flag: '--max-connections', env: 'XIAOZHI_MAX_CONNECTIONS', kind: 'number' },
  { key: 'maxConnectionsPerIp', flag: '--max-connections-per-ip', env: 'XIAOZHI_MAX_CONNECTIONS_PER_IP', kind: 'number' },
  { key: 'connectsPerIpPerMinute', flag: '--connects-per-ip-per-minute', env: 'XIAOZHI_CONNECTS_PER_IP_PER_MINUTE', kind: 'number' },
  { key: 'otaRequestsPerIpPerMinute', flag: '--ota-per-ip-per-minute', env: 'XIAOZHI_OTA_PER_IP_PER_MINUTE', kind: 'number' },
  { key: 'publishesPerSecond', flag: '--publishes-per-second', env: 'XIAOZHI_PUBLISHES_PER_SECOND', kind: 'number' },
  { key: 'hellosPerMinute', flag: '--hellos-per-minute', env: 'XIAOZHI_HELLOS_PER_MINUTE', kind: 'number' },
  { key: 'admission', flag: '--admission', env: 'XIAOZHI_ADMISSION', kind: 'string' },
  { key: 'admissionMaxCpu', flag: '--admission-max-cpu', env: 'XIAOZHI_ADMISSION_MAX_CPU', kind: 'number' },
  { key: 'admissionMaxEventLoopLagMs', flag: '--admission-max-lag-ms', env: 'XIAOZHI_ADMISSION_MAX_LAG_MS', kind: 'number' },
  { key: 'maxSessions', flag: '--max-sessions', env: 'XIAOZHI_MAX_SESSIONS', kind: 'number' },
  { key: 'workers', flag: '--workers', env: 'XIAOZHI_WORKERS', kind: 'number|auto' },
  { key: 'recycleAfterSessions', flag: '--recycle-after-sessions', env: 'XIAOZHI_RECYCLE_AFTER_SESSIONS', kind: 'number' },
  { key: 'recycleRetainedSources', flag: '--recycle-retained-sources', env: 'XIAOZHI_RECYCLE_RETAINED_SOURCES', kind: 'number' },
  { key: 'recycleDrainS', flag: '--recycle-drain-s', env: 'XIAOZHI_RECYCLE_DRAIN_S', kind: 'number' },
  { key: 'publicMqttPort', flag: '--public-mqtt-port', env: 'XIAOZHI_PUBLIC_MQTT_PORT', kind: 'number' },
  { key: 'redisUrl', flag: '--redis-url', env: 'XIAOZHI_REDIS_URL', kind: 'string' },
  { key: 'instanceId', flag: '--instance-id', env: 'XIAOZHI_INSTANCE_ID', kind: 'string' },
  { key: 'adminToken', flag: '--admin-token', env: 'XIAOZHI_ADMIN_TOKEN', kind: 'string' },
  { key: 'proxyProtocol', flag: '--proxy-protocol', env: 'XIAOZHI_PROXY_PROTOCOL', kind: 'boolean' },
  { key: 'trustedProxies', flag: '--trusted-proxies', env: 'XIAOZHI_TRUSTED_PROXIES', kind: 'string' },
  { key: 'livekitUrl', flag: '--livekit-url', env: 'LIVEKIT_URL', kind: 'string' },
  { key: 'livekitApiKey', flag: '--livekit-api-key', env: 'LIVEKIT_API_KEY', kind: 'string' },
  { key: 'livekitApiSecret', flag: '--livekit-api-secret', env: 'LIVEKIT_API_SECRET', kind: 'string' },
  { key: 'livekitRoomTemplate', flag: '--livekit-room', env: 'XIAOZHI_LIVEKIT_ROOM', kind: 'string' },
  { key: 'livekitAgentName', flag: '--livekit-agent-name', env: 'XIAOZHI_LIVEKIT_AGENT_NAME', kind: 'string' },
  { key: 'livekitDispatch', flag: '--livekit-dispatch', env: 'XIAOZHI_LIVEKIT_DISPATCH', kind: 'string' },
  { key: 'livekitAgentJoinTimeoutMs', flag: '--livekit-agent-timeout-ms', env: 'XIAOZHI_LIVEKIT_AGENT_TIMEOUT_MS', kind: 'number' },
];

function coerce(value: string, kind: ConfigKind, where: string): unknown {
  if (kind === 'string') return value;
  if (kind === 'number|auto' && value === 'auto') return value;
  if (kind === 'boolean') {
    if (value === 'true' || value === '1') return true;
    if (value === 'false' || value === '0') return false;
    throw new ConfigError(`${where}: expected true or false, got "${value}"`);
  }
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n)) throw new ConfigError(`${where}: expected a number${kind === 'number|auto' ? ' or auto' : ''}, got "${value}"`);
  return n;
}

/** The first non-internal IPv4 address, else loopback: what a device on the LAN can reach. */
export function guessPublicHost(): string {
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  }
  return '127.0.0.1';
}

export interface LoadConfigInput {
  /** Already-parsed flags: flag name (e.g. '--mqtt-port') -> value. */
  flags?: Record<string, string>;
  env?: NodeJS.ProcessEnv;
  /** Explicit overrides (programmatic use, tests): applied last. */
  overrides?: GatewayConfigInput;
}

export function loadConfig({ flags = {}, env = process.env, overrides = {} }: LoadConfigInput = {}): GatewayConfig {
  const raw: Record<string, unknown> = {};
  const origin: Record<string, string> = {};
  const file = flags['--config'] ?? env.XIAOZHI_CONFIG;
  if (file) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(readFileSync(file, 'utf8'));
    } catch (err) {
      throw new ConfigError(`config file ${file}: ${(err as Error).message}`);
    }
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new ConfigError(`config file ${file}: expected a JSON object`);
    for (const [k, v] of Object.entries(parsed)) {
      raw[k] = v;
      origin[k] = `config file ${file}`;
    }
  }
  for (const s of CONFIG_SOURCES) {
    const v = env[s.env];
    if (v !== undefined && v !== '') {
      raw[s.key] = coerce(v, s.kind, `environment ${s.env}`);
      origin[s.key] = `environment ${s.env}`;
    }
  }
  for (const s of CONFIG_SOURCES) {
    const v = flags[s.flag];
    if (v !== undefined) {
      raw[s.key] = coerce(v, s.kind, `flag ${s.flag}`);
      origin[s.key] = `flag ${s.flag}`;
    }
  }
  for (const [k, v] of Object.entries(overrides)) {
    raw[k] = v;
    origin[k] = 'options';
  }
  const r = configSchema.safeParse(raw);
  if (!r.success) {
    const lines = r.error.issues.map((i) => {
      const key = i.path.join('.') || '(root)';
      const top = String(i.path[0] ?? '');
      return `${key}${origin[top] ? ` (from ${origin[top]})` : ''}: ${i.message}`;
    });
    throw new ConfigError(`invalid configuration:\n  ${lines.join('\n  ')}`);
  }
  const c = r.data;
  if (c.agent === 'livekit') {
    const missing = (['livekitUrl', 'livekitApiKey', 'livekitApiSecret'] as const)
      .filter((k) => !c[k])
      .map((k) => CONFIG_SOURCES.find((s) => s.key === k)!.env);
    if (missing.length) throw new ConfigError(`agent 'livekit' needs the environment variables ${missing.join(', ')} (or the config keys livekitUrl, livekitApiKey, livekitApiSecret)`);
  }
  if (c.redisUrl && c.auth === 'signature' && !c.signatureKey) {
    // A random key per instance would make every device's OTA credentials fail on the other instances.
    throw new ConfigError('redisUrl is set (a multi-instance cluster) but no signature key is configured: every instance must sign and check device credentials with the same key. Set the config key signatureKey (--signature-key or XIAOZHI_SIGNATURE_KEY), the same on every instance');
  }
  try {
    trustedProxyList(c.trustedProxies);
  } catch (err) {
    throw new ConfigError(`trustedProxies${origin.trustedProxies ? ` (from ${origin.trustedProxies})` : ''}: ${(err as Error).message}`);
  }
  const workers = c.workers === 'auto' ? availableParallelism() : c.workers;
  // Worker i binds udpPort + i (and is announced as publicUdpPort + i): the whole range must exist,
  // with one spare port after it when workers are recycled (the replacement starts beside the old).
  const udpPorts = udpPortCount({ workers, recycleAfterSessions: c.recycleAfterSessions });
  for (const key of ['udpPort', 'publicUdpPort'] as const) {
    const first = c[key];
    if (udpPorts > 1 && first !== undefined && first !== 0 && first + udpPorts - 1 > 65535) {
      throw new ConfigError(`${key}${origin[key] ? ` (from ${origin[key]})` : ''}: ${workers} worker(s)${c.recycleAfterSessions ? ' and the spare port of recycling' : ''} need the ports ${first}..${first + udpPorts - 1}, beyond 65535`);
    }
  }
  return { ...c, workers, publicHost: c.publicHost ?? guessPublicHost() };
}
