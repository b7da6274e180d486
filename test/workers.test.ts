// `start --workers 2` as deployed (the compiled CLI in its own process): 20 raw devices spread over
// two workers, each worker with its own UDP port; /metrics summed over workers; a worker killed with
// SIGKILL loses only its own devices (the others keep talking without a lost downlink frame), is
// restarted on the same UDP port, and its devices reconnect; a client id that connects again on the
// other worker closes its old connection within 1 s; SIGTERM drains everything with exit code 0.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { availableParallelism } from 'node:os';
import { RESTART_BACKOFF, restartDelay } from '../src/cluster/primary.js';
import { ConfigError, loadConfig } from '../src/config.js';
import { speechPackets } from './helpers/fixtures.js';
import { startGatewayProcess, type GatewayProcess, type LogLine, type WorkersReadyLine } from './helpers/gateway-process.js';
import { echoTurn, expectWholeEcho } from './helpers/echo-turn.js';
import { RawDevice } from './helpers/raw-device.js';
import { metricSamples as samples } from './helpers/metrics-text.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const DEVICES = 20;
const FRAMES = 15;

let gateway: GatewayProcess;
let logs: LogLine[];
let ready: WorkersReadyLine;
let http = 0;

const speechFrames = speechPackets(FRAMES).packets;

/** A device whose MQTT connection reports when the gateway closed it. */
interface Tracked { mac: string; d: RawDevice; closedAt?: number; connectedAt: number }

async function connect(mac: string): Promise<Tracked> {
  const d = await RawDevice.connect(http, mac);
  const t: Tracked = { mac, d, connectedAt: performance.now() };
  d.mqtt.on('close', () => { t.closedAt ??= performance.now(); });
  return t;
}


async function metrics(): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${http}/metrics`);
  expect(res.status).toBe(200);
  return res.text();
}

const waitLog = (pred: (l: LogLine) => boolean, timeoutMs: number) => gateway.waitLog(pred, timeoutMs, 'a log line');

const talk = (d: RawDevice) => echoTurn(d, speechFrames, FRAMES, 15_000);
const expectWhole = (downlink: Buffer[]) => expectWholeEcho(downlink, FRAMES);

const mac = (i: number) => `02:00:00:00:01:${i.toString(16).padStart(2, '0')}`;
const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

beforeAll(async () => {
  // No --signature-key: the primary must hand one generated key to both workers (OTA on one worker,
  // MQTT on the other).
  gateway = await startGatewayProcess(['--workers', '2', '--mqtt-port', '0', '--udp-port', '0', '--http-port', '0', '--public-host', '127.0.0.1', '--log-level', 'info'], { echoStderr: true, readyTimeoutMs: 30_000 });
  logs = gateway.logs;
  ready = gateway.ready as WorkersReadyLine;
  expect(ready.role).toBe('primary');
  http = ready.ports.http;
});

afterAll(async () => {
  await gateway?.stop();
});

describe('workers config', () => {
  const load = (flags: Record<string, string>, env: NodeJS.ProcessEnv = {}) => loadConfig({ flags: { '--public-host': '127.0.0.1', ...flags }, env });
  it('defaults to 1 (one plain process); accepts a count or auto from flag and environment', () => {
    expect(load({}).workers).toBe(1);
    expect(load({ '--workers': '3' }).workers).toBe(3);
    expect(load({}, { XIAOZHI_WORKERS: 'auto' }).workers).toBe(availableParallelism());
    expect(load({ '--workers': '2' }, { XIAOZHI_WORKERS: 'auto' }).workers).toBe(2);
  });
  it('names the key and the source of a bad value, and refuses a UDP range beyond 65535', () => {
    expect(() => load({ '--workers': 'many' })).toThrow(/--workers: expected a number or auto/);
    expect(() => load({ '--workers': '0' })).toThrow(ConfigError);
    expect(() => load({ '--workers': '4', '--udp-port': '65534' })).toThrow(/udpPort \(from flag --udp-port\): 4 worker\(s\) need the ports 65534..65537/);
    expect(load({ '--workers': '4', '--udp-port': '0' }).udpPort).toBe(0);
  });
});

describe('restart backoff', () => {
  it('1 s doubling to 30 s for a worker that keeps dying; back to 1 s after 60 s of life', () => {
    let next: number = RESTART_BACKOFF.firstMs;
    const delays: number[] = [];
    for (let i = 0; i < 7; i++) {
      const r = restartDelay(next, 2000);
      delays.push(r.delayMs);
      next = r.nextDelayMs;
    }
    expect(delays).toEqual([1000, 2000, 4000, 8000, 16000, 30000, 30000]);
    expect(restartDelay(next, 60_000).delayMs).toBe(1000);
    expect(restartDelay(next, 60_000).nextDelayMs).toBe(2000);
  });
});

describe('start --workers 2', () => {
  const devices: Tracked[] = [];

  it('announces one ready line: shared MQTT and HTTP ports, one UDP port per worker, the worker pids', () => {
    expect(ready.ports.mqtt).toBeGreaterThan(0);
    expect(ready.ports.udp).toHaveLength(2);
    expect(new Set(ready.ports.udp).size).toBe(2);
    expect(ready.workers.map((w) => w.udp)).toEqual(ready.ports.udp);
    expect(logs.filter((l) => l.msg === 'ready')).toHaveLength(1);
  });

  it('20 devices land on both workers; each hears its echo; /metrics sums the workers', async () => {
    for (let i = 0; i < DEVICES; i++) devices.push(await connect(mac(i)));
    await Promise.all(devices.map((t) => t.d.sayHello()));
    const ports = new Set(devices.map((t) => t.d.hello!.udp.port));
    expect([...ports].sort()).toEqual([...ready.ports.udp].sort());
    const turns = await Promise.all(devices.map((t) => talk(t.d)));
    for (const downlink of turns) expectWhole(downlink);

    const text = await metrics();
    const sessions = samples(text, 'xiaozhi_sessions');
    expect(sessions.reduce((a, s) => a + s.value, 0)).toBe(DEVICES);
    expect(new Set(sessions.map((s) => s.labels.worker))).toEqual(new Set(['0', '1']));
    expect(samples(text, 'xiaozhi_mqtt_connections').reduce((a, s) => a + s.value, 0)).toBe(DEVICES);
    const info = samples(text, 'xiaozhi_worker_info');
    expect(info.map((s) => Number(s.labels.pid)).sort()).toEqual(ready.workers.map((w) => w.pid).sort());
    // Counters are summed over workers: every device said hello once.
    const hellos = samples(text, 'xiaozhi_gateway_events_total').find((s) => s.labels.event === 'hello_accepted');
    expect(hellos?.value).toBe(DEVICES);
    // Every OTA's firmware version reached the other worker (a session there finds it).
    const shared = samples(text, 'xiaozhi_gateway_events_total').find((s) => s.labels.event === 'firmware_shared');
    expect(shared?.value).toBe(DEVICES);
    expect(samples(text, 'process_resident_memory_bytes').map((s) => s.labels.worker).sort()).toEqual(['0', '1']);
    // Event-loop busy time per worker (not summed): each worker's own, positive, below its uptime.
    const active = samples(text, 'xiaozhi_event_loop_active_seconds_total');
    expect(active.map((s) => s.labels.worker).sort()).toEqual(['0', '1']);
    for (const s of active) expect(s.value).toBeGreaterThan(0);
  }, 120_000);

  it('SIGKILL of one worker: only its devices drop, the others lose no downlink frame; it restarts on its UDP port and its devices reconnect', async () => {
    const victim = ready.workers[1]!;
    const lost = devices.filter((t) => t.d.hello!.udp.port === victim.udp);
    const kept = devices.filter((t) => t.d.hello!.udp.port !== victim.udp);
    expect(lost.length).toBeGreaterThan(0);
    expect(kept.length).toBeGreaterThan(0);

    // Everybody talks; the worker dies while the survivors' echoes are playing.
    const turns = devices.map((t) => talk(t.d).then((x) => x, () => null));
    await sleep(FRAMES * 60 + 400);
    const killedAt = performance.now();
    process.kill(victim.pid, 'SIGKILL');
    const keptTurns = await Promise.all(kept.map((t) => turns[devices.indexOf(t)]!));
    for (const downlink of keptTurns) {
      expect(downlink).not.toBeNull();
      expectWhole(downlink!);
    }
    // The kill landed in the middle of the survivors' playback (their downlink went on across it).
    const afterKill = kept.map((t) => t.d.datagrams.filter((x) => x.at > killedAt).length);
    expect(Math.min(...afterKill)).toBeGreaterThan(0);
    const deadline = performance.now() + 3000;
    while (lost.some((t) => t.closedAt === undefined) && performance.now() < deadline) await sleep(20);
    expect(lost.filter((t) => t.closedAt === undefined)).toHaveLength(0);
    expect(kept.filter((t) => t.closedAt !== undefined)).toHaveLength(0);
    const dropMs = Math.max(...lost.map((t) => t.closedAt! - killedAt));

    // As the firmware does: reconnect at once (OTA, MQTT, hello); the live worker takes them.
    for (const t of lost) await t.d.close();
    const reconnectAt = performance.now();
    const back = await Promise.all(lost.map((t) => connect(t.mac)));
    await Promise.all(back.map((t) => t.d.sayHello()));
    const reconnectMs = performance.now() - reconnectAt;
    const backTurns = await Promise.all(back.map((t) => talk(t.d)));
    for (const downlink of backTurns) expectWhole(downlink);
    for (const t of back) devices[devices.findIndex((x) => x.mac === t.mac)] = t;

    const died = await waitLog((l) => l.msg === 'worker died' && l.worker === 1, 5000);
    expect(died.signal).toBe('SIGKILL');
    const restarted = await waitLog((l) => l.msg === 'worker restarted: ready' && l.worker === 1, 15_000);
    expect(restarted.udp).toBe(victim.udp);
    const restartMs = (restarted.time as number) - (died.time as number);
    // The restarted worker takes new connections on the same UDP port.
    const extra: Tracked[] = [];
    for (let i = 0; i < 4 && !extra.some((t) => t.d.hello?.udp.port === victim.udp); i++) {
      const t = await connect(mac(0x40 + i));
      extra.push(t);
      await t.d.sayHello();
    }
    const onRestarted = extra.find((t) => t.d.hello!.udp.port === victim.udp);
    expect(onRestarted).toBeDefined();
    expectWhole(await talk(onRestarted!.d));
    for (const t of extra) await t.d.close();

    const text = await metrics();
    expect(samples(text, 'xiaozhi_worker_restarts_total')[0]?.value).toBe(1);
    expect(samples(text, 'xiaozhi_worker_info')).toHaveLength(2);
    console.log(`worker kill: ${lost.length}/${devices.length} devices dropped (all within ${Math.round(dropMs)} ms), ${kept.length} kept talking with no downlink gap (${afterKill.reduce((a, b) => a + b, 0)} of their packets arrived after the kill); all dropped devices reconnected (OTA, MQTT, hello) in ${Math.round(reconnectMs)} ms; worker restarted ${restartMs} ms after its death`);
  }, 120_000);

  it('a client id connecting again on the other worker closes the old connection within 1 s', async () => {
    const id = mac(0x60);
    let old = await connect(id);
    await old.d.sayHello();
    let crossWorker = 0;
    let takeoverMs = 0;
    for (let i = 0; i < 6 && crossWorker === 0; i++) {
      const next = await connect(id);
      await next.d.sayHello();
      const deadline = performance.now() + 1000;
      while (old.closedAt === undefined && performance.now() < deadline) await sleep(10);
      expect(old.closedAt).toBeDefined();
      expect(old.closedAt! - next.connectedAt).toBeLessThan(1000);
      if (next.d.hello!.udp.port !== old.d.hello!.udp.port) {
        crossWorker++;
        takeoverMs = old.closedAt! - next.connectedAt;
      }
      expect(next.closedAt).toBeUndefined();
      await old.d.close();
      old = next;
    }
    expect(crossWorker).toBe(1);
    // The new connection still talks.
    expectWhole(await talk(old.d));
    const takeovers = samples(await metrics(), 'xiaozhi_gateway_events_total').find((s) => s.labels.event === 'connection_takeover');
    expect(takeovers?.value).toBeGreaterThanOrEqual(1);
    devices.push(old);
    console.log(`cross-worker takeover: old connection closed ${Math.round(takeoverMs)} ms after the new one was accepted`);
  }, 60_000);

  it('SIGTERM drains every worker (goodbye to devices) and exits 0 within 10 s', async () => {
    const pids = logs.filter((l) => l.msg === 'worker restarted: ready').map((l) => l.pid as number).concat(ready.workers[0]!.pid);
    const t0 = performance.now();
    gateway.child.kill('SIGTERM');
    await gateway.exited();
    const code = gateway.exit!.code;
    expect(performance.now() - t0).toBeLessThan(10_000);
    expect(code).toBe(0);
    for (const pid of pids) expect(alive(pid)).toBe(false);
    await sleep(100);
    const live = devices.filter((t) => t.d.hello);
    expect(live.filter((t) => t.d.messages.some((m) => m.type === 'goodbye')).length).toBe(live.length);
    await Promise.all(devices.map((t) => t.d.close()));
  }, 20_000);
});
