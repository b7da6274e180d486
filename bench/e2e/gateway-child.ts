// The gateway under test for `bench e2e`, in its own process so its CPU is its own: agent backend
// 'livekit' with probes on the points the benchmark times (uplink frame captured into the
// AudioSource; agent frame received and handed to the downlink pipeline; downlink datagram built
// and handed to the pacer; datagram sent by the pacer). XZ_BENCH_DUMP=<path>: the raw timestamps
// are also written to <path>.<pid>.json (to look at one session's turns when a figure surprises).
import { writeFileSync } from 'node:fs';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { loadConfig } from '../../src/config.js';
import { DownlinkPacer } from '../../src/device/downlink-pacer.js';
import { AudioSession } from '../../src/device/session.js';
import { Gateway } from '../../src/gateway.js';
import { LivekitAgentBackend } from '../../src/livekit/livekit-backend.js';
import { legacyOptions } from './legacy.js';
import type { ChildConfig, FromChild, ToChild } from './protocol.js';

const abs = (t: number) => performance.timeOrigin + t;
const send = (m: FromChild) => process.send!(m);

async function main(): Promise<void> {
  const cfg = JSON.parse(process.argv[2]!) as ChildConfig;
  /** Per session: [datagram sequence, captured at] (a concealed frame carries its missing datagram's). */
  const uplinkCaptured: Record<string, Array<[number, number]>> = {};
  const downlinkForwarded: Record<string, Array<[number, number]>> = {};
  const downlinkBuilt: Record<string, number[]> = {};
  const downlinkSent: Record<string, number[]> = {};
  const forwardedSamples: Record<string, number> = {};
  const turnEnds: Record<string, number[]> = {};
  // Instrumentation by wrapping two methods (bench only; nothing in the gateway knows about it).
  const enqueue = DownlinkPacer.prototype.enqueue;
  DownlinkPacer.prototype.enqueue = function (this: DownlinkPacer, session, datagram) {
    const sid = (session as unknown as { sessionId?: string }).sessionId;
    if (sid) (downlinkBuilt[sid] ??= []).push(abs(performance.now()));
    return enqueue.call(this, session, datagram);
  };
  const endTurn = DownlinkPacer.prototype.endTurn;
  DownlinkPacer.prototype.endTurn = function (this: DownlinkPacer, session) {
    const sid = (session as unknown as { sessionId?: string }).sessionId;
    if (sid) (turnEnds[sid] ??= []).push(abs(performance.now()));
    return endTurn.call(this, session);
  };
  const sendDatagram = AudioSession.prototype.sendDatagram;
  AudioSession.prototype.sendDatagram = function (this: AudioSession, datagram: Buffer) {
    const ok = sendDatagram.call(this, datagram);
    if (ok) (downlinkSent[this.sessionId] ??= []).push(abs(performance.now()));
    return ok;
  };
  let pacerDrops = 0;
  const countDrop = AudioSession.prototype.countDrop;
  AudioSession.prototype.countDrop = function (this: AudioSession, reason) {
    pacerDrops++;
    return countDrop.call(this, reason);
  };
  const config = loadConfig({
    env: {},
    overrides: {
      mqttPort: 0, udpPort: 0, httpPort: 0, publicHost: '127.0.0.1', mqttHost: '127.0.0.1', udpHost: '127.0.0.1', httpHost: '127.0.0.1',
      auth: 'open', logLevel: 'error', agent: 'livekit', maxConnections: 10000,
      // The benchmark measures what the machine holds: no refusals before it gets there.
      admission: 'off',
      // Setting up 50 rooms and agents on 2 cores takes minutes; the devices stay silent meanwhile.
      // Neither the UDP idle timeout nor the no-agent timeout may end a session before the window.
      udpTimeoutS: 1800,
      livekitUrl: cfg.livekitUrl, livekitApiKey: cfg.apiKey, livekitApiSecret: cfg.apiSecret, livekitAgentName: '', livekitAgentJoinTimeoutMs: 600_000,
    },
  });
  const backend = LivekitAgentBackend.fromConfig(config, {
    connectTimeoutMs: 60000,
    ...legacyOptions(process.env.XZ_BENCH_LEGACY),
    probe: {
      uplinkCaptured: (sid, _samples, _pushedAt, capturedAt, sequence) => (uplinkCaptured[sid] ??= []).push([sequence ?? -1, abs(capturedAt)]),
      downlinkForwarded: (sid, samples, at) => {
        const end = (forwardedSamples[sid] ?? 0) + samples;
        forwardedSamples[sid] = end;
        (downlinkForwarded[sid] ??= []).push([end, abs(at)]);
      },
    },
  });
  const gw = await Gateway.start(config, { agents: backend });
  const loop = monitorEventLoopDelay({ resolution: 5 });
  let cpu = process.cpuUsage();
  let wall = performance.now();
  process.on('message', async (m: ToChild) => {
    if (m.type === 'mark') {
      cpu = process.cpuUsage();
      wall = performance.now();
      loop.reset();
      loop.enable();
    } else if (m.type === 'collect') {
      const used = process.cpuUsage(cpu);
      loop.disable();
      if (process.env.XZ_BENCH_DUMP) writeFileSync(`${process.env.XZ_BENCH_DUMP}.${process.pid}.json`, JSON.stringify({ uplinkCaptured, downlinkForwarded, downlinkBuilt, downlinkSent, turnEnds }));
      const lk = backend.stats();
      send({
        type: 'report', uplinkCaptured, downlinkForwarded, downlinkBuilt, downlinkSent, turnEnds,
        cpuUserUs: used.user, cpuSystemUs: used.system, wallMs: performance.now() - wall,
        eventLoopP99Ms: loop.percentile(99) / 1e6, eventLoopMaxMs: loop.max / 1e6,
        uplinkDropped: lk.uplinkDropped, uplinkShed: lk.uplinkShed + lk.uplinkShedSpeech,
        downlinkDropped: lk.downlinkDropped + pacerDrops, livekitSessions: lk.sessions,
      });
    } else if (m.type === 'stop') {
      await gw.stop();
      process.exit(0);
    }
  });
  send({ type: 'ready', ports: gw.ports });
}

main().catch((err: Error) => {
  send({ type: 'error', message: err.stack ?? err.message });
  process.exit(1);
});
