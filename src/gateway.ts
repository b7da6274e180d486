// The gateway process: embedded MQTT broker + OTA/metrics HTTP + one UDP socket + the native audio
// pipeline + a downlink pacer + the agent backend, wired per PROTOCOL.md. Gateway.start() resolves
// once everything listens; stop() says goodbye to every device, drains and releases everything.
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Server } from 'node:http';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { AgentBackend } from './agent/agent-backend.js';
import { EchoAgentBackend } from './agent/echo-agent.js';
import { MqttBroker } from './broker/mqtt-broker.js';
import { loadConfig, type GatewayConfig, type GatewayConfigInput } from './config.js';
import { DownlinkPacer } from './device/downlink-pacer.js';
import { AdmissionControl } from './device/admission.js';
import { instanceIdOf, LocalDirectory, type DeviceDirectory, type LocalDevice, type LocalDevices } from './device/directory.js';
import { createDeviceRoutes } from './device/directory-http.js';
import { RedisDeviceDirectory } from './device/directory-redis.js';
import { createOtaHandler, FirmwareVersions } from './device/ota.js';
import { clientAddress, trustedProxyList } from './net/forwarded.js';
import { DeviceConnection, type DeviceIdentity, type GatewayCounter, type SessionDeps, type SessionSummary } from './device/session.js';
import { UdpAudioServer } from './device/udp-server.js';
import { createHttpServer } from './http-server.js';
import { gatewayLogger } from './logger.js';
import { createMetricsRegistry, stopMetrics } from './metrics/prometheus.js';
import { AudioPipeline } from './native/pipeline.js';

export interface GatewayPorts {
  mqtt: number;
  mqttTls?: number;
  udp: number;
  http: number;
}

export interface GatewayStartOptions {
  logger?: Logger;
  /** An agent backend instance (overrides config.agent), e.g. for tests or embedding. */
  agents?: AgentBackend;
  now?: () => number;
  /** Set when this gateway is one worker of `--workers N` (src/cluster/worker.ts). */
  cluster?: GatewayClusterHooks;
  /** Device and session events for an embedding application (src/embed.ts); a throwing listener is counted, never fatal. */
  events?: <K extends keyof GatewayEvents>(event: K, ...args: GatewayEvents[K]) => void;
}

/** A device as an embedding application sees it. */
export interface DeviceSummary {
  /** Device MAC, lower case with colons. */
  deviceId: string;
  clientId: string;
  remoteAddress: string;
}

export interface GatewayEvents {
  'device-connected': [device: DeviceSummary];
  'device-disconnected': [device: DeviceSummary, reason: string];
  'session-opened': [session: SessionSummary];
  'session-closed': [session: SessionSummary, reason: string];
}

/**
 * What a worker's gateway shares with the primary. Only connection-level events go through these
 * (connect, disconnect, OTA, a scrape): nothing on the per-frame path.
 */
export interface GatewayClusterHooks {
  /** Worker index: a `worker` label on per-process metrics, and in the log lines. */
  worker: number;
  /** The device directory across this instance's workers (used when there is no Redis). */
  directory?: DeviceDirectory;
  /** A device connection was accepted here (the primary closes the same client id on other workers). */
  onDeviceConnected(identity: DeviceIdentity): void;
  onDeviceDisconnected(identity: DeviceIdentity): void;
  /** OTA saw a device's firmware version (the primary tells every other worker). */
  onFirmware(mac: string, version: string): void;
  /** /metrics text: the primary's aggregate of every worker, instead of this process's registry alone. */
  metrics(): Promise<string>;
}

const DOWNLINK_SAMPLE_RATE = 24000;
const DOWNLINK_FRAME_MS = 60;
const AGENT_SAMPLE_RATE = 48000;

export class Gateway {
  readonly config: GatewayConfig;
  readonly logger: Logger;
  readonly pipeline: AudioPipeline;
  readonly ports: GatewayPorts;
  /** This process's metrics (a worker hands it to prom-client's cluster aggregation). */
  readonly registry: Registry;
  readonly #counters: Map<string, number>;
  readonly #connections = new Map<string, DeviceConnection>();
  #broker: MqttBroker;
  /** stopAccepting() was called: this worker is being recycled. */
  #draining = false;
  #udp: UdpAudioServer;
  #http: Server;
  #pacer: DownlinkPacer;
  #agents: AgentBackend;
  #sweep: ReturnType<typeof setInterval>;
  #state: 'running' | 'stopping' | 'stopped' = 'running';
  #now: () => number;
  #firmware: FirmwareVersions;
  readonly #admission: AdmissionControl;
  #cluster: GatewayClusterHooks | undefined;
  readonly #events: GatewayStartOptions['events'];
  /** The cluster-wide directory with `--redis-url`; connection-level events only, never audio. */
  readonly #redis: RedisDeviceDirectory | undefined;
  readonly #connectedAt = new WeakMap<DeviceConnection, number>();

  private constructor(init: {
    config: GatewayConfig; logger: Logger; pipeline: AudioPipeline; broker: MqttBroker; udp: UdpAudioServer;
    http: Server; pacer: DownlinkPacer; agents: AgentBackend; ports: GatewayPorts; now: () => number; firmware: FirmwareVersions;
    counters: Map<string, number>; registry: Registry; cluster: GatewayClusterHooks | undefined;
    admission: AdmissionControl; events: GatewayStartOptions['events']; redis: RedisDeviceDirectory | undefined;
  }) {
    this.config = init.config;
    this.logger = init.logger;
    this.pipeline = init.pipeline;
    this.#broker = init.broker;
    this.#udp = init.udp;
    this.#http = init.http;
    this.#pacer = init.pacer;
    this.#agents = init.agents;
    this.ports = init.ports;
    this.#now = init.now;
    this.#firmware = init.firmware;
    this.#counters = init.counters;
    this.#admission = init.admission;
    this.registry = init.registry;
    this.#cluster = init.cluster;
    this.#events = init.events;
    this.#redis = init.redis;
    this.#sweep = setInterval(() => this.#sweepIdle(), 1000);
    this.#sweep.unref();
  }

  /** Starts a gateway from a config object (validated like the CLI's) and resolves when it listens. */
  static async start(input: GatewayConfigInput | GatewayConfig = {}, options: GatewayStartOptions = {}): Promise<Gateway> {
    // Always validated, also when it is already a loaded config (validation is idempotent): guessing
    // from its keys once let a partial object skip the defaults.
    const config = loadConfig({ flags: {}, env: {}, overrides: input as GatewayConfigInput });
    const logger = options.logger ?? gatewayLogger(config.logLevel);
    const cluster = options.cluster;
    const now = options.now ?? (() => performance.now());
    let signatureKey = config.signatureKey;
    if (config.auth === 'signature' && !signatureKey) {
      signatureKey = randomBytes(32).toString('base64url');
      logger.warn('no signature key configured: generated one for this process; devices must redo OTA after a restart (set --signature-key or XIAOZHI_SIGNATURE_KEY)');
    }
    if (config.auth === 'open') logger.warn('MQTT authentication is OPEN: any client can connect as any device. Development only.');

    // Everything opened so far is closed again if a later step fails: a start either happens
    // completely or leaves nothing listening (the error names the port that could not be bound).
    const opened: Array<() => Promise<unknown> | void> = [];
    try {
      const pipeline = new AudioPipeline();
      opened.push(() => pipeline.close());
      const counters = new Map<string, number>();
      let lastCallbackErrorLog = -Infinity;
      pipeline.onCallbackError = (err) => {
        // A stream callback that throws (a bug in an agent or in our own glue) loses that one
        // result, counted; it must never become an uncaught exception.
        counters.set('pipeline_callback_errors', (counters.get('pipeline_callback_errors') ?? 0) + 1);
        const t = now();
        if (t - lastCallbackErrorLog >= 10_000) {
          lastCallbackErrorLog = t;
          logger.error({ err }, 'pipeline result handler failed: result dropped (logged at most every 10 s)');
        }
      };
      const udp = new UdpAudioServer(logger.child({ component: 'udp' }));
      opened.push(() => udp.close());
      const pacer = new DownlinkPacer({ frameMs: DOWNLINK_FRAME_MS });
      opened.push(() => pacer.close());
      const agents = options.agents ?? (await createAgentBackend(config, logger));
      opened.push(() => agents.close());
      const admissionOn = config.admission === 'on' || (config.admission === 'auto' && agents.name === 'livekit');
      const admission = new AdmissionControl({
        maxCpu: admissionOn ? config.admissionMaxCpu : 1,
        maxEventLoopLagMs: admissionOn ? config.admissionMaxEventLoopLagMs : 0,
        maxSessions: config.maxSessions,
      });
      opened.push(() => admission.close());
      let gateway: Gateway | undefined;
      const instance = instanceIdOf(config, cluster !== undefined);
      const local: LocalDevices = {
        list: () => gateway?.localDevices() ?? [],
        find: (deviceId) => gateway?.localDevices().find((d) => d.deviceId === deviceId),
        send: (clientId, message) => gateway?.sendToDevice(clientId, message) ?? false,
        close: (clientId, connectionId) => gateway?.closeDevice(clientId, connectionId) ?? false,
      };
      const redis = config.redisUrl
        ? new RedisDeviceDirectory({ url: config.redisUrl, instance, worker: cluster?.worker ?? 0, local, logger, count: (e) => counters.set(e, (counters.get(e) ?? 0) + 1) })
        : undefined;
      if (redis) {
        opened.push(() => redis.close());
        await redis.start();
      }
      const directory: DeviceDirectory = redis ?? cluster?.directory ?? new LocalDirectory(local, instance, cluster?.worker ?? 0);
      const trusted = config.trustedProxies.trim() ? trustedProxyList(config.trustedProxies) : undefined;
      const tls = config.mqttTls
        ? { port: config.mqttTls.port, cert: readFileSync(config.mqttTls.certFile), key: readFileSync(config.mqttTls.keyFile) }
        : undefined;
      const broker = new MqttBroker({
        port: config.mqttPort,
        host: config.mqttHost,
        ...(tls ? { tls } : {}),
        auth: config.auth === 'signature' ? { mode: 'signature', signatureKey: signatureKey! } : { mode: 'open' },
        publishTopic: config.publishTopic,
        limits: {
          maxConnections: config.maxConnections,
          connectsPerIpPerMinute: config.connectsPerIpPerMinute,
          maxConnectionsPerIp: config.maxConnectionsPerIp,
          publishesPerSecond: config.publishesPerSecond,
        },
        proxyProtocol: config.proxyProtocol,
        ...(redis ? { clusterAdmit: (ipKey: string) => redis.allow('connect', ipKey, config.connectsPerIpPerMinute) } : {}),
        logger,
      });
      opened.push(() => broker.stop());

      const registry = createMetricsRegistry({
        pipeline,
        counters: () => gateway?.counters() ?? {},
        sessionsByState: () => gateway?.sessionsByState() ?? {},
        mqttConnections: () => gateway?.stats.connections ?? 0,
        udpBindings: () => udp.sessions,
        admission: () => admission.state,
        ...(cluster ? { worker: cluster.worker } : {}),
      });
      opened.push(() => stopMetrics(registry));
      agents.registerMetrics?.(registry);
      redis?.registerMetrics(registry);
      const brokerPorts = await broker.start();
      const udpPort = await udp.listen(config.udpPort, config.udpHost);
      const publicMqttPort = tls ? brokerPorts.tlsPort! : brokerPorts.port;
      const firmware = new FirmwareVersions(Math.max(10_000, config.maxConnections));
      const ota = createOtaHandler({
        publicHost: config.publicHost,
        mqttPort: config.publicMqttPort ?? publicMqttPort,
        useTls: Boolean(tls),
        ...(config.auth === 'signature' ? { signatureKey: signatureKey! } : {}),
        publishTopic: config.publishTopic,
        keepalive: config.keepaliveS,
        timezoneOffsetMinutes: config.timezoneOffsetMinutes,
        logger: logger.child({ component: 'ota' }),
        requestsPerIpPerMinute: config.otaRequestsPerIpPerMinute,
        ...(trusted ? { clientAddress: (req: import('node:http').IncomingMessage) => clientAddress(req, trusted) } : {}),
        ...(redis ? { admit: (ipKey: string) => redis.allow('ota', ipKey, config.otaRequestsPerIpPerMinute) } : {}),
        now,
        count: (event) => counters.set(event, (counters.get(event) ?? 0) + 1),
        onDevice: (d) => {
          if (d.firmwareVersion) {
            firmware.set(d.mac, d.firmwareVersion);
            cluster?.onFirmware(d.mac, d.firmwareVersion);
            void redis?.firmwareSeen(d.mac, d.firmwareVersion);
          }
        },
      });
      const deviceRoutes = createDeviceRoutes({ adminToken: config.adminToken, directory: () => (gateway?.running ? directory : undefined) });
      const http = createHttpServer({ ota, registry, routes: deviceRoutes, ready: () => gateway?.running ?? false, ...(cluster ? { metrics: () => cluster.metrics() } : {}) });
      opened.push(() => new Promise<void>((r) => {
        http.close(() => r());
        http.closeAllConnections();
      }));
      const httpPort = await new Promise<number>((resolve, reject) => {
        http.once('error', (err: NodeJS.ErrnoException) => {
          reject(Object.assign(new Error(`HTTP: cannot listen on ${config.httpHost}:${config.httpPort}: ${err.code ?? err.message}`, { cause: err }), { code: 'ERR_HTTP_LISTEN' }));
        });
        http.listen(config.httpPort, config.httpHost, () => {
          http.removeAllListeners('error');
          http.on('error', (err) => logger.error({ err }, 'HTTP server error'));
          const a = http.address();
          resolve(typeof a === 'object' && a ? a.port : config.httpPort);
        });
      });
      const ports: GatewayPorts = { mqtt: brokerPorts.port, udp: udpPort, http: httpPort, ...(brokerPorts.tlsPort ? { mqttTls: brokerPorts.tlsPort } : {}) };
      gateway = new Gateway({ config: { ...config, ...(signatureKey ? { signatureKey } : {}) }, logger, pipeline, broker, udp, http, pacer, agents, ports, now, firmware, counters, registry, cluster, admission, events: options.events, redis });
      gateway.#wire();
      // With workers, 'ready' is the primary's line once every worker is up (src/cluster/primary.ts).
      logger.info({ ports, publicHost: config.publicHost, agent: agents.name, auth: config.auth }, cluster ? 'worker ready' : 'ready');
      return gateway;
    } catch (err) {
      for (const close of opened.reverse()) {
        try {
          await close();
        } catch (closeErr) {
          logger.debug({ err: closeErr }, 'closing after a failed start');
        }
      }
      logger.error({ err }, 'gateway did not start');
      throw err;
    }
  }

  #deps(): SessionDeps {
    return {
      config: {
        publicHost: this.config.publicHost,
        publicUdpPort: this.config.publicUdpPort ?? this.ports.udp,
        udpTimeoutMs: this.config.udpTimeoutS * 1000,
        udpRequireMqttIp: this.config.udpRequireMqttIp,
        uplinkPacketsPerSecond: this.config.uplinkPacketsPerSecond,
        hellosPerMinute: this.config.hellosPerMinute,
        logLinesPerMinute: this.config.logLinesPerMinute,
        downlinkSampleRate: DOWNLINK_SAMPLE_RATE,
        downlinkFrameMs: DOWNLINK_FRAME_MS,
        agentSampleRate: AGENT_SAMPLE_RATE,
      },
      pipeline: this.pipeline,
      pacer: this.#pacer,
      udp: this.#udp,
      agents: this.#agents,
      send: (clientId, message) => this.#broker.sendToDevice(clientId, message),
      count: (c: GatewayCounter, n = 1) => this.#count(c, n),
      logger: this.logger,
      now: this.#now,
      firmwareVersion: (mac) => this.#firmware.get(mac),
      admit: () => this.#admission.admit(this.#udp.sessions),
      onSession: (event, session, reason) => {
        const c = this.#connections.get(session.clientId);
        if (c && this.#redis) void this.#redis.sessionChanged({ deviceId: c.identity.mac, connectionId: c.identity.connectionId, session: event === 'opened' ? (c.session?.state ?? 'opening') : 'none' });
        if (event === 'opened') this.#emit('session-opened', session);
        else this.#emit('session-closed', session, reason ?? '');
        // A draining worker lets its device go as soon as its conversation is over (see closeIdleDevices).
        if (event === 'closed' && this.#draining) {
          setImmediate(() => {
            const c = this.#connections.get(session.clientId);
            if (c) this.#releaseIfIdle(c);
          });
        }
      },
    };
  }

  /** Hands an event to the embedding application; its listener's failure is counted, never ours. */
  #emit<K extends keyof GatewayEvents>(event: K, ...args: GatewayEvents[K]): void {
    if (!this.#events) return;
    try {
      this.#events(event, ...args);
    } catch (err) {
      this.#count('embedder_listener_errors');
      this.logger.error({ err, event }, 'an application event listener threw: event dropped');
    }
  }

  #wire(): void {
    const deps = this.#deps();
    this.#broker.on('device-connected', (identity: DeviceIdentity) => {
      if (this.#state !== 'running') return;
      const old = this.#connections.get(identity.clientId);
      if (old) {
        // Takeover: a second connection with this client id replaces the first completely (the
        // broker counts it, as connection_takeover, since it usually closes the old one first).
        void old.close('taken over by a new connection');
      }
      const connection = new DeviceConnection(identity, deps);
      this.#connections.set(identity.clientId, connection);
      this.#connectedAt.set(connection, Date.now());
      this.#cluster?.onDeviceConnected(identity);
      const redis = this.#redis;
      if (redis) {
        void (async () => {
          // OTA may have run on another instance: its firmware facts are in Redis (one round trip).
          if (this.#firmware.get(identity.mac) === undefined) {
            const version = await redis.firmwareOf(identity.mac);
            if (version !== undefined && this.#firmware.get(identity.mac) === undefined) this.#firmware.set(identity.mac, version);
          }
          // This connection becomes the device's one live session cluster-wide (an older one elsewhere is closed).
          if (this.#connections.get(identity.clientId) === connection) await redis.connected(this.#localDevice(connection));
        })();
      }
      this.#emit('device-connected', deviceSummary(identity));
    });
    this.#broker.on('device-message', (identity: DeviceIdentity, payload: Buffer) => {
      const c = this.#connections.get(identity.clientId);
      if (c && c.identity.connectionId === identity.connectionId) c.onMessage(payload);
    });
    this.#broker.on('device-disconnected', (identity: DeviceIdentity, reason: string) => {
      const c = this.#connections.get(identity.clientId);
      if (!c || c.identity.connectionId !== identity.connectionId) return;  // an old connection after a takeover
      this.#connections.delete(identity.clientId);
      void c.close(`mqtt disconnected: ${reason}`);
      this.#cluster?.onDeviceDisconnected(identity);
      void this.#redis?.disconnected({ deviceId: identity.mac, connectionId: identity.connectionId });
      this.#emit('device-disconnected', deviceSummary(identity), reason);
    });
  }

  /**
   * Closes this device connection if it is still the one named (a takeover decided elsewhere: the
   * same client id connected on another worker). False if it is gone or already replaced here.
   */
  closeDevice(clientId: string, connectionId: number): boolean {
    const c = this.#connections.get(clientId);
    if (!c || c.identity.connectionId !== connectionId) return false;
    this.#count('connection_takeover');
    this.#connections.delete(clientId);
    void c.close('taken over by a new connection on another worker');
    this.#broker.disconnectDevice(clientId);
    this.#cluster?.onDeviceDisconnected(c.identity);
    void this.#redis?.disconnected({ deviceId: c.identity.mac, connectionId });
    return true;
  }

  /**
   * A recycled worker's drain, first step: no new MQTT or HTTP connection comes here any more
   * (under node:cluster a worker that closes its listener leaves the round-robin; the other
   * workers take the new ones). Connections already here keep working.
   */
  stopAccepting(): void {
    if (this.#state !== 'running') return;
    this.#draining = true;
    this.#broker.stopListening();
    this.#http.close();
  }

  /**
   * A recycled worker's drain, second step: closes the MQTT connection of up to `max` devices that
   * have no audio session open, so nobody is cut off mid-conversation. The firmware reconnects on
   * its own (at once when woken for a conversation, else on its reconnect timer) and lands on
   * another worker. Returns how many were closed. After stopAccepting(), each device whose session
   * ends is also released at once (onSession above).
   */
  closeIdleDevices(max: number): number {
    let closed = 0;
    for (const c of [...this.#connections.values()]) {
      if (closed >= max) break;
      if (this.#releaseIfIdle(c)) closed++;
    }
    return closed;
  }

  /** Closes this device's MQTT connection if it has no audio session open; true if it did. */
  #releaseIfIdle(c: DeviceConnection): boolean {
    if (c.session && c.session.state !== 'closed') return false;
    if (!this.#broker.disconnectDevice(c.identity.clientId)) return false;
    this.#count('recycle_disconnects');
    return true;
  }

  /** Pushes a JSON message to a device connected to this process (the directory's delivery). */
  sendToDevice(clientId: string, message: object): boolean {
    return this.#state === 'running' && this.#broker.sendToDevice(clientId, message);
  }

  /** The devices connected to this process, as the directory lists them. */
  localDevices(): LocalDevice[] {
    return [...this.#connections.values()].map((c) => this.#localDevice(c));
  }

  #localDevice(c: DeviceConnection): LocalDevice {
    const firmware = this.#firmware.get(c.identity.mac);
    return {
      deviceId: c.identity.mac, clientId: c.identity.clientId, connectionId: c.identity.connectionId,
      session: c.session && c.session.state !== 'closed' ? c.session.state : 'none',
      ...(firmware ? { firmware } : {}),
      connectedAt: this.#connectedAt.get(c) ?? Date.now(),
    };
  }

  /** A firmware version another worker's OTA saw: a session here finds it as if OTA had run here. */
  learnFirmware(mac: string, version: string): void {
    this.#count('firmware_shared');
    this.#firmware.set(mac, version);
  }

  #count(name: string, n = 1): void {
    this.#counters.set(name, (this.#counters.get(name) ?? 0) + n);
  }

  /** Native objects the agent backend's library keeps after their sessions closed (AgentBackend.retainedNative). */
  retainedNative(): number {
    return this.#agents.retainedNative?.() ?? 0;
  }

  counters(): Record<string, number> {
    const s = this.#udp.stats;
    const b = this.#broker.stats();
    return {
      ...Object.fromEntries(this.#counters),
      udp_received: s.received,
      udp_short: s.droppedShort,
      udp_oversize: s.droppedOversize,
      udp_malformed: s.droppedMalformed,
      udp_unknown_ssrc: s.droppedUnknownSsrc,
      udp_handler_errors: s.handlerErrors,
      udp_sent: s.sent,
      udp_send_errors: s.sendErrors,
      mqtt_publish_rate_limited: b.publishRateLimited,
      mqtt_refused_max_connections: b.refused.maxConnections,
      mqtt_refused_connect_rate: b.refused.rateLimited,
      mqtt_refused_per_ip_connections: b.refused.perIpConnections,
      mqtt_refused_connect_timeout: b.refused.connectTimeout,
      mqtt_refused_protocol: b.refused.firstPacketNotConnect + b.refused.reservedPacketType + b.refused.malformedRemainingLength,
      mqtt_refused_oversized: b.refused.oversizedPacket,
      mqtt_refused_tls_handshake: b.refused.tlsHandshake,
      mqtt_auth_failures: Object.values(b.authFailures).reduce((x, y) => x + y, 0),
      mqtt_acl_denials: b.aclDenials.publishTopic + b.aclDenials.publishQos + b.aclDenials.subscribe + b.aclDenials.forward,
      mqtt_messages_in: b.messages.in,
      mqtt_messages_out: b.messages.out,
      // Takeovers on this worker's broker, plus those decided across workers (closeDevice).
      connection_takeover: b.takeovers + (this.#counters.get('connection_takeover') ?? 0),
      sessions_refused_cpu: this.#admission.refused.cpu,
      sessions_refused_event_loop: this.#admission.refused.event_loop,
      sessions_refused_sessions: this.#admission.refused.sessions,
      // Present from the start (0), so an alert on it needs no "absent" rule: barge-in that leaks audio.
      downlink_after_abort: this.#counters.get('downlink_after_abort') ?? 0,
    };
  }

  sessionsByState(): Record<string, number> {
    const out: Record<string, number> = { opening: 0, idle: 0, listening: 0, speaking: 0 };
    for (const c of this.#connections.values()) if (c.session) out[c.session.state] = (out[c.session.state] ?? 0) + 1;
    return out;
  }

  get running(): boolean {
    return this.#state === 'running';
  }

  /** Connected devices (MQTT) and open audio sessions. */
  get stats(): { connections: number; sessions: number } {
    let sessions = 0;
    for (const c of this.#connections.values()) if (c.session) sessions++;
    return { connections: this.#connections.size, sessions };
  }

  // UDP silence closes the audio channel with a server goodbye (PROTOCOL.md §3.3).
  #sweepIdle(): void {
    const now = this.#now();
    const limit = this.config.udpTimeoutS * 1000;
    for (const c of this.#connections.values()) {
      const s = c.session;
      if (s && s.state !== 'closed' && now - s.lastUdpAt > limit && !this.#pacer.isSpeaking(s)) {
        this.#count('udp_timeout');
        s.logger.info({ silentMs: Math.round(now - s.lastUdpAt) }, 'udp silence: closing the audio channel');
        void c.goodbye('udp timeout');
      }
    }
  }

  /** Stop accepting, goodbye to every device, drain, release. Resolves within shutdownTimeoutMs. */
  async stop(reason = 'shutdown'): Promise<void> {
    if (this.#state !== 'running') return;
    this.#state = 'stopping';
    this.logger.info({ reason, connections: this.#connections.size }, 'stopping');
    clearInterval(this.#sweep);
    const work = (async () => {
      await Promise.allSettled([...this.#connections.values()].map((c) => c.goodbye(reason)));
      // Give the goodbyes a moment to leave the broker before connections close.
      await new Promise((r) => setTimeout(r, 50));
      await Promise.allSettled([...this.#connections.values()].map((c) => c.close(reason)));
      this.#connections.clear();
      this.#pacer.close();
      this.#admission.close();
      stopMetrics(this.registry);
      await Promise.allSettled([
        this.#broker.stop(),
        this.#udp.close(),
        new Promise<void>((r) => {
          this.#http.close(() => r());
          this.#http.closeAllConnections();
        }),
        this.#agents.close(),
      ]);
      // After the connections' records were released: this process leaves the cluster.
      await this.#redis?.close();
      this.pipeline.close();
    })();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<'timeout'>((r) => {
      timer = setTimeout(() => r('timeout'), this.config.shutdownTimeoutMs);
    });
    const result = await Promise.race([work.then(() => 'done' as const), timeout]);
    clearTimeout(timer);
    if (result === 'timeout') {
      // Whatever hung (an agent that never answers, a socket that never drains), the listeners,
      // the pacer and the native pipeline are released anyway: nothing runs after stop().
      this.logger.error('shutdown did not finish in time: releasing everything now');
      this.#pacer.close();
      this.#admission.close();
      stopMetrics(this.registry);
      await Promise.race([
        Promise.allSettled([this.#broker.stop(), this.#udp.close(), new Promise<void>((r) => { this.#http.close(() => r()); this.#http.closeAllConnections(); })]),
        new Promise((r) => setTimeout(r, 500).unref()),
      ]);
      if (!this.pipeline.closed) this.pipeline.close();
      void this.#redis?.close();
    }
    this.#state = 'stopped';
    this.logger.info('stopped');
  }
}

function deviceSummary(identity: DeviceIdentity): DeviceSummary {
  return { deviceId: identity.mac, clientId: identity.clientId, remoteAddress: identity.remoteAddress };
}

async function createAgentBackend(config: GatewayConfig, logger: Logger): Promise<AgentBackend> {
  if (config.agent === 'echo') return new EchoAgentBackend();
  // Loaded only when chosen: @livekit/rtc-node brings a native FFI library the echo agent never needs.
  const { LivekitAgentBackend } = await import('./livekit/livekit-backend.js');
  const backend = LivekitAgentBackend.fromConfig(config);
  logger.info(
    { url: backend.options.url, roomTemplate: config.livekitRoomTemplate, agentName: config.livekitAgentName || '(automatic dispatch)', dispatch: config.livekitDispatch },
    'agent backend: LiveKit',
  );
  return backend;
}
