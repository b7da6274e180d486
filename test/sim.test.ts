// The simulated device's firmware rules, checked with hand-built datagrams and messages: what the
// firmware sends (byte for byte), what it accepts from the server, its downlink receive rules, its
// 40-packet decode queue, and the simulator's measurements (drops by reason, tts-stop violations,
// latency, loss/reorder, echo fidelity). No network, no real time.
import { describe, expect, it } from 'vitest';
import { OpusEncoder } from '../src/index.js';
import { AesCtr } from '../src/native/index.js';
import { buildUplinkClip, envelopeCorrelation, FRAME_MS, synthesizeSpeech } from '../src/sim/audio.js';
import { ManualClock, Scheduler } from '../src/sim/clock.js';
import { InlineDecodeService } from '../src/sim/decoder.js';
import { parseSimulateArgs } from '../src/sim/cli.js';
import {
  FIRMWARE,
  abortMessage,
  applyOtaReply,
  goodbyeMessage,
  helloMessage,
  listenStartMessage,
  listenStopMessage,
  mcpMessage,
  mqttSettingsFrom,
  parseHelloReply,
  stoi,
  wakeWordMessage,
} from '../src/sim/firmware.js';
import { parseProm, promValue } from '../src/sim/gateway-metrics.js';
import { otaHeaders, systemInfoJson } from '../src/sim/ota.js';
import { PlaybackModel } from '../src/sim/playback.js';
import { DownlinkReceiver, SequenceTracker } from '../src/sim/receiver.js';
import { AudioSink } from '../src/sim/sink.js';
import { DeviceStats, distribution, percentile } from '../src/sim/stats.js';
import { ctr, helloNonce, readWireHeader, writeWireHeader } from './helpers/wire.js';

const KEY = Buffer.from('00112233445566778899aabbccddeeff', 'hex');
const SSRC = 0x1234abcd;
const v24 = FIRMWARE['v2.4'];
const legacy = FIRMWARE.legacy;

/** A server → device datagram built from the spec (wire.ts, node:crypto), with optional damage. */
function serverDatagram(
  sequence: number,
  opus: Uint8Array,
  o: { type?: number; flags?: number; timestamp?: number; payloadLength?: number; key?: Uint8Array } = {},
): Buffer {
  const header = writeWireHeader({
    type: o.type ?? 0x01,
    flags: o.flags ?? 0x01,
    payloadLength: o.payloadLength ?? opus.length,
    ssrc: SSRC,
    timestamp: o.timestamp ?? sequence * 60,
    sequence,
  });
  return Buffer.concat([header, ctr(o.key ?? KEY, header, opus)]);
}

// Real downlink Opus (24 kHz, 60 ms) of a speech-like signal, as the gateway would send.
const downlinkOpus: Buffer[] = (() => {
  const pcm = synthesizeSpeech(4, 24000, 7);
  const enc = new OpusEncoder({ sampleRate: 24000, channels: 1, application: 'voip' });
  const out: Buffer[] = [];
  for (let i = 0; i + 1440 <= pcm.length; i += 1440) out.push(enc.encode(pcm.subarray(i, i + 1440)));
  enc.close();
  return out;
})();

function sinkFor(rules = v24, options: { decode?: boolean } = {}) {
  const stats = new DeviceStats();
  const decoder = new InlineDecodeService();
  const sink = new AudioSink({ rules, decoder, device: 0, stats, decode: options.decode ?? true });
  decoder.onResult = (r) => sink.decoded(r);
  sink.openChannel(new AesCtr(KEY), 24000, 60);
  return { sink, stats, decoder };
}

// ---- what the device sends --------------------------------------------------------------------

describe('device messages, byte for byte', () => {
  it('hello: compact JSON in cJSON member order, no session_id', () => {
    expect(helloMessage(v24, false)).toBe(
      '{"type":"hello","version":3,"transport":"udp","features":{"mcp":true,"glyph_push":false},' +
        '"audio_params":{"format":"opus","sample_rate":16000,"channels":1,"frame_duration":60}}',
    );
    expect(helloMessage(v24, true)).toContain('"features":{"aec":true,"mcp":true,"glyph_push":false}');
    expect(helloMessage(legacy, false)).toBe(
      '{"type":"hello","version":3,"transport":"udp","features":{"mcp":true},' +
        '"audio_params":{"format":"opus","sample_rate":16000,"channels":1,"frame_duration":60}}',
    );
  });

  it('session messages start with session_id, as the firmware concatenates them', () => {
    expect(listenStartMessage('s1', 'auto')).toBe('{"session_id":"s1","type":"listen","state":"start","mode":"auto"}');
    expect(listenStartMessage('s1', 'manual')).toBe('{"session_id":"s1","type":"listen","state":"start","mode":"manual"}');
    expect(listenStopMessage('s1')).toBe('{"session_id":"s1","type":"listen","state":"stop"}');
    expect(wakeWordMessage('s1', '你好小智')).toBe('{"session_id":"s1","type":"listen","state":"detect","text":"你好小智"}');
    expect(abortMessage('s1')).toBe('{"session_id":"s1","type":"abort"}');
    expect(abortMessage('s1', true)).toBe('{"session_id":"s1","type":"abort","reason":"wake_word_detected"}');
    expect(goodbyeMessage('s1')).toBe('{"session_id":"s1","type":"goodbye"}');
    expect(mcpMessage('s1', '{"jsonrpc":"2.0","id":1,"result":{}}')).toBe('{"session_id":"s1","type":"mcp","payload":{"jsonrpc":"2.0","id":1,"result":{}}}');
    // A device without a session id still sends the member, empty.
    expect(listenStopMessage('')).toBe('{"session_id":"","type":"listen","state":"stop"}');
  });

  it('OTA: the firmware headers and a system-info body with the keys servers read', () => {
    const id = { mac: '02:01:00:00:00:2a', uuid: 'a0b1c2d3-0000-4000-8000-000000000001', board: 'bread-compact-wifi', version: '2.4.2', language: 'zh-CN', chip: 'esp32s3' };
    const body = systemInfoJson(id);
    const parsed = JSON.parse(body) as Record<string, unknown>;
    expect(parsed).toMatchObject({ mac_address: id.mac, uuid: id.uuid, chip_model_name: 'esp32s3', application: { name: 'xiaozhi', version: '2.4.2' } });
    expect(otaHeaders(id, body.length)).toEqual({
      'Activation-Version': '1',
      'Device-Id': '02:01:00:00:00:2a',
      'Client-Id': id.uuid,
      'User-Agent': 'bread-compact-wifi/2.4.2',
      'Accept-Language': 'zh-CN',
      'Content-Type': 'application/json',
      'Content-Length': String(body.length),
    });
  });
});

// ---- what the device accepts on MQTT ----------------------------------------------------------

describe('hello reply (ParseServerHello)', () => {
  const good = {
    type: 'hello', transport: 'udp', session_id: 'abc',
    audio_params: { format: 'opus', sample_rate: 24000, channels: 1, frame_duration: 60 },
    udp: { server: '127.0.0.1', port: 8888, key: KEY.toString('hex'), nonce: Buffer.from(helloNonce(SSRC)).toString('hex') },
  };

  it('accepts a complete reply and decodes key and nonce', () => {
    const r = parseHelloReply(v24, good);
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.sessionId).toBe('abc');
    expect(r.sampleRate).toBe(24000);
    expect(r.udp.key.equals(KEY)).toBe(true);
    expect(readWireHeader(r.udp.nonce)).toMatchObject({ type: 1, ssrc: SSRC, sequence: 0 });
  });

  it('v2.4 ignores a reply without transport; older firmware crashes on it', () => {
    const { transport: _t, ...noTransport } = good;
    expect(parseHelloReply(v24, noTransport)).toMatchObject({ ok: false, crash: false });
    expect(parseHelloReply(legacy, noTransport)).toMatchObject({ ok: false, crash: true });
    expect(parseHelloReply(v24, { ...good, transport: 'websocket' })).toMatchObject({ ok: false, crash: false });
  });

  it('rejects bad key/nonce/port; session_id and audio_params are optional', () => {
    expect(parseHelloReply(v24, { ...good, udp: { ...good.udp, key: 'abcd' } }).ok).toBe(false);
    expect(parseHelloReply(v24, { ...good, udp: { ...good.udp, nonce: 'zz'.repeat(16) } }).ok).toBe(false);
    expect(parseHelloReply(v24, { ...good, udp: { ...good.udp, port: 0 } }).ok).toBe(false);
    expect(parseHelloReply(v24, { ...good, udp: { ...good.udp, port: 70000 } }).ok).toBe(false);
    expect(parseHelloReply(v24, { ...good, udp: { ...good.udp, port: '8888' } }).ok).toBe(false);
    const { session_id: _s, audio_params: _a, ...minimal } = good;
    const r = parseHelloReply(v24, minimal);
    expect(r).toMatchObject({ ok: true, sessionId: undefined, sampleRate: undefined });
  });
});

describe('OTA reply and MQTT settings', () => {
  it('stores string and number members, skips names over 15 characters, never erases', () => {
    const settings = new Map<string, string | number>([['websocket_url', 'kept'], ['password', 'old']]);
    const out = applyOtaReply(
      {
        mqtt: { endpoint: 'gw.example:1883', client_id: 'GID_test@@@02_01@@@u', username: 'dXNlcg==', password: 'p', publish_topic: 'device-server', keepalive: 60.9, a_very_long_member_name: 'x', flag: true },
        server_time: { timestamp: 1700000000000, timezone_offset: 480 },
      },
      settings,
    );
    expect(out).toMatchObject({ hasMqtt: true, activationRequired: false, serverTime: { timestamp: 1700000000000, timezoneOffset: 480 } });
    expect(out.skippedKeys.sort()).toEqual(['a_very_long_member_name', 'flag']);
    expect(settings.get('keepalive')).toBe(60);
    expect(settings.get('websocket_url')).toBe('kept');
    expect(settings.get('password')).toBe('p');
    expect(mqttSettingsFrom(settings)).toEqual({
      host: 'gw.example', port: 1883, tls: false, clientId: 'GID_test@@@02_01@@@u', username: 'dXNlcg==', password: 'p', publishTopic: 'device-server', keepalive: 60,
    });
  });

  it('endpoint without a port means 8883 with TLS; a non-numeric port aborts the firmware', () => {
    expect(mqttSettingsFrom(new Map([['endpoint', 'mqtt.example.com']]))).toMatchObject({ host: 'mqtt.example.com', port: 8883, tls: true, keepalive: 240 });
    expect(mqttSettingsFrom(new Map([['endpoint', 'h:8883']]))).toMatchObject({ port: 8883, tls: true });
    expect(() => mqttSettingsFrom(new Map([['endpoint', 'h:abc']]))).toThrow(/stoi/);
    expect(() => mqttSettingsFrom(new Map())).toThrow(/endpoint/);
    expect(stoi(' 1883xyz')).toBe(1883);
    expect(stoi('x')).toBeUndefined();
  });

  it('an activation code means the device would wait for activation', () => {
    expect(applyOtaReply({ activation: { code: '123456', message: 'go' } }, new Map()).activationRequired).toBe(true);
  });
});

// ---- downlink receive rules -------------------------------------------------------------------

describe('downlink datagram rules (v2.4)', () => {
  const opus = downlinkOpus[0]!;

  it('accepts sequence 1 and decrypts with the header as IV', () => {
    const rx = new DownlinkReceiver(v24, new AesCtr(KEY));
    const v = rx.receive(serverDatagram(1, opus));
    expect(v.ok).toBe(true);
    if (!v.ok) return;
    expect(Buffer.from(v.opus).equals(opus)).toBe(true);
    expect(v.header).toMatchObject({ type: 1, flags: 1, ssrc: SSRC, sequence: 1, payloadLength: opus.length });
    expect(rx.remoteSequence).toBe(1);
  });

  it('drops short, wrong type, length mismatch and old sequences; accepts gaps', () => {
    const rx = new DownlinkReceiver(v24, new AesCtr(KEY));
    expect(rx.receive(new Uint8Array(15))).toEqual({ ok: false, reason: 'short' });
    expect(rx.receive(serverDatagram(1, opus, { type: 0x02 }))).toMatchObject({ ok: false, reason: 'bad-type' });
    expect(rx.receive(serverDatagram(1, opus, { payloadLength: opus.length + 1 }))).toMatchObject({ ok: false, reason: 'length-mismatch' });
    expect(rx.receive(serverDatagram(1, opus, { payloadLength: opus.length - 1 }))).toMatchObject({ ok: false, reason: 'length-mismatch' });
    expect(rx.receive(serverDatagram(0, opus))).toMatchObject({ ok: false, reason: 'old-sequence' });
    expect(rx.receive(serverDatagram(1, opus)).ok).toBe(true);
    expect(rx.receive(serverDatagram(1, opus))).toMatchObject({ ok: false, reason: 'old-sequence' });
    const gap = rx.receive(serverDatagram(5, opus));
    expect(gap).toMatchObject({ ok: true, gap: 3 });
    expect(rx.receive(serverDatagram(4, opus))).toMatchObject({ ok: false, reason: 'old-sequence' });
    expect(rx.remoteSequence).toBe(5);
  });

  it('a rejected datagram does not move the sequence', () => {
    const rx = new DownlinkReceiver(v24, new AesCtr(KEY));
    rx.receive(serverDatagram(10, opus, { type: 0x05 }));
    rx.receive(serverDatagram(11, opus, { payloadLength: 1 }));
    expect(rx.remoteSequence).toBe(0);
    expect(rx.receive(serverDatagram(2, opus)).ok).toBe(true);
  });

  it('older firmware: sequence ≥ last (a repeat is played again), no length check', () => {
    const rx = new DownlinkReceiver(legacy, new AesCtr(KEY));
    expect(rx.receive(serverDatagram(3, opus)).ok).toBe(true);
    expect(rx.receive(serverDatagram(3, opus)).ok).toBe(true);
    expect(rx.receive(serverDatagram(2, opus))).toMatchObject({ ok: false, reason: 'old-sequence' });
    const v = rx.receive(serverDatagram(4, opus, { payloadLength: 7 }));
    expect(v.ok).toBe(true);
    // It decrypts everything after the header, whatever payload_len says.
    if (v.ok) expect(Buffer.from(v.opus).equals(opus)).toBe(true);
    expect(rx.receive(serverDatagram(5, opus, { type: 0 }))).toMatchObject({ ok: false, reason: 'bad-type' });
  });

  it('without a key nothing decrypts', () => {
    const rx = new DownlinkReceiver(v24, null);
    expect(rx.receive(serverDatagram(1, opus))).toMatchObject({ ok: false, reason: 'decrypt' });
  });
});

describe('sequence tracker (network view)', () => {
  it('counts holes, late arrivals that fill them, and duplicates', () => {
    const t = new SequenceTracker();
    for (const s of [1, 2, 3, 6, 7, 5, 7, 9, 4, 10]) t.observe(s);
    // 4 and 5 came late (reordered), 8 never came
    expect({ lost: t.lost, reordered: t.reordered, duplicates: t.duplicates, received: t.received }).toEqual({ lost: 1, reordered: 2, duplicates: 1, received: 9 });
  });

  it('a huge jump costs no memory beyond the window', () => {
    const t = new SequenceTracker();
    t.observe(1);
    t.observe(1_000_000);
    expect(t.lost).toBe(999_998);
    t.observe(999_999);
    expect(t.lost).toBe(999_997);
  });
});

// ---- playback queue ---------------------------------------------------------------------------

describe('playback model (40-packet decode queue)', () => {
  it('a burst fills speaker + 2 playback tasks + 40 queued; the rest is dropped', () => {
    const p = new PlaybackModel();
    let accepted = 0;
    for (let i = 0; i < 60; i++) if (p.push(0, i + 1, 60)) accepted++;
    expect(accepted).toBe(43);
    expect(p.decodeDepth).toBe(40);
    // one frame later a slot is free again
    expect(p.push(59, 100, 60)).toBe(false);
    expect(p.push(60, 100, 60)).toBe(true);
    expect(p.drainedAt(60)).toBe(44 * 60);
    expect(p.isIdle(44 * 60 - 1)).toBe(false);
    expect(p.isIdle(44 * 60)).toBe(true);
    expect(p.played).toBe(44);
  });

  it('paced at real time the queue stays shallow', () => {
    const p = new PlaybackModel();
    for (let i = 0; i < 100; i++) expect(p.push(i * 60, i + 1, 60)).toBe(true);
    expect(p.maxDepth).toBeLessThanOrEqual(1);
  });

  it('reset empties the queues; the frame on the speaker finishes', () => {
    const p = new PlaybackModel();
    for (let i = 0; i < 10; i++) p.push(0, i + 1, 60);
    p.reset(30);
    expect(p.decodeDepth).toBe(0);
    expect(p.drainedAt(30)).toBe(60);
  });

  it('server AEC: played timestamps come back for the uplink, at most 3 waiting', () => {
    const p = new PlaybackModel({ recordTimestamps: true });
    for (let i = 0; i < 6; i++) p.push(0, 1000 + i * 60, 60);
    expect(p.takeUplinkTimestamp(130)).toBe(1000); // frames 1000 and 1060 have played
    expect(p.takeUplinkTimestamp(130)).toBe(1060);
    expect(p.takeUplinkTimestamp(130)).toBe(0);
    // 5 played and none taken: more than 3 waiting → the timestamp is dropped, one consumed
    const q = new PlaybackModel({ recordTimestamps: true });
    for (let i = 0; i < 6; i++) q.push(0, 2000 + i, 60);
    expect(q.takeUplinkTimestamp(300)).toBe(0);
  });
});

// ---- the device's audio path and the measurements ----------------------------------------------

describe('audio sink: speaking gate, drops by reason, violations, latency', () => {
  it('plays only between tts start and tts stop; later audio is a violation', () => {
    const { sink, stats } = sinkFor();
    sink.beginTurn(1);
    sink.listenStop(1000);
    sink.datagram(serverDatagram(1, downlinkOpus[0]!), 1010); // before tts start (UDP overtook MQTT)
    sink.ttsStart(1020);
    // nine packets in a burst; a repeated tts start while speaking is a same-state transition and
    // does not reset the queue
    for (let i = 2; i <= 10; i++) sink.datagram(serverDatagram(i, downlinkOpus[i]!), 1030);
    expect(sink.playback.decodeDepth).toBe(6);
    sink.ttsStart(1040);
    expect(sink.playback.decodeDepth).toBe(6);
    sink.ttsStop(1700);
    sink.datagram(serverDatagram(11, downlinkOpus[11]!), 1710); // after tts stop
    sink.datagram(serverDatagram(12, downlinkOpus[12]!), 1720);
    expect(stats.drops['before-tts-start']).toBe(1);
    expect(stats.drops['after-tts-stop']).toBe(2);
    expect(stats.ttsStopViolations).toBe(2);
    expect(stats.downlinkQueued).toBe(9);
    expect(stats.latencyMs).toEqual([10]);
    expect(stats.ttsStartMs).toEqual([20]);
    expect(stats.turnsCompleted).toBe(1);
    // the next turn's listen stop closes the "after tts stop" window
    sink.beginTurn(2);
    sink.listenStop(5000);
    sink.datagram(serverDatagram(13, downlinkOpus[13]!), 5001);
    expect(stats.drops['before-tts-start']).toBe(2);
    expect(stats.ttsStopViolations).toBe(2);
  });

  it('damaged and stale datagrams are dropped by reason and are no violation', () => {
    const { sink, stats } = sinkFor();
    sink.beginTurn(1);
    sink.listenStop(0);
    sink.ttsStart(10);
    sink.datagram(serverDatagram(1, downlinkOpus[0]!), 20);
    sink.datagram(serverDatagram(1, downlinkOpus[0]!), 21);
    sink.datagram(serverDatagram(2, downlinkOpus[1]!, { type: 0x02 }), 22);
    sink.datagram(serverDatagram(3, downlinkOpus[2]!, { payloadLength: 3 }), 23);
    sink.datagram(new Uint8Array(8), 24);
    sink.datagram(serverDatagram(4, Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff])), 25); // not Opus
    expect(stats.drops).toMatchObject({ 'old-sequence': 1, 'bad-type': 1, 'length-mismatch': 1, short: 1, decode: 1 });
    expect(stats.ttsStopViolations).toBe(0);
    // network view (audio-type datagrams only): 1 twice, 3 and 4 arrived, 2 (type 0x02) did not
    sink.closeChannel(30);
    expect(stats.duplicates).toBe(1);
    expect(stats.lost).toBe(1);
  });

  it('a burst overflows the 40-packet queue; the overflow is counted', () => {
    const { sink, stats } = sinkFor(v24, { decode: false });
    sink.beginTurn(1);
    sink.listenStop(0);
    sink.ttsStart(0);
    for (let i = 1; i <= 60; i++) sink.datagram(serverDatagram(i, downlinkOpus[i % downlinkOpus.length]!), 5);
    expect(stats.drops['queue-overflow']).toBe(17);
    expect(stats.maxQueueDepth).toBe(40);
  });

  it('loss and reorder are measured on the network view', () => {
    const { sink, stats } = sinkFor(v24, { decode: false });
    sink.beginTurn(1);
    sink.ttsStart(0);
    for (const s of [1, 2, 4, 3, 6, 7]) sink.datagram(serverDatagram(s, downlinkOpus[s]!), s * 60);
    sink.close(1000);
    expect({ lost: stats.lost, reordered: stats.reordered }).toEqual({ lost: 1, reordered: 1 });
    // the firmware dropped the reordered 3 as old
    expect(stats.drops['old-sequence']).toBe(1);
  });

  it('barge-in: audio after abort is not played and its tail is measured', () => {
    const { sink, stats } = sinkFor(v24, { decode: false });
    sink.beginTurn(1);
    sink.listenStop(0);
    sink.ttsStart(10);
    sink.datagram(serverDatagram(1, downlinkOpus[1]!), 20);
    sink.abort(100);
    sink.beginTurn(2);
    sink.datagram(serverDatagram(2, downlinkOpus[2]!), 130); // in flight: fine
    sink.datagram(serverDatagram(3, downlinkOpus[3]!), 400); // later than one frame + tolerance
    sink.listenStop(3000);
    expect(stats.drops['after-abort']).toBe(2);
    expect(stats.ttsStopViolations).toBe(0);
    expect(stats.lateAfterAbort).toBe(1);
    expect(stats.abortStopMs).toEqual([300]);
    expect(stats.bargeIns).toBe(1);
  });

  it('a new hello re-keys and restarts the sequence at 0', () => {
    const { sink, stats } = sinkFor(v24, { decode: false });
    sink.beginTurn(1);
    sink.ttsStart(0);
    sink.datagram(serverDatagram(50, downlinkOpus[0]!), 1);
    const key2 = Buffer.alloc(16, 7);
    sink.rekey(new AesCtr(key2), 24000, 60);
    sink.datagram(serverDatagram(1, downlinkOpus[1]!, { key: key2 }), 2);
    expect(stats.downlinkQueued).toBe(2);
    expect(stats.drops['old-sequence']).toBe(0);
  });

  it('echo fidelity: the reply envelope is compared with what the device sent', () => {
    const clip = buildUplinkClip({ seconds: 4 });
    const { sink, stats } = sinkFor();
    sink.beginTurn(1);
    for (let f = 0; f < 40; f++) sink.noteSent(clip.speechEnvelope, f);
    sink.listenStop(0);
    sink.ttsStart(5);
    // the "gateway" plays the same speech back at 24 kHz
    const pcm = synthesizeSpeech(4, 24000, 1);
    const enc = new OpusEncoder({ sampleRate: 24000, channels: 1, application: 'voip' });
    for (let f = 0; f < 40; f++) sink.datagram(serverDatagram(f + 1, enc.encode(pcm.subarray(f * 1440, (f + 1) * 1440))), 10 + f * FRAME_MS);
    sink.ttsStop(3000);
    sink.finalizeTurn();
    expect(stats.fidelity).toHaveLength(1);
    expect(stats.fidelity[0]!).toBeGreaterThan(0.9);
    expect(stats.echoRatio).toEqual([1]);
  });
});

describe('helpers', () => {
  it('envelope correlation finds a shifted copy', () => {
    let x = 12345;
    const a = Array.from({ length: 100 }, () => ((x = (x * 1103515245 + 12345) >>> 0) % 1000));
    const b = [0, 0, 0, 0, ...a];
    expect(envelopeCorrelation(a, b)).toBeCloseTo(1, 5);
    expect(envelopeCorrelation(a, a.map((v) => 1000 - v), 0, 0)).toBeCloseTo(-1, 5);
    expect(envelopeCorrelation(a, a.map((v) => 1000 - v))).toBeLessThan(0.5);
  });

  it('scheduler: events in time order, cancellation, one clock for all devices', () => {
    const clock = new ManualClock(0);
    const s = new Scheduler({ clock });
    const seen: string[] = [];
    s.at(30, () => seen.push('c'));
    s.at(10, () => {
      seen.push('a');
      s.after(5, () => seen.push('a+5'));
    });
    const h = s.at(20, () => seen.push('cancelled'));
    s.at(10, () => seen.push('b'));
    s.cancel(h);
    s.advanceTo(25);
    expect(seen).toEqual(['a', 'b', 'a+5']);
    expect(clock.now()).toBe(25);
    s.advanceTo(100);
    expect(seen).toEqual(['a', 'b', 'a+5', 'c']);
  });

  it('percentiles and distributions', () => {
    expect(percentile([1, 2, 3, 4], 50)).toBe(2.5);
    expect(distribution([5, 1, 3])).toMatchObject({ count: 3, p50: 3, max: 5, min: 1, mean: 3 });
    expect(distribution([])).toMatchObject({ count: 0, p50: null });
  });

  it('Prometheus text: prom-client default metric names', () => {
    const text = [
      '# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.',
      '# TYPE process_cpu_seconds_total counter',
      'process_cpu_seconds_total 12.5',
      'process_cpu_user_seconds_total 10',
      'process_resident_memory_bytes 104857600',
      'nodejs_eventloop_lag_p99_seconds 0.012',
      'nodejs_heap_size_used_bytes{space="x"} 5',
    ].join('\n');
    expect(parseProm(text, 1)).toEqual({ at: 1, cpuSeconds: 12.5, rssBytes: 104857600, heapUsedBytes: 5, eventLoopLagP99Seconds: 0.012 });
    expect(promValue(text, 'process_cpu')).toBeNull();
    // --workers N: one sample per worker; CPU and memory are summed, the lag is the worst worker's.
    const workers = [
      'process_cpu_seconds_total{worker="0",service="x"} 2',
      'process_cpu_seconds_total{worker="1",service="x"} 3',
      'process_resident_memory_bytes{worker="0"} 10',
      'process_resident_memory_bytes{worker="1"} 20',
      'nodejs_eventloop_lag_p99_seconds{worker="0"} 0.01',
      'nodejs_eventloop_lag_p99_seconds{worker="1"} 0.03',
    ].join('\n');
    expect(parseProm(workers, 2)).toEqual({ at: 2, cpuSeconds: 5, rssBytes: 30, heapUsedBytes: null, eventLoopLagP99Seconds: 0.03 });
  });

  it('simulate arguments', () => {
    expect(parseSimulateArgs(['--gateway', 'http://h:1/xiaozhi/ota/', '--devices', '200', '--duration=60', '--json', '--mode', 'manual', '--firmware', 'legacy'])).toMatchObject({
      gateway: 'http://h:1/xiaozhi/ota/', devices: 200, durationS: 60, json: true, mode: 'manual', firmware: 'legacy',
    });
    expect(parseSimulateArgs(['--help'])).toBe('help');
    expect(() => parseSimulateArgs(['--devices', '2'])).toThrow(/--gateway is required/);
    expect(() => parseSimulateArgs(['--gateway', 'x'])).toThrow(/not a URL/);
    expect(() => parseSimulateArgs(['--gateway', 'http://h/', '--devices', '0'])).toThrow(/--devices/);
    expect(() => parseSimulateArgs(['--gateway', 'http://h/', '--firmware', 'v9'])).toThrow(/--firmware/);
    expect(() => parseSimulateArgs(['--gateway', 'http://h/', '--bogus'])).toThrow(/unknown option/);
  });

  it('the uplink clip: 60 ms Opus at 16 kHz, DTX silence, pauses to end turns on', () => {
    const clip = buildUplinkClip({ seconds: 6 });
    expect(clip.speech.length).toBe(100);
    expect(clip.meanPacketBytes).toBeGreaterThan(20);
    expect(clip.silence.some((p) => p.length <= 2)).toBe(true); // DTX frames
    expect(clip.pauseAfter.reduce((a, b) => a + b, 0)).toBeGreaterThan(3);
  });
});
