// The gateway against a raw device written from PROTOCOL.md (test/helpers/raw-device.ts): sessions,
// echo round trip, pacing and tts ordering, key rotation, address binding, hostile input, timeouts.
import dgram from 'node:dgram';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { Gateway } from '../src/gateway.js';
import { OpusDecoder } from '../src/index.js';
import { speechPackets } from './helpers/fixtures.js';
import { RawDevice } from './helpers/raw-device.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

let gw: Gateway;
const devices: RawDevice[] = [];
let macCounter = 0x10;
const nextMac = () => `02:00:00:00:00:${(macCounter++).toString(16).padStart(2, '0')}`;

// 60 ms Opus frames of real speech at 16 kHz, as the device's microphone path produces.
const speechFrames = speechPackets(60).packets;

async function device(): Promise<RawDevice> {
  const d = await RawDevice.connect(gw.ports.http, nextMac());
  devices.push(d);
  return d;
}

/** Streams `n` speech frames at real-time cadence (60 ms). */
async function speak(d: RawDevice, n: number, socket?: dgram.Socket): Promise<void> {
  for (let i = 0; i < n; i++) {
    d.sendUdp(d.datagram(speechFrames[i % speechFrames.length]!), socket);
    await sleep(60);
  }
}

beforeAll(async () => {
  gw = await Gateway.start({
    mqttPort: 0, udpPort: 0, httpPort: 0, publicHost: '127.0.0.1', auth: 'signature',
    signatureKey: 'test-signature-key-0123456789', logLevel: 'silent', udpTimeoutS: 120,
  });
});

afterEach(async () => {
  await Promise.all(devices.splice(0).map((d) => d.close()));
});

afterAll(async () => {
  await gw.stop('test end');
});

describe('hello', () => {
  it('replies with every field the firmware needs and a fresh key per hello', async () => {
    const d = await device();
    const a = await d.sayHello();
    expect(a).toMatchObject({ type: 'hello', transport: 'udp', audio_params: { format: 'opus', sample_rate: 24000, channels: 1, frame_duration: 60 } });
    expect(a.udp.server).toBe('127.0.0.1');
    expect(a.udp.port).toBe(gw.ports.udp);
    expect(a.udp.key).toMatch(/^[0-9a-f]{32}$/);
    expect(a.udp.nonce).toMatch(/^01000000[0-9a-f]{8}0{16}$/);
    expect(typeof a.session_id).toBe('string');
    const b = await d.sayHello();
    expect(b.session_id).not.toBe(a.session_id);
    expect(b.udp.key).not.toBe(a.udp.key);
    expect(b.udp.nonce).not.toBe(a.udp.nonce);
    expect(gw.pipeline.openStreams).toBe(2);  // the first hello's streams are closed
  });

  it('rejects hellos with a wrong version, transport or audio params (no reply, counted)', async () => {
    const d = await device();
    const before = gw.counters().hello_rejected ?? 0;
    const base = { type: 'hello', version: 3, transport: 'udp', audio_params: { format: 'opus', sample_rate: 16000, channels: 1, frame_duration: 60 } };
    d.publish({ ...base, version: 9 });
    d.publish({ ...base, transport: 'websocket' });
    d.publish({ ...base, audio_params: { format: 'pcm', sample_rate: 16000, channels: 1, frame_duration: 60 } });
    d.publish({ ...base, audio_params: { format: 'opus', sample_rate: 44100, channels: 1, frame_duration: 60 } });
    await sleep(300);
    expect(d.messages.filter((m) => m.type === 'hello')).toHaveLength(0);
    expect((gw.counters().hello_rejected ?? 0) - before).toBe(4);
  });

  it('ignores malformed, array, null and __proto__ JSON and keeps serving the device', async () => {
    const d = await device();
    const before = gw.counters().message_invalid ?? 0;
    for (const bad of ['{not json', '[1,2]', 'null', '"hello"', '{"__proto__":{"type":"hello"}}', '{"type":5}']) d.publish(bad);
    await sleep(200);
    expect((gw.counters().message_invalid ?? 0) - before).toBe(6);
    expect(({} as Record<string, unknown>).type).toBeUndefined();  // no prototype pollution
    await expect(d.sayHello()).resolves.toMatchObject({ type: 'hello' });
  });
});

describe('echo round trip', () => {
  it('plays back what the device said: tts start first, paced audio, tts stop after the last packet', async () => {
    const d = await device();
    await d.sayHello();
    const sid = d.session();
    d.publish({ session_id: sid, type: 'listen', state: 'start', mode: 'manual' });
    await speak(d, 25);  // 1.5 s
    const stopAt = performance.now();
    d.publish({ session_id: sid, type: 'listen', state: 'stop' });
    const ttsStop = await d.waitFor((m) => m.type === 'tts' && m.state === 'stop', 10_000);
    const ttsStart = d.messages.find((m) => m.type === 'tts' && m.state === 'start')!;
    expect(ttsStart.session_id).toBe(sid);
    expect(ttsStop.session_id).toBe(sid);
    const audio = d.datagrams;
    expect(audio.length).toBeGreaterThanOrEqual(24);
    expect(audio[0]!.at).toBeGreaterThan(ttsStart.at);
    expect(ttsStop.at).toBeGreaterThan(audio.at(-1)!.at);
    // Device receive rules (v2.4+): type 1, payload_len = length - 16, sequence strictly increasing.
    const dec = new OpusDecoder({ sampleRate: 24000, channels: 1 });
    let last = 0;
    let decoded = 0;
    for (const { data } of audio) {
      expect(data[0]).toBe(1);
      expect(data.readUInt16BE(2)).toBe(data.length - 16);
      const seq = data.readUInt32BE(12);
      expect(seq).toBeGreaterThan(last);
      last = seq;
      decoded += dec.decode(d.decrypt(data).opus).length;
    }
    expect(decoded).toBeGreaterThanOrEqual(24 * 1440);
    // Paced: the lead (2 frames) ahead of real time, and after a stall at most maxAheadFrames (8)
    // ahead of the device's playback (late audio catches up instead of holding the rest of the turn).
    const span = audio.at(-1)!.at - audio[0]!.at;
    expect(span).toBeGreaterThanOrEqual((audio.length - 8) * 60 - 10);
    // Round trip from listen stop to the first echoed packet, for information.
    console.log(`echo: ${audio.length} packets, first ${Math.round(audio[0]!.at - stopAt)} ms after listen stop`);
  }, 30_000);

  it('abort (barge-in): nothing of the turn is sent once the gateway has handled it; the device gets tts stop', async () => {
    const d = await device();
    await d.sayHello();
    const sid = d.session();
    d.publish({ session_id: sid, type: 'listen', state: 'start', mode: 'manual' });
    await speak(d, 40);  // 2.4 s, echoed back as about 40 datagrams
    d.publish({ session_id: sid, type: 'listen', state: 'stop' });
    await d.waitFor((m) => m.type === 'tts' && m.state === 'start', 5000);
    await sleep(400);
    const before = gw.counters().downlink_after_abort!;
    const abortAt = performance.now();
    d.publish({ session_id: sid, type: 'abort', reason: 'wake_word_detected' });
    await d.waitFor((m) => m.type === 'tts' && m.state === 'stop' && m.at > abortAt, 5000);
    await sleep(600);  // the rest of the echo would still be leaving now
    // The gateway counts what it sends between handling the abort and the agent's next turn.
    // AudioSession.abort() clears the pacer's queue, discards what the pipeline produced before it
    // and stops the echo agent, all before it returns: the bound is 0. Datagrams handed to the
    // socket before the abort was handled are not counted (they are on their way to the device).
    expect(gw.counters().downlink_after_abort! - before).toBe(0);
    // The abort cut the turn short.
    expect(d.datagrams.length).toBeLessThan(40);
    const last = d.datagrams.at(-1)!.at;
    console.log(`abort: ${d.datagrams.length} datagrams, the last arrived ${Math.round(last - abortAt)} ms after the device published abort`);
  }, 30_000);
});

describe('goodbye and session ids', () => {
  it('ignores a goodbye with the wrong session_id and closes on the right one', async () => {
    const d = await device();
    await d.sayHello();
    const streams = gw.pipeline.openStreams;
    d.publish({ session_id: 'not-this-one', type: 'goodbye' });
    await sleep(200);
    expect(gw.pipeline.openStreams).toBe(streams);
    d.publish({ session_id: d.session(), type: 'goodbye' });
    await sleep(200);
    expect(gw.pipeline.openStreams).toBe(streams - 2);
    expect(d.messages.filter((m) => m.type === 'goodbye')).toHaveLength(0);  // no reply to a device goodbye
  });
});

describe('UDP', () => {
  it('binds the first valid packet, ignores forged and unknown-ssrc packets, and rebinds on a NAT port change', async () => {
    const d = await device();
    await d.sayHello();
    const forger = dgram.createSocket('udp4');
    await new Promise<void>((r) => forger.bind(0, '127.0.0.1', () => r()));
    const forgedSeen: Buffer[] = [];
    forger.on('message', (m) => forgedSeen.push(m));
    const before = gw.counters();
    // Forged: right ssrc and header, garbage payload (no key), from another port, huge sequence.
    const garbage = Buffer.alloc(80, 0x5a);
    d.sendUdp(Buffer.concat([d.header(garbage.length, 1000), garbage]), forger);
    d.sendUdp(Buffer.concat([d.header(garbage.length, 5), garbage]), forger);
    // Unknown ssrc and short datagrams.
    const unknown = d.datagram(speechFrames[0]!, 1);
    unknown.writeUInt32BE((unknown.readUInt32BE(4) + 1) >>> 0, 4);
    d.sendUdp(unknown);
    d.sendUdp(Buffer.alloc(10));
    await sleep(200);
    const after = gw.counters();
    expect(after.udp_unknown_ssrc! - (before.udp_unknown_ssrc ?? 0)).toBe(1);
    expect(after.udp_short! - (before.udp_short ?? 0)).toBe(1);
    // The genuine device binds with its own packets; the forged huge sequence did not lock it out.
    d.publish({ session_id: d.session(), type: 'listen', state: 'start', mode: 'manual' });
    await speak(d, 10);
    d.publish({ session_id: d.session(), type: 'listen', state: 'stop' });
    await d.waitFor((m) => m.type === 'tts' && m.state === 'stop', 10_000);
    expect(d.datagrams.length).toBeGreaterThan(5);
    expect(forgedSeen).toHaveLength(0);
    // NAT rebinding: same IP, new port, valid packets with higher sequences.
    const rebound = dgram.createSocket('udp4');
    const reboundSeen: Buffer[] = [];
    rebound.on('message', (m) => reboundSeen.push(m));
    await new Promise<void>((r) => rebound.bind(0, '127.0.0.1', () => r()));
    d.publish({ session_id: d.session(), type: 'listen', state: 'start', mode: 'manual' });
    await speak(d, 10, rebound);
    d.publish({ session_id: d.session(), type: 'listen', state: 'stop' });
    await d.waitFor((m) => m.type === 'tts' && m.state === 'stop' && d.messages.filter((x) => x.type === 'tts' && x.state === 'stop').length === 2, 10_000);
    expect(reboundSeen.length).toBeGreaterThan(5);
    expect(forgedSeen).toHaveLength(0);
    forger.close();
    rebound.close();
  }, 30_000);

  it('drops a flood beyond the per-session rate limit before decryption', async () => {
    const d = await device();
    await d.sayHello();
    const before = gw.counters().udp_rate_limited ?? 0;
    for (let i = 0; i < 400; i++) d.sendUdp(d.datagram(speechFrames[i % speechFrames.length]!));
    await sleep(300);
    expect((gw.counters().udp_rate_limited ?? 0) - before).toBeGreaterThan(200);
  });
});

describe('connections', () => {
  it('a device that vanishes releases its session, streams and UDP registration', async () => {
    const d = await device();
    await d.sayHello();
    const streams = gw.pipeline.openStreams;
    d.mqtt.stream.destroy();  // no DISCONNECT, no goodbye
    await sleep(300);
    expect(gw.pipeline.openStreams).toBe(streams - 2);
  });

  it('a second connection with the same client id takes over and tears the old session down', async () => {
    const d = await device();
    await d.sayHello();
    const streams = gw.pipeline.openStreams;
    const { default: mqtt } = await import('mqtt');
    const [host, port] = d.creds.endpoint.split(':');
    const twin = mqtt.connect({ host, port: Number(port), protocolVersion: 4, clientId: d.creds.client_id, username: d.creds.username, password: d.creds.password, reconnectPeriod: 0 });
    await new Promise((r) => twin.once('connect', r));
    await sleep(300);
    expect(gw.pipeline.openStreams).toBe(streams - 2);
    expect(gw.stats.connections).toBeGreaterThanOrEqual(1);
    await twin.endAsync(true);
  });

  it('closes a silent audio channel with a server goodbye carrying the session_id', async () => {
    const quick = await Gateway.start({ mqttPort: 0, udpPort: 0, httpPort: 0, publicHost: '127.0.0.1', auth: 'open', logLevel: 'silent', udpTimeoutS: 1 });
    try {
      const d = await RawDevice.connect(quick.ports.http, nextMac());
      devices.push(d);
      await d.sayHello();
      const bye = await d.waitFor((m) => m.type === 'goodbye', 5000);
      expect(bye.session_id).toBe(d.session());
      expect(quick.pipeline.openStreams).toBe(0);
    } finally {
      await quick.stop();
    }
  });

  it('stop() says goodbye to every device and releases everything', async () => {
    const g = await Gateway.start({ mqttPort: 0, udpPort: 0, httpPort: 0, publicHost: '127.0.0.1', auth: 'open', logLevel: 'silent' });
    const d = await RawDevice.connect(g.ports.http, nextMac());
    devices.push(d);
    await d.sayHello();
    const t0 = performance.now();
    await g.stop('test');
    expect(performance.now() - t0).toBeLessThan(10_000);
    await sleep(100);
    expect(d.messages.some((m) => m.type === 'goodbye' && m.session_id === d.session())).toBe(true);
    expect(g.pipeline.closed).toBe(true);
  });
});

describe('operations', () => {
  it('serves /metrics, /healthz and /readyz', async () => {
    const base = `http://127.0.0.1:${gw.ports.http}`;
    const text = await (await fetch(`${base}/metrics`)).text();
    for (const family of ['xiaozhi_pipeline_events_total', 'xiaozhi_drops_total', 'xiaozhi_sessions', 'xiaozhi_pipeline_duration_seconds_bucket', 'process_cpu_seconds_total', 'process_resident_memory_bytes', 'nodejs_eventloop_lag_p99_seconds']) {
      expect(text).toContain(family);
    }
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    expect((await fetch(`${base}/readyz`)).status).toBe(200);
  });
});
