// LiveKit sessions at scale through the gateway as deployed: nothing stays behind, however a session
// ends, and the gateway's memory stays flat. rtc-node keeps native memory for every Room it joined
// (README "Talk to LiveKit agents"; upstream node-sdks#514) and slows down with them: a long-running
// worker grows ~0.4–0.8 MB per session however well we release. `--recycle-after-sessions K`
// replaces a worker after K sessions (drained: conversations finish, idle devices reconnect to the
// replacement), so the gateway's total RSS, primary and every worker together, is a sawtooth
// instead of a ramp.
// Here: the compiled CLI with agent 'livekit', a real livekit-server, and stand-in agents in child
// processes of their own (test/helpers/livekit-agent-processes.ts). DEVICES devices hold
// conversations back to back (hello, 1.2 s of speech while the gateway joins the room and publishes
// the microphone, then an ending, 1.2 s idle), reconnecting the way the firmware does when a drain
// closes their idle connection. The endings, in turn: device goodbye without an agent and with
// one; the agent leaves; the room is deleted through the RoomService API; the device's MQTT
// connection drops without a goodbye; two hellos back to back (the first session ends while it
// joins); no agent ever comes. livekit-server is restarted RESTARTS times during the run (SIGTERM
// and SIGKILL in turn). (Failed connects, bad tokens and timeouts need other gateway settings: they
// are in test/livekit-resources.test.ts, in one process.)
// Asserted: over the last 60 % of the run (≥ 6 whole recycle cycles), the least-squares slope of
// the per-cycle mean RSS ≤ 50 KB per session in the full run (150 in CI, see MAX_SLOPE_KB) and of
// the per-cycle mean open file descriptors ≤ 0.25 per session (1 in CI); every ending the gateway owes the
// device came (its goodbye after the agent left, the room went, no agent came); at the end every
// live LiveKit object in /metrics is back to 0 (sessions, rooms, sources, tracks, streams, FFI
// listeners); every recycle drained (exit 0); no device closed during a conversation; no worker died.
// Workers are recycled after K sessions and also on --recycle-retained-sources R: the audio sources
// rtc-node keeps for rooms the server ended (src/livekit/rtc-retention.ts); both must happen.
// CI: XIAOZHI_LK_RECYCLE_SESSIONS (default 360) with K = XIAOZHI_LK_RECYCLE_AFTER (default 20) and
// R = XIAOZHI_LK_RECYCLE_RETAINED (default 2). Full run: `npm run test:livekit-recycle` (5 000
// sessions, K = 250, R = 20, slope bound 50 KB).
import { readdirSync, readFileSync } from 'node:fs';
import { RoomServiceClient } from 'livekit-server-sdk';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { roomName } from '../src/livekit/identity.js';
import { startGatewayProcess, type GatewayProcess } from './helpers/gateway-process.js';
import { AgentPool } from './helpers/livekit-agent-processes.js';
import { deviceSpeech, startLivekit, streamPackets, type LivekitServerHandle } from './helpers/livekit-harness.js';
import { metricSamples, metricSum } from './helpers/metrics-text.js';
import { RawDevice, type HelloReply } from './helpers/raw-device.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const SESSIONS = Number(process.env.XIAOZHI_LK_RECYCLE_SESSIONS ?? 360);
const RECYCLE_AFTER = Number(process.env.XIAOZHI_LK_RECYCLE_AFTER ?? 20);
// The bound on the slope. The target is 50 KB per session (the full run). At CI's size the fitted
// slope's own spread is ~40 KB (cycle means scatter by ±10 MB over ~240 sessions), so CI holds it
// to 150: far below the ≥ 400 KB per session of a gateway that does not recycle, which it catches.
const MAX_SLOPE_KB = Number(process.env.XIAOZHI_LK_RECYCLE_MAX_SLOPE_KB ?? 150);
/** livekit-server restarts spread over the run: 2 in CI, one per ~600 sessions in longer runs. */
const RESTARTS = Number(process.env.XIAOZHI_LK_RECYCLE_RESTARTS ?? Math.max(2, Math.round(SESSIONS / 600)));
// Descriptors: each room in flight holds ~30 sockets, so per-cycle means scatter. The full run
// (≥ 12 cycles of 250 sessions) holds the slope to 0.25 per session (it measured -0.003); CI's
// 20-session cycles scatter more (-0.15 to 0.30 seen), so CI holds it to 1: one descriptor leaked
// per session still fails.
const MAX_FD_SLOPE = Number(process.env.XIAOZHI_LK_RECYCLE_MAX_FD_SLOPE ?? 1);
/** --recycle-retained-sources: small in CI, so both triggers (sessions, retained sources) recycle. */
const RETAINED = Number(process.env.XIAOZHI_LK_RECYCLE_RETAINED ?? 2);
const DEVICES = 6;
const MIN_CYCLES = 6;
/** The gateway ends a session whose agent has not come in this time (--livekit-agent-timeout-ms). */
const AGENT_TIMEOUT_MS = 6000;
/** The gateway's room template (its default): the test finds each session's room from it. */
const ROOM_TEMPLATE = 'xiaozhi-{device}-{session}';

let server: LivekitServerHandle;
let gateway: GatewayProcess;
let agents: AgentPool;
let roomService: RoomServiceClient;
let http = 0;
const speech = deviceSpeech(1.2).packets;

/** Resident memory (KB) and open file descriptors of a process and of all its descendants, from /proc. */
function treeUsage(rootPid: number): { kb: number; fds: number; pids: number[] } {
  const parent = new Map<number, number>();
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = readFileSync(`/proc/${e}/stat`, 'utf8');
      parent.set(Number(e), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
    } catch {}
  }
  const pids = [rootPid];
  for (let i = 0; i < pids.length; i++) for (const [pid, ppid] of parent) if (ppid === pids[i]) pids.push(pid);
  let kb = 0;
  let fds = 0;
  for (const pid of pids) {
    try {
      kb += Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
      fds += readdirSync(`/proc/${pid}/fd`).length;
    } catch {}
  }
  return { kb, fds, pids };
}

function slope(xs: number[], ys: number[]): number {
  const mx = xs.reduce((a, b) => a + b, 0) / xs.length;
  const my = ys.reduce((a, b) => a + b, 0) / ys.length;
  let num = 0;
  let den = 0;
  for (let i = 0; i < xs.length; i++) {
    num += (xs[i]! - mx) * (ys[i]! - my);
    den += (xs[i]! - mx) ** 2;
  }
  return num / den;
}

async function metrics(): Promise<string> {
  return (await fetch(`http://127.0.0.1:${http}/metrics`)).text();
}

beforeAll(async () => {
  server = await startLivekit();
  roomService = new RoomServiceClient(server.url.replace(/^ws/, 'http'), server.apiKey, server.apiSecret);
  // A fresh agent process every 150 joins: the agents' own rtc-node slows down with its rooms too.
  agents = new AgentPool(server, 150);
  gateway = await startGatewayProcess([
    // A session every ~3 s per device for minutes on one connection: above the default 20 hellos
    // per connection per minute, which this test is not about.
    '--agent', 'livekit', '--recycle-after-sessions', String(RECYCLE_AFTER), '--hellos-per-minute', '120',
    '--livekit-agent-timeout-ms', String(AGENT_TIMEOUT_MS), '--recycle-retained-sources', String(RETAINED),
    '--auth', 'open', '--mqtt-port', '0', '--udp-port', '0', '--http-port', '0', '--public-host', '127.0.0.1', '--log-level', 'info',
  ], {
    // NODE_ENV=production: rtc-node logs its debug lines otherwise.
    env: { ...process.env, NODE_ENV: 'production', LIVEKIT_URL: server.url, LIVEKIT_API_KEY: server.apiKey, LIVEKIT_API_SECRET: server.apiSecret, MALLOC_ARENA_MAX: '2' },
    echoStderr: true,
  });
  http = gateway.ready.ports.http;
});

afterAll(async () => {
  await gateway?.stop();
  await agents?.stop();
  await server?.stop();
});

type Kind = 'goodbye' | 'goodbye-agent' | 'agent-leave' | 'room-deleted' | 'device-disconnect' | 'hello-race' | 'no-agent';
const MIX: Kind[] = ['goodbye', 'goodbye-agent', 'agent-leave', 'room-deleted', 'device-disconnect', 'goodbye', 'hello-race', 'no-agent'];

/** One device connection and what the test knows of it. */
interface Link {
  d: RawDevice;
  mac: string;
  inConversation: boolean;
  /** The ending running now, and the hello replies the device had before its hello (a close before
   * the reply is a hello that crossed a drain's close of an idle connection, counted apart). */
  kind?: Kind;
  repliesBefore: number;
  /** The test closes it on purpose (the device-disconnect ending). */
  leaving: boolean;
}

/** Things that should not happen, each described (asserted empty). */
const unexpected: string[] = [];
/** Agents that could not join (the server restarting, the machine too busy): counted, bounded. */
const agentFailures: string[] = [];

/** The device's goodbye: from here on a drain may close its connection (the gateway sees it idle). */
function bye(l: Link, sid: string): void {
  l.d.publish({ session_id: sid, type: 'goodbye' });
  l.inConversation = false;
}

/** The gateway's hello replies the device has received, oldest first. */
const helloReplies = (d: RawDevice) => d.messages.filter((m) => m.type === 'hello');

const goodbyeFromGateway = (d: RawDevice, sid: string, ms: number) =>
  d.waitFor((m) => m.type === 'goodbye' && m.session_id === sid, ms).then(() => true, () => false);

function joinAgent(room: string): Promise<boolean> {
  return agents.join(room).then(() => true, (err: Error) => {
    agentFailures.push(`${room}: ${err.message}`);
    return false;
  });
}

/** The endings: each runs one session after its hello reply and says who ended it. */
const endings: Record<Kind, (l: Link, sid: string, room: string) => Promise<'device' | 'gateway'>> = {
  goodbye: async (l, sid) => {
    await streamPackets(l.d, speech);
    bye(l, sid);
    return 'device';
  },
  'goodbye-agent': async (l, sid, room) => {
    const joined = joinAgent(room);
    await streamPackets(l.d, speech);
    await joined;
    bye(l, sid);
    await agents.leave(room);
    return 'device';
  },
  'agent-leave': async (l, sid, room) => {
    const joined = joinAgent(room);
    await streamPackets(l.d, speech);
    if (!(await joined)) {
      bye(l, sid);
      await agents.leave(room);
      return 'device';
    }
    await agents.leave(room);
    if (!(await goodbyeFromGateway(l.d, sid, AGENT_TIMEOUT_MS + 15_000))) unexpected.push(`agent-leave: no goodbye for ${sid}`);
    return 'gateway';
  },
  'room-deleted': async (l, sid, room) => {
    const joined = joinAgent(room);
    await streamPackets(l.d, speech);
    await joined;
    // Around a livekit-server restart the room is gone until its participants have reconnected:
    // the deletion is retried until it finds the room (or the gateway has ended the session).
    let deleted = false;
    let lastError = '';
    for (let t = 0; !deleted && t < 30; t++) {
      if (l.d.messages.some((m) => m.type === 'goodbye' && m.session_id === sid)) break;
      try {
        await roomService.deleteRoom(room);
        deleted = true;
      } catch (err) {
        lastError = (err as Error).message;
        await sleep(500);
      }
    }
    const ended = await goodbyeFromGateway(l.d, sid, deleted ? AGENT_TIMEOUT_MS + 15_000 : 1000);
    if (!ended && deleted) unexpected.push(`room-deleted: no goodbye for ${sid}`);
    if (!ended && !deleted) {
      agentFailures.push(`deleteRoom ${room}: ${lastError}`);
      bye(l, sid);
    }
    await agents.leave(room);
    return ended ? 'gateway' : 'device';
  },
  'device-disconnect': async (l, _sid, room) => {
    const joined = joinAgent(room);
    await streamPackets(l.d, speech);
    await joined;
    l.leaving = true;
    await l.d.close();
    await agents.leave(room);
    return 'device';
  },
  // The firmware re-opens its audio channel: the first session ends while it is still joining.
  'hello-race': async (l) => {
    const before = helloReplies(l.d).length;
    l.d.publish({ type: 'hello', version: 3, transport: 'udp', features: { mcp: true }, audio_params: { format: 'opus', sample_rate: 16000, channels: 1, frame_duration: 60 } });
    await l.d.sayHello();  // the second hello (it may return the first one's reply)
    await l.d.waitFor(() => helloReplies(l.d).length >= before + 2, 10_000);
    l.d.hello = helloReplies(l.d).at(-1) as unknown as HelloReply;
    l.d.seq = 0;
    const sid = l.d.session();
    await streamPackets(l.d, speech);
    bye(l, sid);
    return 'device';
  },
  'no-agent': async (l, sid) => {
    await streamPackets(l.d, speech);
    if (!(await goodbyeFromGateway(l.d, sid, AGENT_TIMEOUT_MS + 15_000))) unexpected.push(`no-agent: no goodbye for ${sid}`);
    return 'gateway';
  },
};

describe(`LiveKit sessions with --recycle-after-sessions ${RECYCLE_AFTER}, every ending, livekit-server restarts`, () => {
  it(`${SESSIONS} sessions: the gateway's total RSS (≤ ${MAX_SLOPE_KB} KB per session) and descriptors do not grow, nothing stays open, every recycle drains`, async () => {
    let done = 0;
    let next = 0;
    let reconnects = 0;
    /** Connections that closed while their device was in a conversation (judged at the end). */
    const closedWhileTalking: Array<{ link: Link; kind?: Kind; repliesBefore: number; done: number; logs: object[] }> = [];
    let interrupted = 0;
    let connectResets = 0;
    let stopped = false;
    const byKind: Record<string, { sessions: number; byGateway: number }> = {};
    const restarts: string[] = [];
    const samples: Array<{ done: number; kb: number; fds: number; recycled: number }> = [];
    const recycledCount = () => gateway.logs.filter((l) => l.msg === 'recycled worker drained and exited').length;
    const mac = (i: number) => `02:00:00:00:0f:${i.toString(16).padStart(2, '0')}`;

    const device = async (i: number) => {
      let l: Link | undefined;
      while (done < SESSIONS && !stopped) {
        if (!l || !l.d.mqtt.connected) {
          if (l && !l.leaving) reconnects++;
          let dev: RawDevice;
          try {
            dev = await RawDevice.connect(http, mac(i));
          } catch (err) {
            // A connection handed to a worker in the instant it closed its listeners is reset; the
            // firmware retries a failed OTA or MQTT connect, and so does this device (counted).
            if ((err as NodeJS.ErrnoException).code !== 'ECONNRESET' && !/ECONNRESET|socket hang up|fetch failed/.test(String((err as Error).message))) throw err;
            connectResets++;
            await sleep(500);
            continue;
          }
          const link: Link = { d: dev, mac: mac(i), inConversation: false, leaving: false, repliesBefore: 0 };
          l = link;
          dev.mqtt.once('close', () => {
            if (!link.inConversation || link.leaving) return;
            // Judged at the end of the run, not here: the client may emit 'close' before the message
            // that arrived with the connection's last bytes (the gateway's goodbye, then its close).
            const at = Date.now();
            closedWhileTalking.push({
              link, kind: link.kind, repliesBefore: link.repliesBefore, done,
              logs: gateway.logs.filter((g) => JSON.stringify(g).includes(link.mac) && at - Number(g.time ?? at) < 5000),
            });
          });
        }
        const kind = MIX[next++ % MIX.length]!;
        try {
          l.inConversation = true;
          l.kind = kind;
          l.repliesBefore = helloReplies(l.d).length;
          let sid = '';
          if (kind !== 'hello-race') sid = (await l.d.sayHello()).session_id;
          const who = await endings[kind](l, sid, roomName(ROOM_TEMPLATE, { deviceId: l.mac, clientId: '', sessionId: sid }));
          l.inConversation = false;
          done++;
          const k = (byKind[kind] ??= { sessions: 0, byGateway: 0 });
          k.sessions++;
          if (who === 'gateway') k.byGateway++;
          const u = treeUsage(gateway.child.pid!);
          samples.push({ done, kb: u.kb, fds: u.fds, recycled: recycledCount() });
        } catch (err) {
          l.inConversation = false;
          // A hello that crossed the drain's close of this idle connection: the firmware would retry it.
          if (l.d.mqtt.connected) throw err;
          if (!l.leaving) interrupted++;
        }
        await sleep(1200);
      }
      await l?.d.close();
    };

    // livekit-server restarts at even points of the run, SIGTERM and SIGKILL in turn.
    const restarter = async () => {
      for (let k = 0; k < RESTARTS && !stopped; k++) {
        const at = Math.round((SESSIONS * (k + 1)) / (RESTARTS + 1));
        while (done < at && !stopped) await sleep(200);
        if (stopped) return;
        const signal = k % 2 ? 'SIGKILL' : 'SIGTERM';
        await server.restart(300, signal);
        restarts.push(`${signal} at ${done}`);
      }
    };

    const t0 = performance.now();
    // A worker that dies fails the test at once, with its log lines, instead of leaving the devices
    // to retry against a gateway that lost them.
    const deaths = () => gateway.logs.filter((l) => l.msg === 'worker died' || l.msg === 'recycled worker died while draining' || l.level === 60);
    let watching = true;
    const watchdog = new Promise<never>((_, reject) => {
      const check = () => {
        if (!watching) return;
        if (deaths().length > 0) {
          watching = false;
          return reject(new Error(`a worker died after ${done} sessions: ${deaths().map((l) => JSON.stringify(l)).join('; ')}`));
        }
        setTimeout(check, 500);
      };
      check();
    });
    try {
      await Promise.race([Promise.all([...Array.from({ length: DEVICES }, (_, i) => device(i)), restarter()]), watchdog]);
    } finally {
      watching = false;
      stopped = true;  // ends the device loops left running when the watchdog fired
    }
    const seconds = (performance.now() - t0) / 1000;

    // Nothing left open: every live LiveKit object of the serving workers back to 0.
    const open = async () => metricSamples(await metrics(), 'xiaozhi_livekit_open').filter((x) => x.value !== 0).map((x) => `${x.labels.object}=${x.value}`);
    let left = await open();
    for (let k = 0; k < 60 && left.length > 0; k++) {
      await sleep(500);
      left = await open();
    }
    const text = await metrics();
    // Why each worker was recycled: its sessions (K) or the audio sources rtc-node kept (rooms the server ended).
    const requests = gateway.logs.filter((l) => l.msg === 'recycling a worker: starting its replacement, then draining it');
    const forRetained = requests.filter((l) => (l.sessions as number) < RECYCLE_AFTER).length;
    const retainedNow = [...text.matchAll(/^xiaozhi_livekit_retained_audio_sources(?:\{[^}]*\})? (\S+)$/gm)].reduce((a, m) => a + Number(m[1]), 0);

    // Flat: the slope of the mean RSS (and descriptors) of each whole recycle cycle (between two
    // completed recycles: the mean averages the sawtooth) in the last 60 % of the run.
    const cycles = new Map<number, { x: number[]; kb: number[]; fds: number[] }>();
    for (const s of samples) {
      if (s.recycled < 1 || s.done <= SESSIONS * 0.4) continue;
      const c = cycles.get(s.recycled) ?? { x: [], kb: [], fds: [] };
      c.x.push(s.done);
      c.kb.push(s.kb);
      c.fds.push(s.fds);
      cycles.set(s.recycled, c);
    }
    const last = Math.max(...cycles.keys());
    const whole = [...cycles.entries()].filter(([k]) => k !== last).map(([, c]) => c);
    const mean = (v: number[]) => v.reduce((a, b) => a + b, 0) / v.length;
    const xs = whole.map((c) => mean(c.x));
    const ys = whole.map((c) => mean(c.kb));
    const perSessionKb = whole.length >= 2 ? slope(xs, ys) : NaN;
    const perSessionFds = whole.length >= 2 ? slope(xs, whole.map((c) => mean(c.fds))) : NaN;
    // A device closed during a conversation: its session was open (the hello reply came; a close
    // before it is a hello that crossed a drain, counted as such) and the gateway never said goodbye
    // to it (a refused hello, or a session the gateway ended, ends with one: no conversation then).
    const lastSession = (d: RawDevice) => helloReplies(d).at(-1)?.session_id;
    const closedInConversation = closedWhileTalking
      .filter((c) => helloReplies(c.link.d).length > c.repliesBefore)
      .filter((c) => !c.link.d.messages.some((m) => m.type === 'goodbye' && m.session_id === lastSession(c.link.d)))
      .map((c) =>
        `${c.link.mac} in a '${c.kind}' session ${lastSession(c.link.d)} after ${c.done} sessions; the device's last messages ` +
        `${JSON.stringify(c.link.d.messages.slice(-4))}; the gateway's log for it in the 5 s before: ${c.logs.map((g) => JSON.stringify(g)).join(' | ') || 'none'}`);
    const summary =
      `livekit recycle: ${done} sessions in ${seconds.toFixed(0)} s, K ${RECYCLE_AFTER}, ${recycledCount()} recycles drained, ` +
      `${reconnects} reconnects (${connectResets} connects reset, retried), ${interrupted} hellos crossed a drain, ${closedInConversation.length} devices closed in a conversation (of ${closedWhileTalking.length} closes while one ran; the others came after the gateway's goodbye or before the hello reply); ` +
      `livekit-server restarts: ${restarts.join(', ') || 'none'}; agent processes ${agents.started}\n` +
      `  recycles asked for: ${requests.length - forRetained} after ${RECYCLE_AFTER} sessions, ${forRetained} on ${RETAINED} retained audio sources; retained now ${retainedNow}\n` +
      `  endings (sessions, of which ended by the gateway): ${Object.entries(byKind).map(([k, v]) => `${k} ${v.sessions}/${v.byGateway}`).join(', ')}; ` +
      `agents that could not join ${agentFailures.length}; ffi errors ${metricSum(text, 'xiaozhi_livekit_events_total', { event: 'ffi_errors' })}\n` +
      `  total RSS ${(samples[0]!.kb / 1024).toFixed(0)} → ${(samples.at(-1)!.kb / 1024).toFixed(0)} MB ` +
      `(max ${(Math.max(...samples.map((s) => s.kb)) / 1024).toFixed(0)}); cycle means in the last 60 % ${ys.map((y) => (y / 1024).toFixed(0)).join(', ')} MB; ` +
      `slope ${perSessionKb.toFixed(1)} KB per session; descriptors ${samples[0]!.fds} → ${samples.at(-1)!.fds}, slope ${perSessionFds.toFixed(3)} per session; open at the end: ${left.join(', ') || 'none'}` +
      (unexpected.length || agentFailures.length ? `\n  unexpected: ${unexpected.slice(0, 10).join('; ')}\n  agents that could not join: ${agentFailures.slice(0, 10).join('; ')}` : '');
    console.log(summary);
    // Every failure message carries the run's summary: CI shows only part of the output.
    const why = (what: string) => `${what}\n${summary}`;
    if (process.env.XIAOZHI_TEST_DEBUG) console.log(gateway.logs.filter((l) => /recycl|replacement|drain|stopping/.test(String(l.msg))).map((l) => JSON.stringify(l)).join("\n"));
    expect(deaths(), why('no worker died')).toEqual([]);
    expect(closedInConversation, why('no device closed during a conversation')).toEqual([]);
    expect(unexpected, why('every ending the gateway owes the device came')).toEqual([]);
    expect(left, why('LiveKit objects open at the end')).toEqual([]);
    expect(Object.keys(byKind).sort(), why('every ending ran')).toEqual([...new Set(MIX)].sort());
    expect(restarts, why('livekit-server restarts')).toHaveLength(RESTARTS);
    // Rooms the server deleted leave their audio sources in rtc-node (src/livekit/rtc-retention.ts):
    // the workers count them and are recycled on them too.
    expect(forRetained, why('recycles on retained audio sources')).toBeGreaterThan(0);
    // An agent that cannot join while the server restarts; a few on a busy machine.
    expect(agentFailures.length, why('agents that could not join')).toBeLessThanOrEqual(RESTARTS * DEVICES + SESSIONS / 100);
    expect(whole.length, why('whole recycle cycles in the last 60 % of the run')).toBeGreaterThanOrEqual(MIN_CYCLES);
    expect(perSessionKb, why('RSS slope per session over whole cycles')).toBeLessThanOrEqual(MAX_SLOPE_KB);
    expect(perSessionFds, why('descriptor slope per session over whole cycles')).toBeLessThanOrEqual(MAX_FD_SLOPE);
    // A hello crossing the drain's close, or a connect crossing its listener's close, is a narrow
    // race: at most about one per recycle.
    expect(interrupted + connectResets, why('hellos and connects that crossed a drain')).toBeLessThanOrEqual(recycledCount());
  }, SESSIONS * 4000 + 180_000);
});
