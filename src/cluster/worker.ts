// One gateway worker of `xiaozhi-gateway start --workers N`: a complete Gateway (its own MQTT
// connections, audio sessions, native pipeline, UDP port, agent sessions) in a cluster worker
// process. The MQTT and HTTP listeners are shared through the primary (node:cluster round-robin);
// the UDP socket is this process's own. The primary is asked only at connection level: the shared
// signature key at start, takeovers, firmware versions, and /metrics.
import type { Logger } from 'pino';
import type { GatewayConfig } from '../config.js';
import { Gateway, type GatewayClusterHooks } from '../gateway.js';
import { gatewayLogger } from '../logger.js';
import { instanceIdOf, LocalDirectory, type DeviceDirectory } from '../device/directory.js';
import { isClusterMessage, WORKER_INDEX_ENV, type DirectoryQuestion, type PrimaryToWorker, type WorkerToPrimary } from './messages.js';

type Init = Extract<PrimaryToWorker, { type: 'xiaozhi:init' }>;

/** A scrape waits at most this long for the primary's aggregate (the primary waits 3 s per worker). */
const METRICS_TIMEOUT_MS = 5000;
/** How often a worker checks its session count for recycling, and steps its drain. */
const RECYCLE_CHECK_MS = 1000;
/** A refused recycle request (another worker is draining) is repeated after this long. */
const RECYCLE_ASK_MS = 10_000;
/** Idle devices a draining worker closes per step: their reconnects reach the others spread out. */
const RECYCLE_CLOSE_PER_TICK = 50;
/** Before the primary's 10 s: a worker that cannot drain still exits, and the primary exits 0 after it. */
const FORCED_EXIT_MS = 9500;

export async function runWorker(config: GatewayConfig): Promise<never> {
  const index = Number(process.env[WORKER_INDEX_ENV]);
  const logger = gatewayLogger(config.logLevel, { worker: index });
  const send = (m: WorkerToPrimary): void => {
    // The primary is gone (its 'disconnect' stops this worker): nothing to tell it any more.
    if (process.connected) process.send!(m);
  };
  let gateway: Gateway | undefined;
  const earlyFirmware: Array<[string, string]> = [];
  const metricsWaiters = new Map<number, { resolve(text: string): void; reject(err: Error): void }>();
  let metricsId = 0;
  const directoryWaiters = new Map<number, (reply: Extract<PrimaryToWorker, { type: 'xiaozhi:directory-reply' }> | undefined) => void>();
  let directoryId = 0;
  /** GET /devices and POST /devices/{id}/messages without Redis: the primary asks every worker. */
  const ask = (question: DirectoryQuestion) => new Promise<Extract<PrimaryToWorker, { type: 'xiaozhi:directory-reply' }> | undefined>((resolve) => {
    const id = ++directoryId;
    const timer = setTimeout(() => { directoryWaiters.delete(id); resolve(undefined); }, METRICS_TIMEOUT_MS);
    directoryWaiters.set(id, (r) => { clearTimeout(timer); resolve(r); });
    send({ type: 'xiaozhi:directory-request', id, question });
  });
  const clusterDirectory: DeviceDirectory = {
    list: async () => {
      const r = await ask({ op: 'list' });
      if (!r?.devices) throw new Error('the primary did not answer');
      return r.devices;
    },
    deliver: async (deviceId, message) => (await ask({ op: 'deliver', deviceId, message }))?.result ?? 'unavailable',
  };
  let stop: (reason: string) => void = () => exit(logger, 0);
  let drain: (drainS: number) => void = () => stop('recycled before it started');
  let resolveInit!: (m: Init) => void;
  const init = new Promise<Init>((r) => { resolveInit = r; });

  process.on('message', (m: unknown) => {
    if (!isClusterMessage<PrimaryToWorker>(m)) return;
    switch (m.type) {
      case 'xiaozhi:init':
        resolveInit(m);
        break;
      case 'xiaozhi:close-device':
        gateway?.closeDevice(m.clientId, m.connectionId);
        break;
      case 'xiaozhi:firmware':
        if (gateway) gateway.learnFirmware(m.mac, m.version);
        else earlyFirmware.push([m.mac, m.version]);
        break;
      case 'xiaozhi:metrics-collect': {
        const registry = gateway?.registry;
        (registry ? registry.getMetricsAsJSON() : Promise.resolve([])).then(
          (metrics) => send({ type: 'xiaozhi:metrics-json', id: m.id, metrics }),
          (err: Error) => send({ type: 'xiaozhi:metrics-json', id: m.id, error: err.message }),
        );
        break;
      }
      case 'xiaozhi:metrics-reply': {
        const w = metricsWaiters.get(m.id);
        metricsWaiters.delete(m.id);
        if (m.text !== undefined) w?.resolve(m.text);
        else w?.reject(new Error(m.error ?? 'no metrics'));
        break;
      }
      case 'xiaozhi:directory-query': {
        const q = m.question;
        if (!gateway) {
          send({ type: 'xiaozhi:directory-answer', id: m.id, ...(q.op === 'list' ? { devices: [] } : { result: 'offline' as const }) });
          break;
        }
        const own = new LocalDirectory({
          list: () => gateway!.localDevices(),
          find: (deviceId) => gateway!.localDevices().find((d) => d.deviceId === deviceId),
          send: (clientId, message) => gateway!.sendToDevice(clientId, message),
          close: (clientId, connectionId) => gateway!.closeDevice(clientId, connectionId),
        }, instanceIdOf(config, true), index);
        (q.op === 'list' ? own.list().then((devices) => ({ devices })) : own.deliver(q.deviceId, q.message).then((result) => ({ result }))).then(
          (answer) => send({ type: 'xiaozhi:directory-answer', id: m.id, ...answer }),
          () => send({ type: 'xiaozhi:directory-answer', id: m.id }),
        );
        break;
      }
      case 'xiaozhi:directory-reply': {
        const w = directoryWaiters.get(m.id);
        directoryWaiters.delete(m.id);
        w?.(m);
        break;
      }
      case 'xiaozhi:drain':
        drain(m.drainS);
        break;
      case 'xiaozhi:stop':
        stop(m.reason);
        break;
    }
  });
  process.once('SIGTERM', () => stop('SIGTERM'));
  // Ctrl-C reaches the whole process group: the primary drains its workers anyway.
  process.once('SIGINT', () => stop('SIGINT'));
  // The primary died: nobody supervises or aggregates any more; drain rather than run orphaned.
  process.once('disconnect', () => stop('primary gone'));
  send({ type: 'xiaozhi:want-init' });
  const m = await init;

  const hooks: GatewayClusterHooks = {
    worker: index,
    directory: clusterDirectory,
    onDeviceConnected: (id) => send({ type: 'xiaozhi:device-connected', clientId: id.clientId, connectionId: id.connectionId }),
    onDeviceDisconnected: (id) => send({ type: 'xiaozhi:device-disconnected', clientId: id.clientId, connectionId: id.connectionId }),
    onFirmware: (mac, version) => send({ type: 'xiaozhi:firmware', mac, version }),
    metrics: () => new Promise<string>((resolve, reject) => {
      const id = ++metricsId;
      const timer = setTimeout(() => {
        metricsWaiters.delete(id);
        reject(new Error('the primary did not answer'));
      }, METRICS_TIMEOUT_MS);
      metricsWaiters.set(id, {
        resolve: (t) => { clearTimeout(timer); resolve(t); },
        reject: (e) => { clearTimeout(timer); reject(e); },
      });
      send({ type: 'xiaozhi:metrics-request', id });
    }),
  };
  const workerConfig: GatewayConfig = {
    ...config,
    udpPort: m.udpPort,
    ...(m.publicUdpPort !== undefined ? { publicUdpPort: m.publicUdpPort } : {}),
    ...(m.signatureKey !== undefined ? { signatureKey: m.signatureKey } : {}),
    // MQTT and HTTP keep the configured ports, even 0: node:cluster shares one listening handle per
    // (address, port) as asked for, so a restarted worker asking for port 0 joins the same ephemeral
    // port as long as another worker holds it (asking for that port by number would collide with it).
  };
  try {
    try {
      gateway = await Gateway.start(workerConfig, { logger, cluster: hooks });
    } catch (err) {
      // An ephemeral UDP port is pinned to its worker index so a restart announces the same port;
      // if another process took it meanwhile, any free port beats not starting.
      if (!m.udpPortFallback || (err as { code?: string }).code !== 'ERR_UDP_LISTEN') throw err;
      logger.warn({ udpPort: m.udpPort }, 'the previous ephemeral UDP port is taken: binding a new one');
      gateway = await Gateway.start({ ...workerConfig, udpPort: 0 }, { logger, cluster: hooks });
    }
  } catch (err) {
    const e = err as Error & { code?: string };
    send({ type: 'xiaozhi:start-failed', error: e.message, ...(e.code ? { code: e.code } : {}) });
    exit(logger, 1);
  }
  const gw = gateway;
  for (const [mac, version] of m.firmware.concat(earlyFirmware)) gw.learnFirmware(mac, version);
  const fatal = (kind: string) => (err: unknown) => {
    gw.logger.fatal({ err, kind }, `${kind}: exiting (this is a bug; please report it with this log line)`);
    process.exit(70);
  };
  process.on('uncaughtException', fatal('uncaughtException'));
  process.on('unhandledRejection', fatal('unhandledRejection'));
  send({ type: 'xiaozhi:ready', ports: gw.ports, pid: process.pid });

  // Recycling (--recycle-after-sessions K): once this worker has accepted K sessions, or rtc-node
  // retains --recycle-retained-sources audio sources of closed sessions (src/livekit/rtc-retention.ts),
  // it asks the primary for a replacement (again every RECYCLE_ASK_MS while another worker is
  // draining: one at a time, on the one spare UDP port).
  let draining = false;
  let recycleTimer: ReturnType<typeof setInterval> | undefined;
  if (config.recycleAfterSessions > 0) {
    let askedAt = -Infinity;
    recycleTimer = setInterval(() => {
      const sessions = gw.counters().hello_accepted ?? 0;
      const retained = config.recycleRetainedSources > 0 ? gw.retainedNative() : 0;
      const due = sessions >= config.recycleAfterSessions || (config.recycleRetainedSources > 0 && retained >= config.recycleRetainedSources);
      if (draining || !due || Date.now() - askedAt < RECYCLE_ASK_MS) return;
      askedAt = Date.now();
      send({ type: 'xiaozhi:recycle-request', sessions, retained });
    }, RECYCLE_CHECK_MS);
    recycleTimer.unref();
  }
  drain = (drainS) => {
    if (draining || stopping) return;
    draining = true;
    clearInterval(recycleTimer);
    const until = Date.now() + drainS * 1000;
    gw.stopAccepting();
    gw.logger.info({ sessions: gw.counters().hello_accepted ?? 0, connections: gw.stats.connections, drainS }, 'recycling: no new connections; waiting for conversations to end');
    const tick = setInterval(() => {
      gw.closeIdleDevices(RECYCLE_CLOSE_PER_TICK);
      if (gw.stats.connections === 0) {
        clearInterval(tick);
        stop('recycled');
      } else if (Date.now() >= until) {
        clearInterval(tick);
        gw.logger.warn({ connections: gw.stats.connections, sessions: gw.stats.sessions }, 'recycling: drain time over, saying goodbye to the devices still here');
        stop('recycled');
      }
    }, RECYCLE_CHECK_MS);
  };

  let stopping = false;
  stop = (reason) => {
    if (stopping) return;
    stopping = true;
    clearInterval(recycleTimer);
    setTimeout(() => {
      gw.logger.error('forced exit: the drain did not finish in time');
      process.exit(1);
    }, FORCED_EXIT_MS).unref();
    gw.stop(reason).then(
      () => exit(logger, 0),
      (err: unknown) => {
        gw.logger.error({ err }, 'shutdown failed');
        exit(logger, 1);
      },
    );
  };
  return new Promise<never>(() => {});
}

// The IPC channel keeps a worker alive forever: a worker leaves by exiting, explicitly.
function exit(logger: Logger, code: number): never {
  logger.flush();
  process.exit(code);
}
