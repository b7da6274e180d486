// The multi-machine deployment on loopback, as README "Scale out" describes it: Debian's
// redis-server and HAProxy (examples/haproxy.cfg, ports from the environment) in front of two
// gateway instances (the compiled CLI, `start --workers 2 --redis-url ... --proxy-protocol`), and
// 200 devices (test/helpers/fleet-device.ts: each its own 127.x address, OTA and MQTT through
// HAProxy, UDP straight to the instance, the firmware's reconnect) talking to the echo agent.
//
// One instance is killed with SIGKILL (its whole process group, as a machine that dies): every
// device it held reconnects through HAProxy and hears its echo again within 30 s; the others lose
// no frame and no connection; no device ever has two live connections; GET /devices converges to
// the truth; POST /devices/{id}/messages reaches devices on either instance. Then one worker of the
// surviving instance is killed: only its devices reconnect. Failover timings go to one summary line.
import { spawn, type ChildProcess } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FleetDevice } from './helpers/fleet-device.js';
import { speechPackets } from './helpers/fixtures.js';
import { startGatewayProcess, type GatewayProcess, type WorkersReadyLine } from './helpers/gateway-process.js';
import { freePort, RedisServer } from './helpers/redis-server.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const DEVICES = Number(process.env.XIAOZHI_DEPLOYMENT_DEVICES ?? 200);
const FRAMES = 8;
const PAUSE_MS = 2500;
const RECONNECT_BOUND_MS = 30_000;
const KEY = 'deployment-test-signature-key-0123456789';
const TOKEN = 'deployment-test-admin-token-0123456789';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Instance {
  name: string;
  gateway: GatewayProcess;
  mqtt: number;
  http: number;
  ready: WorkersReadyLine;
}

const exited = (i: Instance) => i.gateway.exit !== null;
/** Its error and fatal log lines (the only ones kept), for failure messages. */
const errors = (i: Instance) => i.gateway.logs.map((l) => JSON.stringify(l).slice(0, 400));

let redis: RedisServer;
let haproxy: ChildProcess;
let haproxyOutput = '';
const instances: Instance[] = [];
const devices: FleetDevice[] = [];
let otaPort = 0;
let mqttPort = 0;
/** Highest number of device connections the live instances reported at once, sampled every second. */
let maxConnections = 0;
let sampler: ReturnType<typeof setInterval> | undefined;

const frames = speechPackets(FRAMES).packets;

async function startInstance(name: string): Promise<Instance> {
  const [mqtt, http] = [await freePort(), await freePort()];
  const gateway = await startGatewayProcess([
    '--workers', '2', '--instance-id', name,
    '--mqtt-port', String(mqtt), '--http-port', String(http), '--udp-port', '0',
    '--public-host', '127.0.0.1', '--public-mqtt-port', String(mqttPort),
    '--redis-url', redis.url, '--signature-key', KEY, '--admin-token', TOKEN,
    '--proxy-protocol', '--trusted-proxies', '127.0.0.1', '--log-level', 'info',
  ], {
    detached: true,
    echoStderr: true,
    // 200 devices log a lot: only error and fatal lines are kept (for failure messages).
    keep: (l) => (l.level ?? 0) >= 50,
  });
  const instance: Instance = { name, gateway, mqtt, http, ready: gateway.ready as WorkersReadyLine };
  instances.push(instance);
  return instance;
}

async function killGroup(i: Instance): Promise<void> {
  process.kill(-i.gateway.child.pid!, 'SIGKILL');
  await i.gateway.exited();
}

async function admin(i: Instance, path: string, init: RequestInit = {}): Promise<Response> {
  return fetch(`http://127.0.0.1:${i.http}${path}`, { ...init, headers: { authorization: `Bearer ${TOKEN}`, ...(init.headers ?? {}) } });
}

async function directory(i: Instance): Promise<Array<{ deviceId: string; instance: string; worker: number; session: string; firmware?: string }>> {
  const res = await admin(i, '/devices');
  if (res.status !== 200) throw new Error(`GET /devices ${res.status}`);
  return ((await res.json()) as { devices: never[] }).devices;
}

/** Where the device's current session lives, from the UDP port its hello reply named. */
function placeOf(d: FleetDevice): { instance: string; worker: number } | undefined {
  const port = d.hello?.udp.port;
  for (const i of instances) {
    const w = i.ready.workers.find((x) => x.udp === port);
    if (w) return { instance: i.name, worker: w.worker };
  }
  return undefined;
}

async function connectionsOf(i: Instance): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${i.http}/metrics`)).text();
  let n = 0;
  for (const m of text.matchAll(/^xiaozhi_mqtt_connections\{[^}]*\} (\S+)$/gm)) n += Number(m[1]);
  return n;
}

async function until<T>(what: string, timeoutMs: number, fn: () => Promise<T | undefined | false> | T | undefined | false): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
      last = undefined;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms: ${what}${last ? ` (${(last as Error).message})` : ''}${haproxy?.exitCode !== null && haproxy ? `; haproxy exited: ${haproxyOutput.slice(-500)}` : ''}`);
    await sleep(200);
  }
}

/** Why the devices that are not back yet are not: for the failure message. */
function stragglers(list: FleetDevice[], back: Map<FleetDevice, number>, since: number): string {
  const late = list.filter((d) => !back.has(d));
  const sample = late.slice(0, 5).map((d) => ({
    mac: d.mac, connected: d.connected, losses: d.losses.length, place: placeOf(d),
    turns: d.turns.filter((t) => t.start > since).map((t) => `${Math.round(t.start - since)}ms ${t.ok ? 'ok' : `fail(${t.error ?? `frames ${t.frames} gap ${t.gap}`})`}`).slice(-4),
  }));
  const state = instances.map((i) => `${i.name} ${exited(i) ? 'exited' : 'running'}${errors(i).length ? `, errors: ${errors(i).slice(-3).join(' | ')}` : ''}`).join('; ');
  return `${late.length} of ${list.length} not back: ${JSON.stringify(sample)}; ${state}; haproxy: ${haproxyOutput.slice(-600)}`;
}

function percentile(values: number[], p: number): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}

beforeAll(async () => {
  redis = await RedisServer.start();
  [mqttPort, otaPort] = [await freePort(), await freePort()];
  const gw1 = await startInstance('gw1');
  const gw2 = await startInstance('gw2');
  haproxy = spawn('haproxy', ['-db', '-f', join(root, 'examples', 'haproxy.cfg')], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      ...process.env, XZ_BIND: '127.0.0.1', XZ_MQTT_PORT: String(mqttPort), XZ_OTA_PORT: String(otaPort),
      XZ_GW1_HOST: '127.0.0.1', XZ_GW1_MQTT: String(gw1.mqtt), XZ_GW1_HTTP: String(gw1.http),
      XZ_GW2_HOST: '127.0.0.1', XZ_GW2_MQTT: String(gw2.mqtt), XZ_GW2_HTTP: String(gw2.http),
    },
  });
  haproxy.stdout!.on('data', (c: Buffer) => { haproxyOutput += c.toString(); });
  haproxy.stderr!.on('data', (c: Buffer) => { haproxyOutput += c.toString(); });
  // Ready when its OTA frontend answers through to a gateway (both servers' checks take ~2 s).
  await until("HAProxy serving OTA", 15_000, async () => {
    const res = await fetch(`http://127.0.0.1:${otaPort}/readyz`).catch(() => undefined);
    return res?.status === 200;
  });
  await sleep(2500);
  // A scrape costs every worker a metrics snapshot: once a second, never overlapping.
  let sampling = false;
  sampler = setInterval(() => {
    if (sampling) return;
    sampling = true;
    void Promise.all(instances.filter((i) => !exited(i)).map((i) => connectionsOf(i).catch(() => 0))).then((counts) => {
      maxConnections = Math.max(maxConnections, counts.reduce((a, b) => a + b, 0));
      sampling = false;
    });
  }, 1000);
}, 180_000);

afterAll(async () => {
  clearInterval(sampler);
  await Promise.allSettled(devices.map((d) => d.stop()));
  for (const i of instances) await i.gateway.stop(12_000);
  haproxy?.kill('SIGKILL');
  await redis?.stop();
}, 60_000);

describe('2 instances x 2 workers behind HAProxy, one Redis', () => {
  it(`${DEVICES} devices: OTA + MQTT through HAProxy, echo on every device, spread over both instances`, async () => {
    for (let i = 0; i < DEVICES; i++) {
      // 127.3.x.y: every device its own address (the PROXY header carries it to the gateway).
      const d = new FleetDevice(`02:00:00:03:${(i >> 8).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}`, `127.3.${i >> 8}.${(i & 255) + 1}`, otaPort, frames);
      devices.push(d);
    }
    // Ramp: 20 devices at a time boot (OTA, MQTT), then start talking.
    for (let i = 0; i < DEVICES; i += 20) {
      await Promise.all(devices.slice(i, i + 20).map(async (d) => {
        await d.ota();
        // As the firmware at boot: a failed MQTT connect leaves the device idle, and its next
        // conversation connects again (counted below: every device must get through).
        await d.connect();
        d.run(PAUSE_MS);
      }));
    }
    await until('every device heard its echo', 60_000, () => devices.every((d) => d.turns.some((t) => t.ok)));
    const places = devices.map(placeOf);
    const count = (name: string) => places.filter((p) => p?.instance === name).length;
    expect(count('gw1')).toBeGreaterThan(DEVICES / 5);
    expect(count('gw2')).toBeGreaterThan(DEVICES / 5);
    // The UDP binding accepted each device's own address: it arrived in the PROXY header.
    expect(devices.every((d) => d.turns.filter((t) => t.ok).length > 0)).toBe(true);
  }, 150_000);

  it('GET /devices lists every device once, where it really is, with its firmware from OTA', async () => {
    const listed = await until('directory = truth', 15_000, async () => {
      const list = await directory(instances[1]!);
      if (list.length !== DEVICES) return undefined;
      return list.every((e) => {
        const d = devices.find((x) => x.mac === e.deviceId);
        const p = d && placeOf(d);
        return p && p.instance === e.instance && p.worker === e.worker;
      }) ? list : undefined;
    });
    expect(new Set(listed.map((e) => e.deviceId)).size).toBe(DEVICES);
    expect(listed.filter((e) => e.firmware === '2.4.0').length).toBe(DEVICES);
  });

  it('POST /devices/{id}/messages reaches devices on either instance, through either instance', async () => {
    const on = (name: string) => devices.find((d) => placeOf(d)?.instance === name)!;
    for (const [via, target] of [[instances[0]!, on('gw2')], [instances[1]!, on('gw1')], [instances[0]!, on('gw1')]] as const) {
      const note = { type: 'alert', status: 'notice', message: `to ${target.mac} via ${via.name}`, emotion: 'neutral' };
      const got = target.waitFor((m) => m.message === note.message, 3000);
      got.catch(() => {});  // awaited below, after the request
      const res = await admin(via, `/devices/${target.mac}/messages`, { method: 'POST', body: JSON.stringify(note), headers: { 'content-type': 'application/json' } });
      expect(res.status).toBe(202);
      await got;
    }
    expect((await admin(instances[0]!, '/devices/02:00:00:0f:0f:0f/messages', { method: 'POST', body: '{"type":"alert"}' })).status).toBe(404);
  });

  it('SIGKILL of one instance: its devices are back with an echo within 30 s through HAProxy; the others lose nothing', async () => {
    const [gw1, gw2] = instances as [Instance, Instance];
    const victims = devices.filter((d) => placeOf(d)?.instance === 'gw1');
    const survivors = devices.filter((d) => placeOf(d)?.instance === 'gw2');
    const survivorTurnsBefore = new Map(survivors.map((d) => [d, d.turns.length]));
    const survivorLossesBefore = new Map(survivors.map((d) => [d, d.losses.length]));
    const killedAt = performance.now();
    await killGroup(gw1);
    const backAt = new Map<FleetDevice, number>();
    await until(`every device of gw1 hears its echo again on gw2 (${victims.length} devices)`, RECONNECT_BOUND_MS + 5000, () => {
      for (const d of victims) {
        if (backAt.has(d)) continue;
        const t = d.turns.find((x) => x.start > killedAt && x.ok);
        if (t && placeOf(d)?.instance === 'gw2') backAt.set(d, t.end - killedAt);
      }
      return backAt.size === victims.length;
    }).catch((err: Error) => { throw new Error(`${err.message}; ${stragglers(victims, backAt, killedAt)}`); });
    const times = [...backAt.values()];
    expect(Math.max(...times)).toBeLessThan(RECONNECT_BOUND_MS);
    // The others: no connection lost, every turn since the kill complete without a gap.
    for (const d of survivors) {
      expect(d.losses.length).toBe(survivorLossesBefore.get(d));
      const since = d.turns.slice(survivorTurnsBefore.get(d)!);
      expect(since.filter((t) => !t.ok)).toEqual([]);
    }
    expect(maxConnections).toBeLessThanOrEqual(DEVICES);
    const list = await until('directory converged after the kill', 15_000, async () => {
      const l = await directory(gw2);
      return l.length === DEVICES && l.every((e) => e.instance === 'gw2') ? l : undefined;
    });
    expect(new Set(list.map((e) => e.deviceId)).size).toBe(DEVICES);
    failover.instance = { devices: victims.length, p50: percentile(times, 50), max: Math.max(...times) };
  }, 60_000);

  it('SIGKILL of one worker: only its devices reconnect', async () => {
    const gw2 = instances[1]!;
    const victimWorker = gw2.ready.workers[0]!;
    const victims = devices.filter((d) => placeOf(d)?.instance === 'gw2' && placeOf(d)?.worker === victimWorker.worker);
    const others = devices.filter((d) => !victims.includes(d));
    expect(victims.length).toBeGreaterThan(0);
    const othersLosses = new Map(others.map((d) => [d, d.losses.length]));
    const othersTurns = new Map(others.map((d) => [d, d.turns.length]));
    const killedAt = performance.now();
    process.kill(victimWorker.pid, 'SIGKILL');
    const backAt = new Map<FleetDevice, number>();
    await until(`every device of the killed worker hears its echo again (${victims.length} devices)`, RECONNECT_BOUND_MS + 5000, () => {
      for (const d of victims) {
        if (backAt.has(d)) continue;
        const t = d.turns.find((x) => x.start > killedAt && x.ok);
        if (t) backAt.set(d, t.end - killedAt);
      }
      return backAt.size === victims.length;
    }).catch((err: Error) => { throw new Error(`${err.message}; ${stragglers(victims, backAt, killedAt)}`); });
    for (const d of others) {
      expect(d.losses.length).toBe(othersLosses.get(d));
      expect(d.turns.slice(othersTurns.get(d)!).filter((t) => !t.ok)).toEqual([]);
    }
    const times = [...backAt.values()];
    expect(Math.max(...times)).toBeLessThan(RECONNECT_BOUND_MS);
    expect(maxConnections).toBeLessThanOrEqual(DEVICES);
    failover.worker = { devices: victims.length, p50: percentile(times, 50), max: Math.max(...times) };
    const turns = devices.reduce((n, d) => n + d.turns.length, 0);
    // One summary line (the figures README and the report quote).
    console.log(`deployment: ${DEVICES} devices, ${turns} turns; instance SIGKILL: ${failover.instance?.devices} devices back with echo p50 ${Math.round(failover.instance?.p50 ?? NaN)} ms, max ${Math.round(failover.instance?.max ?? NaN)} ms; worker SIGKILL: ${failover.worker.devices} devices p50 ${Math.round(failover.worker.p50)} ms, max ${Math.round(failover.worker.max)} ms; max live connections ${maxConnections}`);
  }, 60_000);
});

const failover: { instance?: { devices: number; p50: number; max: number }; worker?: { devices: number; p50: number; max: number } } = {};
