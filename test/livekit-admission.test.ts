// Admission control under twice the capacity, with LiveKit sessions: the compiled CLI in its own
// process (agent 'livekit', --admission on with its default CPU and event-loop thresholds, a room
// cap of CAPACITY sessions), a real livekit-server, and an agent worker dispatched by name
// (test/helpers/livekit-agent.ts) that speaks to every device. 2 × CAPACITY devices keep asking:
// each connects (OTA, MQTT), says hello, and either is refused ("gateway busy": hello reply, alert,
// goodbye; it tries again 2 s later, as a user pressing the button again would) or is admitted and
// talks for SESSION_SECONDS (microphone streamed in realtime mode, the agent answers) before its
// goodbye and its next hello. Asserted over the run: the gateway does not crash and logs no error
// (none from rtc-node either: no FFI error counted), admitted sessions lose no uplink frame (every
// xiaozhi_drops_total reason and the bridge's pushed-back / discarded frames stay 0; the frames the
// bridge sheds on purpose after an event-loop stall, so that a backlog does not become standing
// latency (uplink_shed, src/livekit/uplink-capture.ts), are reported, not asserted: they follow the
// machine's stalls, which other processes cause too), every refusal reached the device as alert + goodbye and is
// counted in /metrics, the session cap held, and the event-loop delay p99 of the gateway process
// (the one serving MQTT and UDP), from its cumulative xiaozhi_event_loop_delay_seconds histogram,
// is below 50 ms.
//
// CI: XIAOZHI_LK_ADMISSION_SECONDS (default 75). Full run: `npm run test:livekit-admission`
// (600 s). XIAOZHI_LK_ADMISSION_CAPACITY (default 4) is the room cap; the offered load is twice it.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startGatewayProcess, type GatewayProcess, type LogLine } from './helpers/gateway-process.js';
import { TestAgentWorker } from './helpers/livekit-agent.js';
import { agentSpeech, deviceSpeech, startLivekit, type LivekitServerHandle } from './helpers/livekit-harness.js';
import { describeShare, machineShared, measureMachineShare } from './helpers/livekit-machine.js';
import { RawDevice } from './helpers/raw-device.js';
import { metricSamples as samples, metricSum as sum } from './helpers/metrics-text.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const AGENT = 'xiaozhi-admission-agent';
const SECONDS = Number(process.env.XIAOZHI_LK_ADMISSION_SECONDS ?? 75);
const CAPACITY = Number(process.env.XIAOZHI_LK_ADMISSION_CAPACITY ?? 4);
const OFFERED = 2 * CAPACITY;
const SESSION_SECONDS = 10;
const RETRY_MS = 2000;
const MAX_EVENT_LOOP_P99_S = 0.05;

let server: LivekitServerHandle;
let agentWorker: TestAgentWorker;
let gateway: GatewayProcess;
let logs: LogLine[];
/** Its stderr and any stdout line that is not a log line (both must stay empty). */
let stderrLines: string[];
let http = 0;

const uplink = deviceSpeech(6).packets;
const answer = agentSpeech(3, 0.5);

async function metrics(): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${http}/metrics`);
  expect(res.status).toBe(200);
  return res.text();
}

/** Cumulative bucket counts of xiaozhi_event_loop_delay_seconds, by upper bound. */
function loopBuckets(text: string): Map<number, number> {
  return new Map(samples(text, 'xiaozhi_event_loop_delay_seconds_bucket').map((s) => [s.labels.le === '+Inf' ? Infinity : Number(s.labels.le), s.value]));
}

/** The upper bound of the bucket holding the p99 of the samples between two scrapes. */
function p99Between(a: Map<number, number>, b: Map<number, number>): { p99: number; count: number; max: number } {
  const les = [...b.keys()].sort((x, y) => x - y);
  const total = b.get(Infinity)! - (a.get(Infinity) ?? 0);
  let p99 = Infinity;
  let max = 0;
  for (const le of les) {
    const n = b.get(le)! - (a.get(le) ?? 0);
    if (p99 === Infinity && n >= 0.99 * total) p99 = le;
  }
  // The largest bucket that gained a sample: the worst delay seen (to the bucket's precision).
  for (let i = les.length - 1; i > 0; i--) {
    const gained = (b.get(les[i]!)! - (a.get(les[i]!) ?? 0)) - (b.get(les[i - 1]!)! - (a.get(les[i - 1]!) ?? 0));
    if (gained > 0) {
      max = les[i]!;
      break;
    }
  }
  return { p99, count: total, max };
}

interface Tally {
  hellos: number;
  admitted: number;
  refused: number;
  /** Refusals without the alert or the goodbye (must stay 0). */
  refusedIncomplete: string[];
  /** Admitted sessions whose agent never spoke to the device (downlink). */
  noDownlink: number;
  failures: string[];
}

const tally: Tally = { hellos: 0, admitted: 0, refused: 0, refusedIncomplete: [], noDownlink: 0, failures: [] };

/** One device asking again and again until `end`. */
async function lane(index: number, end: number): Promise<void> {
  const mac = `02:00:00:08:00:${index.toString(16).padStart(2, '0')}`;
  while (performance.now() < end) {
    let d: RawDevice | undefined;
    try {
      d = await RawDevice.connect(http, mac);
      const reply = await d.sayHello();
      tally.hellos++;
      const sid = reply.session_id;
      const alert = await d.waitFor((m) => m.type === 'alert' && m.session_id === sid, 1000).catch(() => null);
      if (alert) {
        tally.refused++;
        const goodbye = await d.waitFor((m) => m.type === 'goodbye' && m.session_id === sid, 2000).catch(() => null);
        if (alert.status !== 'busy' || !/gateway busy/.test(String(alert.message)) || !goodbye) tally.refusedIncomplete.push(JSON.stringify(alert));
        await d.close();
        await sleep(RETRY_MS);
        continue;
      }
      tally.admitted++;
      d.publish({ session_id: sid, type: 'listen', state: 'start', mode: 'realtime' });
      const t0 = performance.now();
      const first = d.datagrams.length;
      for (let i = 0; performance.now() - t0 < SESSION_SECONDS * 1000; i++) {
        const wait = t0 + i * 60 - performance.now();
        if (wait > 1) await sleep(wait);
        d.sendUdp(d.datagram(uplink[i % uplink.length]!));
      }
      if (d.datagrams.length - first < 10) tally.noDownlink++;
      d.publish({ session_id: sid, type: 'goodbye' });
      await sleep(100);
      await d.close();
    } catch (err) {
      tally.failures.push(`lane ${index}: ${(err as Error).message}`);
      await d?.close();
      await sleep(RETRY_MS);
    }
  }
}

beforeAll(async () => {
  server = await startLivekit();
  agentWorker = await TestAgentWorker.start({
    url: server.url, apiKey: server.apiKey, apiSecret: server.apiSecret, agentName: AGENT,
    // Every agent answers its device once it hears it; then it listens until the device leaves.
    onAgent: (a) => {
      void a.waitForDevice(20_000).then(() => sleep(1500)).then(() => a.say(answer, 'an answer')).catch(() => {});
      a.room.on('participantDisconnected', () => void a.leave());
    },
  });
  gateway = await startGatewayProcess([
    '--mqtt-port', '0', '--udp-port', '0', '--http-port', '0', '--public-host', '127.0.0.1',
    '--log-level', 'info', '--agent', 'livekit', '--livekit-agent-name', AGENT,
    '--admission', 'on', '--max-sessions', String(CAPACITY),
  ], {
    env: { ...process.env, LIVEKIT_URL: server.url, LIVEKIT_API_KEY: server.apiKey, LIVEKIT_API_SECRET: server.apiSecret, MALLOC_ARENA_MAX: '2' },
  });
  ({ logs, otherLines: stderrLines } = gateway);
  http = gateway.ready.ports.http;
}, 900_000);

afterAll(async () => {
  await gateway?.stop(15_000);
  await agentWorker?.stop();
  await server?.stop();
});

describe(`admission control at 2× capacity (${OFFERED} devices for a cap of ${CAPACITY} LiveKit sessions, ${SECONDS} s)`, () => {
  it('no crash, no error, no uplink drop for admitted sessions, every refusal an alert + goodbye and counted, event-loop p99 < 50 ms', async () => {
    const start = await metrics();
    const share = measureMachineShare();
    const end = performance.now() + SECONDS * 1000;
    // The session cap, watched from outside while the load runs.
    let maxSessions = 0;
    let watching = true;
    const watch = (async () => {
      while (watching) {
        const text = await metrics().catch(() => '');
        maxSessions = Math.max(maxSessions, sum(text, 'xiaozhi_sessions'));
        await sleep(1000);
      }
    })();
    await Promise.all(Array.from({ length: OFFERED }, (_, i) => lane(i, end)));
    watching = false;
    await watch;
    await sleep(1000);
    const last = await metrics();
    const machine = share();
    const shared = machineShared(machine);

    const refusedCounted = sum(last, 'xiaozhi_gateway_events_total', (l) => /^sessions_refused_/.test(l.event!)) - sum(start, 'xiaozhi_gateway_events_total', (l) => /^sessions_refused_/.test(l.event!));
    const byReason = Object.fromEntries(samples(last, 'xiaozhi_gateway_events_total').filter((s) => /^sessions_refused_/.test(s.labels.event!)).map((s) => [s.labels.event!.replace('sessions_refused_', ''), s.value]));
    // closed_stream: frames still queued in a stream when its session ended (the agent's last words
    // when the device says goodbye mid-reply). A session's end discards them by design; they are not
    // frames an admitted session lost while it ran, so they are reported, not judged.
    const drops = samples(last, 'xiaozhi_drops_total').filter((s) => s.value > 0 && s.labels.reason !== 'closed_stream').map((s) => `${s.labels.reason}=${s.value}`);
    const closedAtEnd = sum(last, 'xiaozhi_drops_total', (l) => l.reason === 'closed_stream');
    const lkDrops = samples(last, 'xiaozhi_livekit_dropped_frames_total').filter((s) => s.value > 0 && !s.labels.direction!.startsWith('uplink_shed')).map((s) => `${s.labels.direction}=${s.value}`);
    const shed = sum(last, 'xiaozhi_livekit_dropped_frames_total', (l) => l.direction === 'uplink_shed');
    const shedSpeech = sum(last, 'xiaozhi_livekit_dropped_frames_total', (l) => l.direction === 'uplink_shed_speech');
    // The gateway's own account of each loss (a warning per session, at most one per 10 s).
    const dropWarnings = logs.filter((l) => /microphone audio dropped/.test(String(l.msg))).map((l) => JSON.stringify({ frames: l.frames, bufferedMs: l.bufferedMs, sourceQueuedMs: l.sourceQueuedMs, captureWaitMs: l.captureWaitMs, paused: l.paused }));
    const loop = p99Between(loopBuckets(start), loopBuckets(last));
    const errors = logs.filter((l) => (l.level ?? 0) >= 50);
    const summary =
      `${SECONDS} s, ${OFFERED} devices for a cap of ${CAPACITY}: ${tally.hellos} hellos, ${tally.admitted} admitted, ${tally.refused} refused (${JSON.stringify(byReason)}), at most ${maxSessions} sessions open; ` +
        `event-loop delay p99 ≤ ${loop.p99 * 1000} ms, worst ≤ ${loop.max * 1000} ms (${loop.count} samples); drops: ${drops.join(' ') || 'none'} (queued at a session's end: ${closedAtEnd}); LiveKit drops: ${lkDrops.join(' ') || 'none'} (uplink frames shed for standing latency: ${shed} quiet, ${shedSpeech} speech); ` +
        `admitted sessions with no downlink heard: ${tally.noDownlink}; ${describeShare(machine)}; lane failures: ${tally.failures.length}${tally.failures.length ? ` (${tally.failures.slice(0, 3).join(' | ')})` : ''}` +
      (dropWarnings.length ? `; drop warnings: ${dropWarnings.slice(0, 5).join(' ')}` : '');
    console.log(summary);
    expect(gateway.exit, 'the gateway exited').toBeNull();
    expect(errors.map((l) => `${l.msg} ${JSON.stringify(l.err ?? '')}`), 'error or fatal log lines').toEqual([]);
    expect(stderrLines.filter((l) => l.trim() !== ''), 'stderr').toEqual([]);
    expect(sum(last, 'xiaozhi_livekit_events_total', (l) => l.event === 'ffi_errors'), 'FFI errors').toBe(0);
    expect(tally.failures).toEqual([]);
    // Pushed past capacity: both outcomes happened, refusals reached the devices whole, counted.
    // Admission decides on the machine's CPU, whoever uses it: on a machine other work keeps past the
    // threshold, refusing every hello is the right answer, and there is no admitted session to judge.
    if (shared && tally.admitted === 0) console.warn(`NOT CHECKED: admitted sessions (none admitted: ${JSON.stringify(byReason)}; ${describeShare(machine)})`);
    else expect(tally.admitted, describeShare(machine)).toBeGreaterThan(0);
    expect(tally.refused).toBeGreaterThan(0);
    expect(tally.refusedIncomplete).toEqual([]);
    expect(refusedCounted).toBe(tally.refused);
    expect(maxSessions).toBeLessThanOrEqual(CAPACITY);
    // Admitted sessions kept full quality: nothing dropped anywhere on the uplink (or downlink). What
    // admission control promises rests on the machine being the gateway's: when other work held a
    // large share of the cores, drops are reported as not checked instead of judged.
    // The same for the gateway's event-loop delay: a process that other work keeps off the CPU is late
    // whatever it does.
    expect(loop.count, 'event-loop delay samples').toBeGreaterThan(0);
    if (shared) {
      console.warn(`NOT CHECKED: admitted sessions' drops (${[...drops, ...lkDrops].join(' ') || 'none'}), downlink (${tally.noDownlink} sessions without) and event-loop p99 (≤ ${loop.p99 * 1000} ms): the machine was not this test's (${describeShare(machine)})`);
    } else {
      // The whole summary in each message: CI prints the failure, not always the console.
      expect(drops, summary).toEqual([]);
      expect(lkDrops, summary).toEqual([]);
      expect(tally.noDownlink, summary).toBe(0);
      // One sample per 10 ms timer that ran: about 100 a second on a loop that keeps up.
      expect(loop.count, summary).toBeGreaterThan(SECONDS * 50);
      expect(loop.p99, summary).toBeLessThanOrEqual(MAX_EVENT_LOOP_P99_S);
    }
  }, (SECONDS + 240) * 1000);
});
