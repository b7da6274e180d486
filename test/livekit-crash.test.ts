// Crash containment with LiveKit sessions: `start --workers 2` as deployed (the compiled CLI in its
// own process, agent 'livekit', a room cap per worker through --max-sessions), a real
// livekit-server, and an agent worker dispatched by name (test/helpers/livekit-agent.ts). Six
// devices spread over the two workers, each talking to its agent in both directions. Then one
// worker fails, three ways, one after the other:
//   1. SIGKILL (the kernel's OOM killer, an operator);
//   2. an uncaught exception thrown on the worker's main thread (what rtc-node's GC finalizer does
//      with "trying to drop an invalid handle"): the worker logs it as fatal and exits 70;
//   3. process.abort() (a native abort inside the FFI): SIGABRT.
// (2 and 3 are injected through the worker's own inspector, opened with SIGUSR1: no test hook in
// the gateway.) Each time: exactly the failed worker's devices lose their MQTT connection (with
// whole-gateway workers the device's connection lives in the worker; see README "Scale out on one
// machine" for what the firmware does then); the other worker's sessions keep flowing, uplink and
// downlink, with no drop counted and no downlink sequence gap; the primary restarts the worker
// (after its backoff); the dropped devices' next connect + hello is served by an agent again; no
// survivor logs a fatal error.
import WebSocket from 'ws';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestAgentWorker, type TestAgent } from './helpers/livekit-agent.js';
import { agentSpeech, deviceSpeech, startLivekit, waitUntil, type LivekitServerHandle } from './helpers/livekit-harness.js';
import { describeShare, machineShared, measureMachineShare } from './helpers/livekit-machine.js';
import { startGatewayProcess, type GatewayProcess, type LogLine, type WorkersReadyLine } from './helpers/gateway-process.js';
import { metricSum as sum } from './helpers/metrics-text.js';
import { RawDevice } from './helpers/raw-device.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const AGENT = 'xiaozhi-crash-agent';
const DEVICES = 6;
/** The room cap of each worker (--max-sessions applies per worker process). */
const ROOMS_PER_WORKER = 6;

let server: LivekitServerHandle;
let agentWorker: TestAgentWorker;
let gateway: GatewayProcess;
let logs: LogLine[];
/** Its stderr (and any stdout line that is not a log line). */
let stderrLines: string[];
let ready: WorkersReadyLine;
let http = 0;

// Uplink: the device's microphone, real speech in 60 ms Opus packets, looped.
const uplink = deviceSpeech(6).packets;
// Downlink: one agent utterance long enough to span a failure and what follows it.
const utterance = agentSpeech(9, 0.2);

interface Dev {
  mac: string;
  d: RawDevice;
  agent: TestAgent;
  closedAt?: number;
  /** The device streams its microphone until this is false. */
  talking: boolean;
  sent: number;
}

const devices: Dev[] = [];
let macCounter = 0;

/** OTA, MQTT, hello, microphone on; resolves when its agent is in the room and hears it. */
async function connectDevice(mac = `02:00:00:07:00:${(macCounter++).toString(16).padStart(2, '0')}`): Promise<Dev> {
  const d = await RawDevice.connect(http, mac);
  await d.sayHello();
  d.publish({ session_id: d.session(), type: 'listen', state: 'start', mode: 'realtime' });
  const dev: Dev = { mac, d, agent: undefined as unknown as TestAgent, talking: true, sent: 0 };
  d.mqtt.on('close', () => { dev.closedAt ??= performance.now(); });
  // Agents are dispatched in the order rooms are created, which is not the order of the hellos.
  let agent: TestAgent | undefined;
  await waitUntil(() => Boolean(agent ??= agentWorker.agents.find((a) => a.room.name?.includes(d.session()))), 45_000, `the agent of ${d.session()} (${agentWorker.jobs} jobs so far)`);
  dev.agent = agent!;
  await dev.agent.waitForDevice(20_000);
  // The microphone streams once the session is up (the device's first datagrams also prove its UDP
  // address). Started earlier, the join's wait would build a backlog that the bridge sheds
  // (xiaozhi_livekit_dropped_frames_total{direction="uplink_shed"}), and the drop counters are
  // asserted to stay at 0 here.
  void (async () => {
    const t0 = performance.now();
    for (let i = 0; ; i++) {
      const wait = t0 + i * 60 - performance.now();
      if (wait > 1) await sleep(wait);
      if (!dev.talking || dev.closedAt !== undefined || !d.udp) break;
      d.sendUdp(d.datagram(uplink[i % uplink.length]!));
      dev.sent++;
    }
  })();
  const from = performance.now();
  await waitUntil(() => dev.agent.heardAudio(from).length > 48_000 * 0.3, 20_000, `the agent hearing ${mac}`);
  return dev;
}

function workerOf(dev: Dev): number {
  return ready.workers.find((w) => w.udp === dev.d.hello!.udp.port)!.worker;
}

async function metrics(): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${http}/metrics`);
  expect(res.status).toBe(200);
  return res.text();
}

/**
 * Everything the workers count as lost audio: native pipeline and network-side drops, LiveKit bridge
 * drops (pushed back by the AudioSource, discarded agent audio). Counters are summed over the live
 * workers (a dead worker's go with it), so the survivor's are read once the failed worker is gone
 * and before its replacement has a session: the survivor's drops over the window are the difference.
 * Not included: uplink_shed, the frames the bridge drops on purpose to drain a standing backlog
 * (uplink-capture.ts), reported instead.
 */
function drops(text: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const m of text.matchAll(/^(xiaozhi_drops_total|xiaozhi_livekit_dropped_frames_total)\{([^}]*)\} (\S+)$/gm)) {
    if (Number(m[3]) !== 0 && !m[2]!.includes('uplink_shed')) out[`${m[1]}{${m[2]}}`] = Number(m[3]);
  }
  return out;
}

const shed = (text: string) => sum(text, 'xiaozhi_livekit_dropped_frames_total', { direction: 'uplink_shed' });

const waitLog = (pred: (l: LogLine) => boolean, timeoutMs: number, what: string) => gateway.waitLog(pred, timeoutMs, what);

/** Evaluates `expression` on the main thread of process `pid` through its inspector (SIGUSR1 opens it). */
async function inspectorEvaluate(pid: number, expression: string): Promise<void> {
  const from = stderrLines.length;
  process.kill(pid, 'SIGUSR1');
  await waitUntil(() => stderrLines.slice(from).some((l) => l.startsWith('Debugger listening on ws://')), 10_000, `the inspector of ${pid}`);
  const url = stderrLines.slice(from).find((l) => l.startsWith('Debugger listening on ws://'))!.slice('Debugger listening on '.length).trim();
  const ws = new WebSocket(url);
  await new Promise((r, j) => ws.once('open', r).once('error', j));
  ws.send(JSON.stringify({ id: 1, method: 'Runtime.evaluate', params: { expression } }));
  await new Promise<void>((r) => {
    ws.on('message', () => r());
    ws.once('close', () => r());
    setTimeout(r, 3000);
  });
  ws.terminate();
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

beforeAll(async () => {
  server = await startLivekit();
  agentWorker = await TestAgentWorker.start({ url: server.url, apiKey: server.apiKey, apiSecret: server.apiSecret, agentName: AGENT });
  // noCoreDump: the abort case must not leave a core file behind.
  gateway = await startGatewayProcess([
    '--workers', '2', '--mqtt-port', '0', '--udp-port', '0', '--http-port', '0',
    '--public-host', '127.0.0.1', '--log-level', 'info', '--agent', 'livekit', '--livekit-agent-name', AGENT,
    '--max-sessions', String(ROOMS_PER_WORKER),
    // Containment, not admission, is tested here (test/livekit-admission.test.ts): a busy 2-core
    // machine running livekit-server, the agents and both workers must not turn hellos away.
    '--admission', 'off',
  ], {
    noCoreDump: true,
    env: {
      ...process.env, LIVEKIT_URL: server.url, LIVEKIT_API_KEY: server.apiKey, LIVEKIT_API_SECRET: server.apiSecret, MALLOC_ARENA_MAX: '2',
      // Where a worker's inspector listens when SIGUSR1 opens it: node:cluster gives worker k the
      // primary's port + k (so not 0, which cluster turns into 1); a random base keeps parallel runs apart.
      NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --inspect-port=${20_000 + Math.floor(Math.random() * 20_000)}`.trim(),
    },
  });
  ({ logs, otherLines: stderrLines } = gateway);
  ready = gateway.ready as WorkersReadyLine;
  expect(ready.role).toBe('primary');
  http = ready.ports.http;
}, 900_000);

afterAll(async () => {
  for (const dev of devices) dev.talking = false;
  await Promise.allSettled(devices.map((dev) => dev.d.close()));
  await gateway?.stop(15_000);
  await agentWorker?.stop();
  await server?.stop();
});

type Failure = 'SIGKILL' | 'uncaught exception' | 'abort';

/**
 * Fails the worker `victim` one way while every device talks and every agent speaks; checks
 * containment, restart and service of the dropped devices' next hello. Returns a report line.
 */
async function failWorker(victim: number, how: Failure): Promise<string> {
  const pidOf = (w: number) => (logs.filter((l) => (l.msg === 'worker restarted: ready' && l.worker === w)).at(-1)?.pid as number | undefined) ?? ready.workers[w]!.pid;
  const victimPid = pidOf(victim);
  const survivorPid = pidOf(1 - victim);
  const lost = devices.filter((dev) => workerOf(dev) === victim);
  const kept = devices.filter((dev) => workerOf(dev) !== victim);
  expect(lost.length, 'devices on the failing worker').toBeGreaterThan(0);
  expect(kept.length, 'devices on the surviving worker').toBeGreaterThan(0);
  const diedBefore = logs.filter((l) => l.msg === 'worker died').length;
  const restartedBefore = logs.filter((l) => l.msg === 'worker restarted: ready').length;

  // Every agent speaks one long utterance; the failure comes in the middle of it.
  for (const dev of devices) void dev.agent.say(utterance, 'a long answer').catch(() => {});
  await waitUntil(() => kept.every((dev) => dev.d.messages.some((m) => m.type === 'tts' && m.state === 'start' && m.at > performance.now() - 5000)), 15_000, 'the agents speaking');
  await sleep(1500);
  const share = measureMachineShare();
  const beforeText = await metrics();
  const dropsBefore = drops(beforeText);
  const datagramsBefore = kept.map((dev) => dev.d.datagrams.length);
  const failedAt = performance.now();
  if (how === 'SIGKILL') process.kill(victimPid, 'SIGKILL');
  else if (how === 'uncaught exception') await inspectorEvaluate(victimPid, "setImmediate(() => { throw new Error('trying to drop an invalid handle (injected by test/livekit-crash.test.ts)'); }), 'ok'");
  else await inspectorEvaluate(victimPid, "setImmediate(() => process.abort()), 'ok'");

  // Only the failed worker's devices lose their connection.
  await waitUntil(() => lost.every((dev) => dev.closedAt !== undefined), 10_000, `the ${lost.length} devices of worker ${victim} to be disconnected`);
  const dropMs = Math.max(...lost.map((dev) => dev.closedAt! - failedAt));
  // The victim is gone (its connections closed) and its replacement not up before its backoff (≥ 1 s).
  const survivorText = await metrics();
  expect(sum(survivorText, 'xiaozhi_worker_info'), 'one live worker').toBe(1);
  const survivorDrops = drops(survivorText);
  const shedBefore = shed(survivorText);
  // The survivors keep going through the failure and for 3 s after it.
  await sleep(3000);
  const window = performance.now();
  expect(kept.filter((dev) => dev.closedAt !== undefined).map((dev) => dev.mac), 'survivors disconnected').toEqual([]);
  const afterText = await metrics();
  const machine = share();
  // The replacement (if already up) has no session yet: whatever changed is the survivor's. A drop
  // means the survivor lost audio with the CPU it had; when other work held a large share of the
  // machine meanwhile, it says nothing about the failure, and the test says so instead of judging.
  const shared = machineShared(machine);
  if (shared) {
    console.warn(`NOT CHECKED: the survivor's drop counters (${JSON.stringify(survivorDrops)} → ${JSON.stringify(drops(afterText))}): the machine was not this test's (${describeShare(machine)})`);
  } else {
    expect(drops(afterText), `drops counted by the surviving worker ${1 - victim} after the failure (${describeShare(machine)})`).toEqual(survivorDrops);
  }
  const shedAfter = shed(afterText);
  kept.forEach((dev, i) => {
    // Downlink: packets kept arriving after the failure, with consecutive sequence numbers (one utterance).
    const got = dev.d.datagrams.slice(datagramsBefore[i]!);
    const seqs = got.map((g) => g.data.readUInt32BE(12));
    expect(got.filter((g) => g.at > failedAt + 2500).length, `${dev.mac} downlink after the failure`).toBeGreaterThan(0);
    expect(seqs.at(-1)! - seqs[0]! + 1, `${dev.mac} downlink sequence without a gap`).toBe(seqs.length);
    // Uplink: the agent still hears the device.
    expect(dev.agent.heardAudio(failedAt + 2000).length, `${dev.mac} uplink heard after the failure`).toBeGreaterThan(0);
  });
  const keptPackets = kept.reduce((a, dev, i) => a + dev.d.datagrams.slice(datagramsBefore[i]!).filter((g) => g.at > failedAt && g.at < window).length, 0);

  // The primary saw the death and restarted the worker.
  const died = await waitLog((l) => l.msg === 'worker died' && logs.filter((x) => x.msg === 'worker died').indexOf(l) >= diedBefore, 10_000, 'the primary to see the death');
  expect(died.worker).toBe(victim);
  if (how === 'uncaught exception') {
    expect(died.code).toBe(70);
    expect(logs.filter((l) => l.worker === victim && l.role !== 'primary' && (l.level as number) >= 60).map((l) => [l.kind, (l.err as { message?: string } | undefined)?.message]), JSON.stringify(logs.filter((l) => (l.level as number) >= 50))).toEqual([["uncaughtException", "trying to drop an invalid handle (injected by test/livekit-crash.test.ts)"]]);
  } else {
    expect(died.signal).toBe(how === 'SIGKILL' ? 'SIGKILL' : 'SIGABRT');
  }
  const restarting = await waitLog((l) => l.msg === 'worker restarting' && l.worker === victim && (l.time as number) >= (died.time as number), 40_000, 'the restart');
  const restarted = await waitLog((l) => l.msg === 'worker restarted: ready' && l.worker === victim && logs.filter((x) => x.msg === 'worker restarted: ready').indexOf(l) >= restartedBefore, 40_000, 'the restarted worker');
  expect(restarted.udp).toBe(ready.workers[victim]!.udp);
  expect(alive(victimPid)).toBe(false);
  expect(alive(survivorPid)).toBe(true);

  // The dropped devices, as the firmware does at its next wake: connect, hello; an agent serves each.
  for (const dev of lost) {
    dev.talking = false;
    await dev.d.close();
  }
  const reconnectAt = performance.now();
  const back: Dev[] = [];
  for (const dev of lost) back.push(await connectDevice(dev.mac));
  const reconnectMs = performance.now() - reconnectAt;
  for (const dev of back) devices[devices.findIndex((x) => x.mac === dev.mac)] = dev;
  // node:cluster hands connections to whichever worker is free, not strictly in turn: the next
  // failure needs devices on both workers, so one more device connects while a worker has none.
  for (let i = 0; i < 8 && [0, 1].some((w) => !devices.some((dev) => workerOf(dev) === w)); i++) devices.push(await connectDevice());
  // Downlink again on every reconnected device: a short answer arrives as audio.
  const from = back.map((dev) => dev.d.datagrams.length);
  await Promise.all(back.map((dev) => dev.agent.say(agentSpeech(1), 'back again')));
  await waitUntil(() => back.every((dev, i) => dev.d.datagrams.length - from[i]! >= 10), 10_000, 'downlink on the reconnected devices');
  // Let the other utterances end before the next failure.
  await sleep(500);
  return `${how}: worker ${victim} (${lost.length} devices) dropped them within ${Math.round(dropMs)} ms; ${kept.length} survivors received ${keptPackets} downlink packets in the 3 s after, ${shared ? 'drops not checked' : 'no drop counted'}, no sequence gap (survivor's counters: uplink shed for standing latency ${shedBefore} → ${shedAfter}; drops ${JSON.stringify(survivorDrops)}; all workers before the failure ${JSON.stringify(dropsBefore)}; ${describeShare(machine)}${shared ? ', drops NOT CHECKED' : ''}); ` +
    `restarted after ${restarting.delayMs} ms backoff (ready ${(restarted.time as number) - (died.time as number)} ms after the death); ${back.length} devices served by an agent again in ${Math.round(reconnectMs)} ms`;
}

describe(`start --workers 2 with LiveKit sessions (${DEVICES} devices, --max-sessions ${ROOMS_PER_WORKER} per worker)`, () => {
  it('a failing worker (SIGKILL, uncaught exception, abort) ends only its own sessions; the other keeps flowing; restarted with backoff; its devices are served again', async () => {
    for (let i = 0; i < DEVICES; i++) devices.push(await connectDevice());
    for (let i = 0; i < 8 && [0, 1].some((w) => !devices.some((dev) => workerOf(dev) === w)); i++) devices.push(await connectDevice());
    const perWorker = [0, 1].map((w) => devices.filter((dev) => workerOf(dev) === w).length);
    expect(Math.min(...perWorker), `devices per worker ${perWorker}`).toBeGreaterThan(0);
    const text = await metrics();
    expect(sum(text, 'xiaozhi_livekit_open', { object: 'rooms' })).toBe(devices.length);

    const report: string[] = [];
    report.push(await failWorker(1, 'SIGKILL'));
    report.push(await failWorker(0, 'uncaught exception'));
    report.push(await failWorker(1, 'abort'));
    // Worker 1 died twice within 60 s: its second restart waited longer (backoff doubles).
    const delays = logs.filter((l) => l.msg === 'worker restarting' && l.worker === 1).map((l) => l.delayMs as number);
    const lived = logs.filter((l) => l.msg === 'worker died' && l.worker === 1).map((l) => l.livedMs as number);
    expect(delays).toEqual([1000, lived[1]! >= 60_000 ? 1000 : 2000]);
    // No survivor (nor any restarted worker) logged a fatal error except the injected one.
    const fatal = logs.filter((l) => (l.level as number) >= 60);
    expect(fatal.map((l) => l.kind)).toEqual(['uncaughtException']);
    expect(stderrLines.filter((l) => /uncaughtException|unhandledRejection|invalid handle/.test(l) && !l.includes('injected'))).toEqual([]);
    const end = await metrics();
    expect(sum(end, 'xiaozhi_worker_restarts_total')).toBe(3);
    expect(sum(end, 'xiaozhi_livekit_open', { object: 'rooms' })).toBe(devices.length);
    console.log(report.join('\n'));
  }, 300_000);
});
