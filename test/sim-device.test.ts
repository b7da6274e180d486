// Simulated devices over real sockets against a scriptable fake server (helpers/sim-fake-gateway.ts):
// what the device puts on the wire (OTA headers, MQTT CONNECT, no SUBSCRIBE, uplink header/IV and
// sequence), and that the simulator reports a misbehaving server: audio after tts stop, bursts that
// overflow the 40-packet queue, damaged and reordered datagrams, invalid hello replies.
import { afterEach, describe, expect, it, vi } from 'vitest';
import { buildUplinkClip } from '../src/sim/audio.js';
import { runSimulation, type SimulationOptions } from '../src/sim/simulator.js';
import { startFakeGateway, type FakeBehaviour, type FakeGateway } from './helpers/sim-fake-gateway.js';

const clip = buildUplinkClip({ seconds: 8 });
let fake: FakeGateway | null = null;

afterEach(async () => {
  await fake?.close();
  fake = null;
});

async function simulate(behaviour: FakeBehaviour, o: Partial<SimulationOptions> = {}) {
  fake = await startFakeGateway(behaviour);
  const summary = await runSimulation({
    gateway: fake.otaUrl,
    devices: 2,
    durationS: 2.5,
    speakMs: 600,
    pauseMs: 200,
    rampMs: 50,
    replyTimeoutMs: 3000,
    ttsStopTimeoutMs: 2000,
    decodeThreads: 0,
    clip,
    ...o,
  });
  return { summary, fake };
}

describe('simulated device against a well-behaved server', () => {
  it('speaks the firmware protocol and measures a clean run', async () => {
    // The fake answers listen stop with tts start at once and the first audio 250 ms later, so the
    // measured latencies are bounded by what the server did, not by how busy this machine is.
    const { summary, fake } = await simulate({ replyFrames: 8, mcpAfterHello: true, firstAudioDelayMs: 250 }, { durationS: 3.5 });
    expect(summary.problems).toEqual([]);
    expect(summary.ok).toBe(true);
    expect(summary.sessions.opened).toBe(2);
    expect(summary.turns.completed).toBeGreaterThanOrEqual(2);
    expect(summary.violations.ttsStopBeforeLastAudio).toBe(0);
    expect(summary.deviceDrops.total).toBe(0);
    expect(summary.latencyMs.count).toBe(summary.turns.completed);
    // Round-trip latency runs from listen stop to the first reply audio: never less than the
    // server's own delay, and later than tts start (sent 250 ms earlier).
    expect(summary.latencyMs.min!).toBeGreaterThanOrEqual(250);
    expect(summary.ttsStartMs.count).toBe(summary.turns.completed);
    expect(summary.ttsStartMs.p50!).toBeLessThan(summary.latencyMs.p50!);
    expect(summary.mcp).toEqual({ requests: 2, replies: 2 });
    expect(summary.gateway.available).toBe(true);
    expect(fake.devices.size).toBe(2);
    // The simulation ends when each device has sent its goodbye and ended its MQTT connection; the
    // fake has read everything once the connection closed on its side (on a busy machine, later).
    await vi.waitFor(() => expect(fake.openConnections()).toBe(0), { timeout: 10_000, interval: 20 });
    for (const d of fake.devices.values()) {
      expect(d.subscribes).toBe(0);
      expect(d.protocolVersion).toBe(4);
      expect(d.clean).toBe(true);
      expect(d.keepalive).toBe(60);
      expect(d.password).toBe('fake-password');
      expect(d.clientId).toMatch(/^GID_test@@@02_01_00_00_00_0[01]@@@[0-9a-f-]{36}$/);
      expect(d.uplinkErrors).toEqual([]);
      expect(d.uplinkPackets).toBeGreaterThan(10);
      expect(d.otaHeaders).toMatchObject({ 'activation-version': '1', 'content-type': 'application/json', 'user-agent': 'bread-compact-wifi/2.4.2', 'accept-language': 'zh-CN' });
      expect(d.otaHeaders!['device-id']).toMatch(/^02:01:00:00:00:0[01]$/);
      expect(d.messages[0]).toBe('{"type":"hello","version":3,"transport":"udp","features":{"mcp":true,"glyph_push":false},"audio_params":{"format":"opus","sample_rate":16000,"channels":1,"frame_duration":60}}');
      const sid = `fake-${d.clientId}-1`;
      expect(d.messages.filter((m) => m.includes('"state":"start"'))[0]).toBe(`{"session_id":"${sid}","type":"listen","state":"start","mode":"auto"}`);
      expect(d.messages).toContain(`{"session_id":"${sid}","type":"listen","state":"stop"}`);
      expect(d.messages[d.messages.length - 1]).toBe(`{"session_id":"${sid}","type":"goodbye"}`);
      const mcp = d.messages.find((m) => m.includes('"type":"mcp"'));
      expect(JSON.parse(mcp!)).toMatchObject({ session_id: sid, type: 'mcp', payload: { jsonrpc: '2.0', id: 7, result: { tools: expect.any(Array) } } });
    }
  });

  it('manual mode: listen start "manual", the pause is spent idle', async () => {
    const { summary, fake } = await simulate({ replyFrames: 5 }, { mode: 'manual', devices: 1 });
    expect(summary.ok).toBe(true);
    const d = [...fake.devices.values()][0]!;
    expect(d.messages.filter((m) => m.includes('"mode":"manual"')).length).toBe(summary.turns.started);
  });

  it('realtime mode: server AEC, one listen start, no listen stop, uplink timestamps of played audio', async () => {
    const { summary, fake } = await simulate({ replyFrames: 5, vad: true }, { mode: 'realtime', devices: 1, durationS: 4 });
    expect(summary.ok).toBe(true);
    expect(summary.turns.completed).toBeGreaterThanOrEqual(2);
    const d = [...fake.devices.values()][0]!;
    expect(d.messages[0]).toContain('"features":{"aec":true,"mcp":true,"glyph_push":false}');
    // after tts stop the firmware is listening again with voice processing running: no new listen start
    expect(d.messages.filter((m) => m.includes('"type":"listen"'))).toEqual([`{"session_id":"fake-${d.clientId}-1","type":"listen","state":"start","mode":"realtime"}`]);
    // uplink timestamps echo played downlink timestamps: the fake flags non-zero timestamps
    expect(d.uplinkErrors.every((e) => e.startsWith('timestamp'))).toBe(true);
    expect(d.uplinkErrors.length).toBeGreaterThan(0);
  });
});

describe('the simulator catches a misbehaving server', () => {
  it('tts stop sent before the last audio: every late packet is a violation', async () => {
    const { summary } = await simulate({ replyFrames: 10, ttsStopEarlyBy: 3 }, { devices: 1 });
    expect(summary.ok).toBe(false);
    expect(summary.violations.ttsStopBeforeLastAudio).toBe(3 * summary.turns.completed);
    expect(summary.deviceDrops['after-tts-stop']).toBe(summary.violations.ttsStopBeforeLastAudio);
    expect(summary.problems.join()).toMatch(/after the turn's tts stop/);
  });

  it('a burst overflows the device queue (40 packets + 3 in playback)', async () => {
    const { summary } = await simulate({ replyFrames: 60, burst: true }, { devices: 1, durationS: 1, ttsStopTimeoutMs: 5000 });
    expect(summary.deviceDrops['queue-overflow']).toBe(17 * summary.turns.completed);
    expect(summary.downlink.maxQueueDepth).toBe(40);
    expect(summary.turns.completed).toBeGreaterThanOrEqual(1);
  });

  it('damaged, duplicated, lost and reordered datagrams', async () => {
    const damage = (seq: number) =>
      seq === 2 ? 'bad-type' : seq === 3 ? 'length' : seq === 4 ? 'duplicate' : seq === 6 ? 'skip' : seq === 8 ? 'swap-next' : null;
    const { summary } = await simulate({ replyFrames: 12, damage }, { devices: 1, durationS: 1 });
    expect(summary.turns.completed).toBe(1);
    expect(summary.deviceDrops).toMatchObject({ 'bad-type': 1, 'length-mismatch': 1, 'old-sequence': 2 });
    expect(summary.downlink).toMatchObject({ lost: 2, reordered: 1, duplicates: 1 });
    expect(summary.violations.ttsStopBeforeLastAudio).toBe(0);
  });

  it('audio before tts start is dropped', async () => {
    const { summary } = await simulate({ replyFrames: 5, audioBeforeTtsStart: 2 }, { devices: 1, durationS: 1 });
    expect(summary.deviceDrops['before-tts-start']).toBe(2 * summary.turns.completed);
  });

  it('a hello reply without transport: v2.4 ignores it (timeout), older firmware crashes', async () => {
    const noTransport = (h: Record<string, unknown>) => {
      const { transport: _t, ...rest } = h;
      return rest;
    };
    // the device waits 10 s for a reply it can use
    const a = await simulate({ helloReply: noTransport }, { devices: 1, durationS: 0.5, firmware: 'v2.4', drainTimeoutMs: 15_000 });
    expect(a.summary.failures['hello-invalid']).toBe(1);
    expect(a.summary.sessions.opened).toBe(0);
    expect(a.summary.ok).toBe(false);
    await fake!.close();
    fake = null;
    const b = await simulate({ helloReply: noTransport }, { devices: 1, durationS: 0.5, firmware: 'legacy', drainTimeoutMs: 15_000 });
    expect(b.summary.failures['firmware-crash']).toBeGreaterThanOrEqual(1);
    expect(b.summary.reboots).toBeGreaterThanOrEqual(1);
  }, 60_000);

  it('server goodbye closes the session; the device opens a new one', async () => {
    const { summary, fake } = await simulate({ replyFrames: 4, goodbyeAfterReplies: 1 }, { devices: 1, durationS: 3 });
    expect(summary.sessions.closedByServer).toBeGreaterThanOrEqual(1);
    expect(summary.sessions.opened).toBeGreaterThanOrEqual(2);
    const d = [...fake.devices.values()][0]!;
    // v2.4 does not answer a server goodbye with its own
    const hellos = d.messages.filter((m) => m.startsWith('{"type":"hello"')).length;
    expect(hellos).toBe(summary.sessions.opened);
  });
});
