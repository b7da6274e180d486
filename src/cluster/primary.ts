// The primary of `xiaozhi-gateway start --workers N`: it runs no gateway itself. It forks N gateway
// workers (node:cluster: the MQTT and HTTP ports are shared, connections handed out round-robin),
// gives each its own UDP port (udpPort + i), shares what must agree across workers (the signature
// key, one live connection per client id, firmware versions from OTA, the /metrics aggregate),
// restarts a worker that dies (with backoff), replaces a worker that has served
// --recycle-after-sessions sessions (drained, its replacement on the spare UDP port), and drains
// them all on SIGTERM/SIGINT.
import { randomBytes } from 'node:crypto';
import cluster, { type Worker } from 'node:cluster';
import client from 'prom-client';
import { udpPortCount, type GatewayConfig } from '../config.js';
import type { GatewayPorts } from '../gateway.js';
import { gatewayLogger } from '../logger.js';
import type { DeliveryResult, DirectoryEntry } from '../device/directory.js';
import { isClusterMessage, WORKER_INDEX_ENV, type DirectoryQuestion, type PrimaryToWorker, type WorkerToPrimary } from './messages.js';

/** Restart delay after a death: doubles per death from 1 s to 30 s; back to 1 s after 60 s of life. */
export const RESTART_BACKOFF = { firstMs: 1000, maxMs: 30_000, resetAfterMs: 60_000 } as const;
/**
 * The delay before restarting a worker that died after `livedMs`, and the delay for its next death.
 * A worker that crashes at once is not restarted in a tight loop; one that ran a while is back soon.
 */
export function restartDelay(nextDelayMs: number, livedMs: number): { delayMs: number; nextDelayMs: number } {
  const delayMs = livedMs >= RESTART_BACKOFF.resetAfterMs ? RESTART_BACKOFF.firstMs : nextDelayMs;
  return { delayMs, nextDelayMs: Math.min(delayMs * 2, RESTART_BACKOFF.maxMs) };
}

/** The same deadline as a single process: every worker drained, the primary gone, within 10 s. */
const SHUTDOWN_DEADLINE_MS = 10_000;
/** A scrape does not wait for a worker that does not answer (dying, stuck): its samples are left out. */
const COLLECT_TIMEOUT_MS = 3000;
/** Firmware versions kept for workers that start later (as FirmwareVersions bounds a gateway's). */
const FIRMWARE_MAX = 10_000;

interface Slot {
  readonly index: number;
  /** This incarnation of the worker at `index` (a recycled worker and its replacement differ). */
  readonly id: number;
  /** Recycled: replaced (draining once the replacement is ready); it is not restarted when it exits. */
  retiring: boolean;
  /** For a replacement: the recycled worker that drains once this one is ready. */
  replaces: Slot | undefined;
  /** Pinned to the port the first worker bound when the configured one is 0 (ephemeral). */
  udpPort: number;
  worker: Worker | undefined;
  ports: GatewayPorts | undefined;
  pid: number | undefined;
  startedAt: number;
  nextDelayMs: number;
  restartTimer: ReturnType<typeof setTimeout> | undefined;
  everReady: boolean;
}

export async function runPrimary(config: GatewayConfig): Promise<number> {
  const logger = gatewayLogger(config.logLevel, { role: 'primary' });
  const n = config.workers;
  let signatureKey = config.signatureKey;
  if (config.auth === 'signature' && !signatureKey) {
    // One key for all workers: a device's OTA may land on one worker and its MQTT on another.
    signatureKey = randomBytes(32).toString('base64url');
    logger.warn('no signature key configured: generated one for this run, shared by every worker; devices must redo OTA after a restart (set --signature-key or XIAOZHI_SIGNATURE_KEY)');
  }

  const registry = new client.Registry();
  registry.setDefaultLabels({ service: 'xiaozhi-gateway' });
  const restarts = new client.Counter({ name: 'xiaozhi_worker_restarts_total', help: 'Gateway workers restarted after they died.', registers: [registry] });
  const deaths = new client.Counter({ name: 'xiaozhi_worker_deaths_total', help: 'Gateway workers that died, by exit code or signal.', labelNames: ['cause'], registers: [registry] });
  const recycles = new client.Counter({ name: 'xiaozhi_worker_recycles_total', help: 'Gateway workers replaced after --recycle-after-sessions sessions (or --recycle-retained-sources audio sources rtc-node kept), by how the old one ended (drained: exited 0).', labelNames: ['outcome'], registers: [registry] });
  new client.Gauge({
    name: 'xiaozhi_workers', help: 'Gateway workers running and ready, and configured.', labelNames: ['state'], registers: [registry],
    collect() {
      this.set({ state: 'ready' }, slots.filter((s) => s.worker && s.ports).length);
      this.set({ state: 'configured' }, n);
      this.set({ state: 'draining' }, retiring.filter((s) => s.worker).length);
    },
  });

  let incarnations = 0;
  const newSlot = (index: number, udpPort: number): Slot => ({
    index, id: ++incarnations, retiring: false, replaces: undefined, udpPort, worker: undefined, ports: undefined, pid: undefined,
    startedAt: 0, nextDelayMs: RESTART_BACKOFF.firstMs, restartTimer: undefined, everReady: false,
  });
  const slots: Slot[] = Array.from({ length: n }, (_, index) => newSlot(index, config.udpPort === 0 ? 0 : config.udpPort + index));
  /** Recycled workers still draining (at most one: there is one spare UDP port). */
  const retiring: Slot[] = [];
  /** The UDP port no worker holds: the next replacement binds it (0: ephemeral ports, none reserved). */
  let sparePort = config.udpPort === 0 ? 0 : config.udpPort + n;
  /** Every worker process alive or starting, draining ones included. */
  const live = (): Slot[] => slots.concat(retiring);
  /** Which worker holds the live connection of each client id (one device, one connection). */
  const directory = new Map<string, { slot: Slot; connectionId: number }>();
  const firmware = new Map<string, string>();
  const collecting = new Map<string, (metrics: unknown[] | undefined) => void>();
  const asking = new Map<string, (answer: Extract<WorkerToPrimary, { type: 'xiaozhi:directory-answer' }> | undefined) => void>();
  let askId = 0;
  let collectId = 0;
  let startError: Error | undefined;
  let announced: { mqtt: number; http: number; mqttTls?: number } | undefined;
  let state: 'starting' | 'running' | 'stopping' = 'starting';
  let finish!: (code: number) => void;
  const done = new Promise<number>((r) => { finish = r; });

  const send = (slot: Slot, m: PrimaryToWorker): void => {
    if (slot.worker?.isConnected()) slot.worker.send(m);
  };

  const fork = (slot: Slot): void => {
    const worker = cluster.fork({ [WORKER_INDEX_ENV]: String(slot.index) });
    slot.worker = worker;
    slot.ports = undefined;
    slot.pid = worker.process.pid;
    slot.startedAt = Date.now();
    worker.on('message', (m: unknown) => {
      if (slot.worker === worker && isClusterMessage<WorkerToPrimary>(m)) onMessage(slot, m);
    });
    worker.on('exit', (code, signal) => onExit(slot, worker, code, signal));
  };

  const onMessage = (slot: Slot, m: WorkerToPrimary): void => {
    switch (m.type) {
      case 'xiaozhi:want-init':
        send(slot, {
          type: 'xiaozhi:init', index: slot.index, udpPort: slot.udpPort, udpPortFallback: config.udpPort === 0,
          // The public port sits at the same offset from the public range as the bound one (a replacement uses the spare).
          ...(config.publicUdpPort !== undefined ? { publicUdpPort: config.publicUdpPort + (config.udpPort === 0 ? slot.index : slot.udpPort - config.udpPort) } : {}),
          ...(signatureKey !== undefined ? { signatureKey } : {}),
          firmware: [...firmware],
        });
        break;
      case 'xiaozhi:ready':
        slot.ports = m.ports;
        slot.pid = m.pid;
        slot.udpPort = m.ports.udp;
        if (slot.everReady) {
          logger.info({ worker: slot.index, pid: m.pid, udp: m.ports.udp }, 'worker restarted: ready');
        } else {
          slot.everReady = true;
          if (state === 'starting' && slots.every((s) => s.everReady)) announce();
          else if (state === 'running') logger.info({ worker: slot.index, pid: m.pid, udp: m.ports.udp }, 'replacement worker ready');
        }
        if (slot.replaces) {
          // Only now: the old worker's listeners close after the new one's are open, so the shared
          // MQTT and HTTP ports never go without a worker (with --workers 1, nobody else holds them).
          send(slot.replaces, { type: 'xiaozhi:drain', drainS: config.recycleDrainS });
          slot.replaces = undefined;
        }
        break;
      case 'xiaozhi:recycle-request':
        recycle(slot, m.sessions, m.retained);
        break;
      case 'xiaozhi:start-failed':
        startError ??= Object.assign(new Error(m.error), m.code ? { code: m.code } : {});
        logger.error({ worker: slot.index, err: m.error, code: m.code }, 'worker did not start');
        break;
      case 'xiaozhi:device-connected': {
        const previous = directory.get(m.clientId);
        // The same worker replaces its own connection itself (the broker's takeover).
        if (previous && previous.slot !== slot) {
          send(previous.slot, { type: 'xiaozhi:close-device', clientId: m.clientId, connectionId: previous.connectionId });
        }
        directory.set(m.clientId, { slot, connectionId: m.connectionId });
        break;
      }
      case 'xiaozhi:device-disconnected': {
        const entry = directory.get(m.clientId);
        if (entry && entry.slot === slot && entry.connectionId === m.connectionId) directory.delete(m.clientId);
        break;
      }
      case 'xiaozhi:firmware':
        firmware.delete(m.mac);
        firmware.set(m.mac, m.version);
        if (firmware.size > FIRMWARE_MAX) firmware.delete(firmware.keys().next().value!);
        for (const other of live()) if (other !== slot) send(other, { type: 'xiaozhi:firmware', mac: m.mac, version: m.version });
        break;
      case 'xiaozhi:metrics-request':
        aggregate().then(
          (text) => send(slot, { type: 'xiaozhi:metrics-reply', id: m.id, text }),
          (err: Error) => send(slot, { type: 'xiaozhi:metrics-reply', id: m.id, error: err.message }),
        );
        break;
      case 'xiaozhi:metrics-json':
        collecting.get(`${m.id}:${slot.id}`)?.(m.metrics);
        break;
      case 'xiaozhi:directory-request':
        void askWorkers(m.question).then((reply) => send(slot, { type: 'xiaozhi:directory-reply', id: m.id, ...reply }));
        break;
      case 'xiaozhi:directory-answer':
        asking.get(`${m.id}:${slot.id}`)?.(m);
        break;
    }
  };

  // One worker recycles at a time: its replacement starts on the spare UDP port; when that one is
  // ready the old one drains, and its port becomes the spare once it has exited.
  const recycle = (slot: Slot, sessions: number, retained: number): void => {
    if (state !== 'running' || slot.retiring || slots[slot.index] !== slot || !slot.ports || retiring.length > 0) return;
    const replacement = newSlot(slot.index, sparePort);
    sparePort = config.udpPort === 0 ? 0 : slot.udpPort;
    slot.retiring = true;
    retiring.push(slot);
    replacement.replaces = slot;
    slots[slot.index] = replacement;
    logger.info({ worker: slot.index, pid: slot.pid, sessions, retained, udp: replacement.udpPort }, 'recycling a worker: starting its replacement, then draining it');
    fork(replacement);
  };

  const announce = (): void => {
    state = 'running';
    const first = slots[0]!.ports!;
    announced = { mqtt: first.mqtt, http: first.http, ...(first.mqttTls !== undefined ? { mqttTls: first.mqttTls } : {}) };
    const udp = slots.map((s) => s.ports!.udp);
    logger.info({
      ports: { ...announced, udp },
      workers: slots.map((s) => ({ worker: s.index, pid: s.pid, udp: s.ports!.udp })),
      publicHost: config.publicHost, agent: config.agent, auth: config.auth,
    }, 'ready');
  };

  const onExit = (slot: Slot, worker: Worker, code: number | null, signal: string | null): void => {
    if (slot.worker !== worker) return;
    slot.worker = undefined;
    slot.ports = undefined;
    // Its devices' connections died with it: they are nobody's now.
    for (const [clientId, e] of directory) if (e.slot === slot) directory.delete(clientId);
    for (const [key, resolve] of collecting) if (key.endsWith(`:${slot.id}`)) resolve(undefined);
    for (const [key, resolve] of asking) if (key.endsWith(`:${slot.id}`)) resolve(undefined);
    if (slot.retiring) {
      retiring.splice(retiring.indexOf(slot), 1);
      // Drained and gone (or died while draining: its replacement runs already, nothing to restart).
      const drained = code === 0 && !signal;
      recycles.inc({ outcome: drained ? 'drained' : 'died' });
      if (drained) logger.info({ worker: slot.index, pid: worker.process.pid, livedMs: Date.now() - slot.startedAt }, 'recycled worker drained and exited');
      else logger.error({ worker: slot.index, pid: worker.process.pid, code, signal }, 'recycled worker died while draining');
    }
    if (state === 'stopping') {
      if (live().every((s) => !s.worker)) finish(0);
      return;
    }
    if (slot.retiring) return;
    const livedMs = Date.now() - slot.startedAt;
    deaths.inc({ cause: signal ?? `exit ${code}` });
    logger.error({ worker: slot.index, pid: worker.process.pid, code, signal, livedMs }, 'worker died');
    if (state === 'starting') {
      // As with one process: a gateway that cannot start fails the command instead of retrying forever.
      logger.fatal({ worker: slot.index }, 'a worker failed during start: stopping');
      void shutdown('start failed').then(() => finish(1));
      return;
    }
    const { delayMs, nextDelayMs } = restartDelay(slot.nextDelayMs, livedMs);
    slot.nextDelayMs = nextDelayMs;
    slot.restartTimer = setTimeout(() => {
      slot.restartTimer = undefined;
      if (state === 'stopping') return;
      restarts.inc();
      logger.info({ worker: slot.index, delayMs, udp: slot.udpPort }, 'worker restarting');
      fork(slot);
    }, delayMs);
  };

  // Every worker's registry as JSON, summed by prom-client's AggregatorRegistry.aggregate (metrics
  // with a `worker` label stay apart), plus the primary's own. Collected here rather than with
  // clusterMetrics(): a worker that is starting or dying is left out after 3 s instead of failing
  // the whole scrape.
  const aggregate = async (): Promise<string> => {
    const id = ++collectId;
    const parts = await Promise.all(live().filter((s) => s.worker && s.ports).map((s) => new Promise<unknown[] | undefined>((resolve) => {
      const key = `${id}:${s.id}`;
      const timer = setTimeout(() => settle(undefined), COLLECT_TIMEOUT_MS);
      const settle = (metrics: unknown[] | undefined) => {
        clearTimeout(timer);
        collecting.delete(key);
        resolve(metrics);
      };
      collecting.set(key, settle);
      send(s, { type: 'xiaozhi:metrics-collect', id });
    })));
    const all = parts.filter((p): p is unknown[] => Array.isArray(p));
    all.push(await registry.getMetricsAsJSON());
    return client.AggregatorRegistry.aggregate(all as Parameters<typeof client.AggregatorRegistry.aggregate>[0]).metrics();
  };

  // The device directory without Redis: every ready worker answers for its own devices (a worker
  // that does not answer within the collect timeout is left out, as in a scrape).
  const askWorkers = async (question: DirectoryQuestion): Promise<{ devices?: DirectoryEntry[]; result?: DeliveryResult }> => {
    const id = ++askId;
    const answers = await Promise.all(live().filter((s) => s.worker && s.ports).map((s) => new Promise<Extract<WorkerToPrimary, { type: 'xiaozhi:directory-answer' }> | undefined>((resolve) => {
      const key = `${id}:${s.id}`;
      const timer = setTimeout(() => settle(undefined), COLLECT_TIMEOUT_MS);
      const settle = (a: Extract<WorkerToPrimary, { type: 'xiaozhi:directory-answer' }> | undefined) => {
        clearTimeout(timer);
        asking.delete(key);
        resolve(a);
      };
      asking.set(key, settle);
      send(s, { type: 'xiaozhi:directory-query', id, question });
    })));
    if (question.op === 'list') return { devices: answers.flatMap((a) => a?.devices ?? []) };
    return { result: answers.some((a) => a?.result === 'delivered') ? 'delivered' : 'offline' };
  };

  let shuttingDown: Promise<void> | undefined;
  const shutdown = (reason: string): Promise<void> => {
    shuttingDown ??= (async () => {
      state = 'stopping';
      logger.info({ reason, workers: live().filter((s) => s.worker).length }, 'stopping');
      for (const s of live()) {
        if (s.restartTimer) clearTimeout(s.restartTimer);
        send(s, { type: 'xiaozhi:stop', reason });
      }
      if (live().every((s) => !s.worker)) return;
      await new Promise<void>((resolve) => {
        const check = setInterval(() => {
          if (live().every((s) => !s.worker)) {
            clearInterval(check);
            resolve();
          }
        }, 20);
      });
    })();
    return shuttingDown;
  };

  const stopOnSignal = (signal: string) => {
    if (state === 'stopping') return;
    // The hard deadline: whatever hangs, no worker and no primary outlives 10 s after the signal.
    setTimeout(() => {
      logger.error('forced exit after 10 s: killing the workers still running');
      for (const s of live()) s.worker?.process.kill('SIGKILL');
      process.exit(1);
    }, SHUTDOWN_DEADLINE_MS).unref();
    void shutdown(signal).then(() => finish(0));
  };
  process.once('SIGTERM', () => stopOnSignal('SIGTERM'));
  process.once('SIGINT', () => stopOnSignal('SIGINT'));
  const fatal = (kind: string) => (err: unknown) => {
    logger.fatal({ err, kind }, `${kind}: exiting (this is a bug; please report it with this log line)`);
    // Workers see the IPC channel close and drain themselves.
    process.exit(70);
  };
  process.on('uncaughtException', fatal('uncaughtException'));
  process.on('unhandledRejection', fatal('unhandledRejection'));

  const ports = udpPortCount(config);
  logger.info({
    workers: n, udpPorts: config.udpPort === 0 ? 'ephemeral' : `${config.udpPort}..${config.udpPort + ports - 1}`,
    ...(config.recycleAfterSessions > 0 ? { recycleAfterSessions: config.recycleAfterSessions } : {}),
  }, 'starting workers');
  for (const slot of slots) fork(slot);
  const code = await done;
  logger.info({ code }, 'stopped');
  logger.flush();
  // As with one process, a start that failed ends the command with the worker's error (the port...).
  if (!announced && startError) throw startError;
  return code;
}
