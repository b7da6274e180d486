// The LiveKit bridge's pieces that need no server: frames rtc-node reads correctly, the downlink
// turn gate, the MCP relay, transcripts, names and tokens, configuration.
import { AudioFrame, AudioResampler, RpcError } from '@livekit/rtc-node';
import { TokenVerifier } from 'livekit-server-sdk';
import { pino } from 'pino';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../src/config.js';
import { DownlinkGate } from '../src/livekit/downlink-gate.js';
import { deviceToken, participantIdentity, roomName } from '../src/livekit/identity.js';
import { LivekitAgentBackend } from '../src/livekit/livekit-backend.js';
import { newLivekitStats } from '../src/livekit/livekit-session.js';
import { McpRelay } from '../src/livekit/mcp-relay.js';
import { registerLivekitMetrics } from '../src/metrics/livekit.js';
import client from 'prom-client';
import { SentenceSplitter, transcriptRole } from '../src/livekit/transcripts.js';
import { ownedAudioFrame, UplinkCapture } from '../src/livekit/uplink-capture.js';

function tone(freq: number, n: number, rate = 48000, amp = 8000): Int16Array {
  const out = new Int16Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.round(amp * Math.sin((2 * Math.PI * freq * i) / rate));
  return out;
}

function corr(a: Int16Array, b: Int16Array): number {
  const n = Math.min(a.length, b.length);
  let ab = 0, aa = 0, bb = 0;
  for (let i = 0; i < n; i++) {
    ab += a[i]! * b[i]!;
    aa += a[i]! * a[i]!;
    bb += b[i]! * b[i]!;
  }
  return aa && bb ? ab / Math.sqrt(aa * bb) : 0;
}

describe('frames rtc-node can read (AudioFrame ignores byteOffset)', () => {
  // A pipeline batch: two 10 ms frames back to back; the session hands out views into it.
  const first = tone(440, 480);
  const second = tone(1000, 480);
  const batch = new Int16Array(960);
  batch.set(first, 0);
  batch.set(second, 480);
  const view = batch.subarray(480, 960);

  const throughFfi = (frame: AudioFrame) => {
    // AudioResampler hands the frame to the native side exactly like AudioSource.captureFrame
    // (frame.protoInfo().dataPtr); 48 → 16 kHz, then compared with the expected signal.
    const r = new AudioResampler(48000, 16000, 1);
    const out = [...r.push(frame), ...r.flush()];
    const pcm = new Int16Array(out.reduce((n, f) => n + f.data.length, 0));
    let o = 0;
    for (const f of out) {
      pcm.set(f.data, o);
      o += f.data.length;
    }
    return pcm;
  };

  it('a view with a nonzero byteOffset is read from the start of its buffer (the bug this works around)', () => {
    expect(view.byteOffset).toBe(960);
    const wrong = throughFfi(new AudioFrame(view, 48000, 1, 480));
    const expected = throughFfi(new AudioFrame(second.slice(), 48000, 1, 480));
    const actuallyFirst = throughFfi(new AudioFrame(first.slice(), 48000, 1, 480));
    expect(corr(wrong, actuallyFirst)).toBeGreaterThan(0.99);
    expect(Math.abs(corr(wrong, expected))).toBeLessThan(0.2);
  });

  it('ownedAudioFrame copies the view into a buffer of its own: the native side reads the right samples', () => {
    const f = ownedAudioFrame(view, 48000);
    expect(f.data.byteOffset).toBe(0);
    expect(f.data.buffer.byteLength).toBe(480 * 2);
    expect(f.samplesPerChannel).toBe(480);
    expect(Array.from(f.data)).toEqual(Array.from(second));
    const got = throughFfi(f);
    expect(corr(got, throughFfi(new AudioFrame(second.slice(), 48000, 1, 480)))).toBeGreaterThan(0.999);
    // The batch may be reused right away: the frame does not change.
    batch.fill(0);
    expect(Array.from(f.data)).toEqual(Array.from(second));
  });
});

describe('UplinkCapture', () => {
  it('captures one frame at a time, in order, copying each', async () => {
    const seen: number[] = [];
    let inFlight = 0;
    let maxInFlight = 0;
    const cap = new UplinkCapture({
      sampleRate: 48000,
      maxBufferedMs: 1000,
      capture: async (f) => {
        inFlight++;
        maxInFlight = Math.max(maxInFlight, inFlight);
        await new Promise((r) => setTimeout(r, 2));
        seen.push(f.data[0]!);
        expect(f.data.byteOffset).toBe(0);
        inFlight--;
      },
    });
    const batch = new Int16Array(2880 * 5);
    for (let i = 0; i < 5; i++) {
      batch.fill(i + 1, i * 2880, (i + 1) * 2880);
      cap.push(batch.subarray(i * 2880, (i + 1) * 2880));
    }
    batch.fill(0);
    await new Promise((r) => setTimeout(r, 50));
    expect(seen).toEqual([1, 2, 3, 4, 5]);
    expect(maxInFlight).toBe(1);
  });

  it('sheds a standing backlog in pauses first, speech at most one frame a second, and leaves a short or draining one alone', async () => {
    let now = 0;
    let sourceMs = 0;
    const shedKinds: boolean[] = [];
    const captured: number[] = [];
    const cap = new UplinkCapture({
      sampleRate: 48000,
      maxBufferedMs: 1000,
      now: () => now,
      // The source's depth is what the test sets; captures return at once (nothing waits here).
      sourceQueuedMs: () => sourceMs,
      standingTargetMs: 80,
      onShed: (n, quiet) => {
        for (let i = 0; i < n; i++) shedKinds.push(quiet);
      },
      capture: async (f) => {
        captured.push(f.data[1]!);
      },
    });
    // Frame k: speech (a loud square wave) or a pause (near silence), tagged k in sample 1.
    const frame = (k: number, quiet: boolean): Int16Array => {
      const f = new Int16Array(2880);
      for (let i = 0; i < f.length; i++) f[i] = quiet ? (i & 1 ? 20 : -20) : (i & 8 ? 8000 : -8000);
      f[1] = k;
      return f;
    };
    const push = async (k: number, quiet = false): Promise<void> => {
      cap.push(frame(k, quiet));
      await new Promise((r) => setImmediate(r));
      now += 60;
    };
    // Continuous speech, 200 ms standing in the source for 3 s: after the first second two frames
    // are owed (120 ms over the target); no pause comes, so one speech frame goes after another
    // second, and the rest are captured in order.
    sourceMs = 200;
    for (let k = 1; k <= 50; k++) await push(k);
    expect(shedKinds).toEqual([false]);
    expect(captured).toHaveLength(49);
    expect(captured).toEqual([...captured].sort((x, y) => x - y));
    // A pause comes: what is owed is shed from it at once (the one left over, then the two the next
    // window finds), quiet frames only; the rest of the pause and the speech after it are captured.
    for (let k = 51; k <= 60; k++) await push(k, k <= 54);
    expect(shedKinds).toEqual([false, true, true, true]);
    expect(cap.shedQuiet).toBe(3);
    for (let k = 54; k <= 60; k++) expect(captured).toContain(k);
    // A backlog that dips below the target at least once per second is not standing: nothing shed,
    // quiet or not.
    const before = cap.shed;
    for (let k = 0; k < 50; k++) {
      sourceMs = k % 10 === 0 ? 40 : 200;
      await push(100 + k, k % 3 === 0);
    }
    expect(cap.shed).toBe(before);
    // Without the source's depth (no sourceQueuedMs) nothing is ever shed.
    const plain = new UplinkCapture({ sampleRate: 48000, maxBufferedMs: 1000, now: () => now, capture: async () => {} });
    for (let k = 0; k < 50; k++, now += 60) plain.push(new Int16Array(2880));
    expect(plain.shed).toBe(0);
  });

  it('holds audio while paused (reconnecting), bounded, dropping the oldest', async () => {
    const seen: number[] = [];
    let dropped = 0;
    const cap = new UplinkCapture({
      sampleRate: 48000,
      maxBufferedMs: 60,
      pausedMaxBufferedMs: 180,  // three 60 ms frames while paused
      capture: async (f) => {
        seen.push(f.data[0]!);
      },
      onDrop: (n) => (dropped += n),
    });
    cap.pause();
    for (let i = 1; i <= 10; i++) cap.push(new Int16Array(2880).fill(i));
    expect(cap.bufferedMs).toBe(180);
    expect(dropped).toBe(7);
    cap.resume();
    await new Promise((r) => setTimeout(r, 10));
    expect(seen).toEqual([8, 9, 10]);
    cap.close();
    cap.push(new Int16Array(2880).fill(11));
    await new Promise((r) => setTimeout(r, 10));
    expect(seen).toEqual([8, 9, 10]);
  });
});

describe('DownlinkGate: the agent audio that is a turn for the device', () => {
  const silence = () => new Int16Array(480);
  const voice = (v = 0) => new Int16Array(480).fill(1000 + v);  // loud; out() records v

  function gate(opts: { maxTailMs?: number } = {}) {
    const out: Array<number | 'start' | 'end'> = [];
    const dropped = { frames: 0 };
    const timers: Array<{ fn: () => void; at: number }> = [];
    const g = new DownlinkGate({
      sampleRate: 48000,
      tailSilenceMs: 100,
      maxTailMs: opts.maxTailMs ?? 700,
      prerollMs: 100,
      statelessEndSilenceMs: 300,
      audio: (pcm) => out.push(pcm[0]! - 1000),
      start: () => out.push('start'),
      end: () => out.push('end'),
      discarded: () => dropped.frames++,
      timers: {
        setTimeout: ((fn: () => void) => (timers.push({ fn, at: 0 }), timers.length) as unknown as ReturnType<typeof setTimeout>) as unknown as typeof setTimeout,
        clearTimeout: ((id: number) => { if (timers[id - 1]) timers[id - 1]!.fn = () => {}; }) as unknown as typeof clearTimeout,
      },
    });
    return { g, out, dropped, fire: () => timers.forEach((t) => t.fn()) };
  }

  it('forwards nothing while the agent listens, however loud (someone else, echo)', () => {
    const { g, out } = gate();
    g.setAgentState('listening');
    for (let i = 0; i < 50; i++) g.frame(voice());
    expect(out).toEqual([]);
  });

  it('speaking opens a turn (keeping audio that overtook the attribute), leading silence trimmed', () => {
    const { g, out } = gate();
    g.setAgentState('listening');
    for (let i = 0; i < 20; i++) g.frame(silence());
    g.frame(voice(11));
    g.frame(voice(12));
    g.setAgentState('speaking');
    g.frame(voice(13));
    expect(out).toEqual(['start', 11, 12, 13]);
  });

  it('audio that overtook the speaking attribute is announced late by all but its newest frame, before it is forwarded', () => {
    const out: Array<number | string> = [];
    const g = new DownlinkGate({
      sampleRate: 48000,
      prerollMs: 300,
      audio: (pcm) => out.push(pcm[0]! - 1000),
      start: () => out.push('start'),
      late: (ms) => out.push(`late ${ms}`),
      end: () => out.push('end'),
    });
    g.setAgentState('listening');
    g.frame(silence());
    for (let v = 1; v <= 4; v++) g.frame(voice(v));  // 4 × 10 ms of voice before the attribute
    g.setAgentState('speaking');
    g.frame(voice(5));
    expect(out).toEqual(['start', 'late 30', 1, 2, 3, 4, 5]);
    g.close();
    // The attribute first (no preroll): nothing is late.
    const out2: string[] = [];
    const g2 = new DownlinkGate({ sampleRate: 48000, audio: () => {}, late: (ms) => out2.push(`late ${ms}`), end: () => {} });
    g2.setAgentState('speaking');
    g2.frame(voice(1));
    expect(out2).toEqual([]);
  });

  it('after speaking → listening, the tail is forwarded until it goes quiet, then end', () => {
    const { g, out } = gate();
    g.setAgentState('speaking');
    g.frame(voice(1));
    g.setAgentState('listening');
    g.frame(voice(2));
    g.frame(voice(3));
    for (let i = 0; i < 9; i++) g.frame(silence());
    expect(out.filter((x) => x === 'end')).toHaveLength(0);
    g.frame(silence());  // 100 ms of silence
    expect(out.at(-1)).toBe('end');
    expect(out.filter((x) => typeof x === 'number' && x > 0)).toEqual([1, 2, 3]);
    g.frame(voice(4));
    expect(out.at(-1)).toBe('end');
  });

  it('the tail ends after maxTailMs even if audio stops arriving', () => {
    const { g, out, fire } = gate();
    g.setAgentState('speaking');
    g.frame(voice(1));
    g.setAgentState('listening');
    expect(out).toEqual(['start', 1]);
    fire();
    expect(out).toEqual(['start', 1, 'end']);
  });

  it('speaking again during the tail continues the same turn', () => {
    const { g, out } = gate();
    g.setAgentState('speaking');
    g.frame(voice(1));
    g.setAgentState('thinking');
    g.frame(voice(2));
    g.setAgentState('speaking');
    for (let i = 0; i < 20; i++) g.frame(silence());
    g.frame(voice(3));
    expect(out.filter((x) => x === 'start')).toHaveLength(1);
    expect(out.filter((x) => x === 'end')).toHaveLength(0);
  });

  it('interrupt drops the rest of the turn (no end) until the agent leaves speaking', () => {
    const { g, out, dropped } = gate();
    g.setAgentState('speaking');
    g.frame(voice(1));
    g.interrupt();
    g.frame(voice(2));
    g.frame(voice(3));
    g.frame(silence());
    expect(out).toEqual(['start', 1]);
    expect(dropped.frames).toBe(2);  // counted as downlink drops (silence is not)
    g.setAgentState('listening');
    g.frame(voice(4));  // the interrupted turn's last audio, older than the preroll window
    for (let i = 0; i < 15; i++) g.frame(silence());
    g.setAgentState('speaking');
    g.frame(voice(5));
    expect(out).toEqual(['start', 1, 'start', 5]);
  });

  it('a turn with no audio ends without end()', () => {
    const { g, out } = gate();
    g.setAgentState('speaking');
    g.frame(silence());
    g.setAgentState('listening');
    expect(out).toEqual(['start']);
    expect(g.inTurn).toBe(false);
  });

  it('agents without lk.agent.state: voice opens a turn, silence closes it', () => {
    const { g, out } = gate();
    g.frame(silence());
    g.frame(voice(1));
    g.frame(voice(2));
    for (let i = 0; i < 30; i++) g.frame(silence());
    expect(out[0]).toBe('start');
    expect(out.at(-1)).toBe('end');
    expect(out.filter((x) => typeof x === 'number' && x > 0)).toEqual([1, 2]);
  });
});

describe('LiveKit metrics (xiaozhi_livekit_*)', () => {
  it('exports the backend stats: open objects, retained audio sources, join histogram, events, endings, drops', async () => {
    const st = { ...newLivekitStats(), ffiListeners: 3 };
    st.rooms = 2;
    st.connects = 3;
    st.ffiErrors = 1;
    st.uplinkDropped = 7;
    st.uplinkShed = 5;
    st.uplinkShedSpeech = 2;
    st.downlinkDropped = 4;
    st.endings = { device: 5, server_ROOM_DELETED: 2 };
    st.connectSeconds = { buckets: [0, 1, 2, 0, 0, 0, 0, 0, 0, 0], sum: 0.5, count: 3 };
    const registry = new client.Registry();
    registerLivekitMetrics(registry, () => st, () => 6);
    const text = await registry.metrics();
    expect(text).toContain('xiaozhi_livekit_retained_audio_sources 6');
    expect(text).toContain('xiaozhi_livekit_open{object="rooms"} 2');
    expect(text).toContain('xiaozhi_livekit_open{object="ffi_listeners"} 3');
    expect(text).toContain('xiaozhi_livekit_join_seconds_bucket{le="0.1"} 1');
    expect(text).toContain('xiaozhi_livekit_join_seconds_bucket{le="0.25"} 3');
    expect(text).toContain('xiaozhi_livekit_join_seconds_bucket{le="+Inf"} 3');
    expect(text).toContain('xiaozhi_livekit_join_seconds_count 3');
    expect(text).toContain('xiaozhi_livekit_events_total{event="ffi_errors"} 1');
    expect(text).toContain('xiaozhi_livekit_sessions_ended_total{reason="server_ROOM_DELETED"} 2');
    expect(text).toContain('xiaozhi_livekit_dropped_frames_total{direction="uplink"} 7');
    expect(text).toContain('xiaozhi_livekit_dropped_frames_total{direction="uplink_shed"} 5');
    expect(text).toContain('xiaozhi_livekit_dropped_frames_total{direction="uplink_shed_speech"} 2');
    expect(text).toContain('xiaozhi_livekit_dropped_frames_total{direction="downlink"} 4');
  });
});

describe('McpRelay', () => {
  function relay(timeoutMs = 1000) {
    const sent: Array<Record<string, unknown>> = [];
    const r = new McpRelay({ toDevice: (p) => sent.push(p), timeoutMs });
    return { r, sent };
  }

  it('relays a call with a gateway id and restores the caller id in the reply', async () => {
    const { r, sent } = relay();
    const p = r.handle({ payload: JSON.stringify({ jsonrpc: '2.0', id: 'abc', method: 'tools/list' }), responseTimeout: 10000, callerIdentity: 'agent' });
    expect(sent).toHaveLength(1);
    expect(sent[0]!.method).toBe('tools/list');
    expect(typeof sent[0]!.id).toBe('number');
    expect(r.fromDevice({ jsonrpc: '2.0', id: sent[0]!.id, result: { tools: [] } })).toBe(true);
    expect(JSON.parse(await p)).toEqual({ jsonrpc: '2.0', id: 'abc', result: { tools: [] } });
    expect(r.pending).toBe(0);
  });

  it('concurrent calls with the same caller id do not collide', async () => {
    const { r, sent } = relay();
    const a = r.handle({ payload: '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a"}}', responseTimeout: 10000, callerIdentity: 'x' });
    const b = r.handle({ payload: '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"b"}}', responseTimeout: 10000, callerIdentity: 'y' });
    r.fromDevice({ id: sent[1]!.id, result: 'B' });
    r.fromDevice({ id: sent[0]!.id, result: 'A' });
    expect(JSON.parse(await a).result).toBe('A');
    expect(JSON.parse(await b).result).toBe('B');
  });

  it('notifications are forwarded and answered at once', async () => {
    const { r, sent } = relay();
    expect(await r.handle({ payload: '{"jsonrpc":"2.0","method":"notifications/initialized"}', responseTimeout: 10000, callerIdentity: 'a' })).toBe('');
    expect(sent).toEqual([{ jsonrpc: '2.0', method: 'notifications/initialized' }]);
  });

  it('maps errors: bad payload → 1500, no device reply → 1502 within the caller deadline, closed → 1503', async () => {
    // The relay's timers are injected: the deadline it sets is read, not measured on a busy machine.
    const delays: number[] = [];
    const timers = { setTimeout: ((fn: () => void, ms: number) => { delays.push(ms); return setTimeout(fn, ms); }) as typeof setTimeout, clearTimeout };
    const r = new McpRelay({ toDevice: () => {}, timeoutMs: 5000, timers });
    await expect(r.handle({ payload: 'not json', responseTimeout: 10000, callerIdentity: 'a' })).rejects.toMatchObject({ code: 1500 });
    await expect(r.handle({ payload: '[1]', responseTimeout: 10000, callerIdentity: 'a' })).rejects.toMatchObject({ code: 1500 });
    expect(delays).toEqual([]);
    // The caller allows 800 ms: the relay gives up before that (margin for the way back).
    const e = await r.handle({ payload: '{"id":7,"method":"tools/call"}', responseTimeout: 800, callerIdentity: 'a' }).catch((x: RpcError) => x);
    expect(e).toBeInstanceOf(RpcError);
    expect((e as RpcError).code).toBe(RpcError.ErrorCode.RESPONSE_TIMEOUT);
    expect(delays).toHaveLength(1);
    expect(delays[0]).toBeGreaterThan(0);
    expect(delays[0]).toBeLessThan(800);
    expect(r.pending).toBe(0);
    const pending = r.handle({ payload: '{"id":8,"method":"tools/call"}', responseTimeout: 10000, callerIdentity: 'a' });
    r.close();
    await expect(pending).rejects.toMatchObject({ code: RpcError.ErrorCode.RECIPIENT_DISCONNECTED });
  });

  it('ignores device messages that answer nothing', () => {
    const { r } = relay();
    expect(r.fromDevice({ id: 99, result: 1 })).toBe(false);
    expect(r.fromDevice({ method: 'notifications/x' })).toBe(false);
  });
});

describe('transcripts', () => {
  it('cuts agent text into sentences as deltas arrive', () => {
    const s = new SentenceSplitter();
    expect(s.push('Hello! I am')).toEqual(['Hello!']);
    expect(s.push(' your assistant. The value is 3.')).toEqual(['I am your assistant.']);
    expect(s.push('5 today')).toEqual([]);
    expect(s.push('。你好！好的')).toEqual(['The value is 3.5 today。', '你好！']);
    expect(s.flush()).toEqual(['好的']);
    expect(s.flush()).toEqual([]);
  });

  it('attributes transcripts: the device microphone track or identity → user, else agent', () => {
    const t = { deviceIdentity: 'xiaozhi-aabb', micTrackSid: () => 'TR_mic' };
    expect(transcriptRole({ 'lk.transcribed_track_id': 'TR_mic' }, 'agent-1', t)).toBe('user');
    expect(transcriptRole({}, 'xiaozhi-aabb', t)).toBe('user');
    expect(transcriptRole({ 'lk.transcribed_track_id': 'TR_agent' }, 'agent-1', t)).toBe('agent');
  });
});

describe('names and tokens', () => {
  const info = {
    deviceId: 'aa:bb:cc:dd:ee:ff', clientId: 'GID_test@@@aa_bb_cc_dd_ee_ff@@@uuid', sessionId: 'sess-1',
    firmwareVersion: '2.4.0', features: { mcp: true, aec: true }, inputSampleRate: 48000, logger: pino({ level: 'silent' }),
  };

  it('expands the room template and rejects unknown placeholders', () => {
    expect(roomName('xiaozhi-{device}-{session}', info)).toBe('xiaozhi-aabbccddeeff-sess-1');
    expect(roomName('{deviceId}/{clientId}', info)).toBe('aa:bb:cc:dd:ee:ff/GID_test@@@aa_bb_cc_dd_ee_ff@@@uuid');
    expect(() => roomName('room-{mac}', info)).toThrow(/unknown placeholder \{mac\}/);
    expect(participantIdentity(info)).toBe('xiaozhi-aabbccddeeff');
  });

  it('the token carries identity, name, device attributes, grants, and the agent dispatch (only set fields)', async () => {
    const jwt = await deviceToken({ apiKey: 'key', apiSecret: 'a-secret-of-at-least-32-characters!!', room: 'r1', info, mcpMethod: 'xiaozhi.mcp', dispatchAgentName: 'my-agent' });
    const claims = await new TokenVerifier('key', 'a-secret-of-at-least-32-characters!!').verify(jwt);
    expect(claims.sub).toBe('xiaozhi-aabbccddeeff');
    expect(claims.name).toBe('ESP32 aa:bb:cc:dd:ee:ff');
    expect(claims.video).toMatchObject({ roomJoin: true, room: 'r1', canPublish: true, canSubscribe: true, canPublishData: true });
    expect(claims.attributes).toEqual({
      'xiaozhi.device_id': 'aa:bb:cc:dd:ee:ff', 'xiaozhi.client_id': info.clientId, 'xiaozhi.session_id': 'sess-1',
      'xiaozhi.features': '{"mcp":true,"aec":true}', 'xiaozhi.firmware_version': '2.4.0', 'xiaozhi.mcp_method': 'xiaozhi.mcp',
    });
    // Exactly what was set: older servers reject unknown (defaulted) fields such as restartPolicy.
    const payload = JSON.parse(Buffer.from(jwt.split('.')[1]!, 'base64url').toString()) as { roomConfig: { agents: Array<Record<string, unknown>> } };
    expect(payload.roomConfig).toEqual({ agents: [{ agentName: 'my-agent', metadata: expect.stringContaining('"device_id":"aa:bb:cc:dd:ee:ff"') }] });
    const noDispatch = JSON.parse(Buffer.from((await deviceToken({ apiKey: 'k', apiSecret: 's', room: 'r', info, mcpMethod: null })).split('.')[1]!, 'base64url').toString()) as Record<string, unknown>;
    expect(noDispatch.roomConfig).toBeUndefined();
  });
});

describe('configuration', () => {
  it('agent livekit needs LIVEKIT_URL / LIVEKIT_API_KEY / LIVEKIT_API_SECRET, read like every LiveKit tool', () => {
    expect(() => loadConfig({ env: {}, overrides: { agent: 'livekit', publicHost: '127.0.0.1' } })).toThrow(ConfigError);
    expect(() => loadConfig({ env: { LIVEKIT_URL: 'wss://x.livekit.cloud' }, overrides: { agent: 'livekit', publicHost: '127.0.0.1' } })).toThrow(/LIVEKIT_API_KEY, LIVEKIT_API_SECRET/);
    const c = loadConfig({
      env: { LIVEKIT_URL: 'wss://x.livekit.cloud', LIVEKIT_API_KEY: 'k', LIVEKIT_API_SECRET: 's', XIAOZHI_LIVEKIT_AGENT_NAME: 'my-agent' },
      flags: { '--agent': 'livekit', '--livekit-room': 'dev-{device}' },
      overrides: { publicHost: '127.0.0.1' },
    });
    expect(c).toMatchObject({ agent: 'livekit', livekitUrl: 'wss://x.livekit.cloud', livekitApiKey: 'k', livekitAgentName: 'my-agent', livekitRoomTemplate: 'dev-{device}', livekitDispatch: 'token' });
    const b = LivekitAgentBackend.fromConfig(c);
    expect(b.name).toBe('livekit');
    expect(b.options).toMatchObject({ url: 'wss://x.livekit.cloud', agentName: 'my-agent', agentJoinTimeoutMs: 20000, mcpMethod: 'xiaozhi.mcp' });
    expect(() => loadConfig({ env: {}, overrides: { agent: 'livekit', livekitUrl: 'x.livekit.cloud', livekitApiKey: 'k', livekitApiSecret: 's' } })).toThrow(/livekitUrl must start with/);
  });

  it('echo stays the default and needs no LiveKit settings', () => {
    expect(loadConfig({ env: {}, overrides: { publicHost: '127.0.0.1' } }).agent).toBe('echo');
  });
});
