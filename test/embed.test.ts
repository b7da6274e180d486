// The embedding API as an application uses it: createGateway with the custom agent of
// examples/tone-agent.mjs (imported by the package's own name, as users write it), events, and a
// device that hears the agent's tone.
import { afterAll, describe, expect, it } from 'vitest';
import { createGateway, OpusDecoder, OpusEncoder, type EmbeddedGateway, type SessionSummary } from '../src/index.js';
import { ToneAgent } from '../examples/tone-agent.mjs';
import { speech } from './helpers/fixtures.js';
import { RawDevice } from './helpers/raw-device.js';

let gw: EmbeddedGateway | undefined;
const devices: RawDevice[] = [];

afterAll(async () => {
  await Promise.all(devices.map((d) => d.close()));
  await gw?.stop('test end');
});

/** Strength of `hz` in `pcm` relative to its total energy (Goertzel), 0..1. */
function toneShare(pcm: Int16Array, rate: number, hz: number): number {
  const w = (2 * Math.PI * hz) / rate;
  let s1 = 0, s2 = 0, energy = 0;
  for (let i = 0; i < pcm.length; i++) {
    const s0 = pcm[i]! + 2 * Math.cos(w) * s1 - s2;
    s2 = s1;
    s1 = s0;
    energy += pcm[i]! * pcm[i]!;
  }
  const power = s1 * s1 + s2 * s2 - 2 * Math.cos(w) * s1 * s2;
  return energy > 0 ? (2 * power) / (pcm.length * energy) : 0;
}

describe('createGateway with a custom agent', () => {
  it('events say who connected and which sessions opened and closed; the device hears the tone', async () => {
    const events: string[] = [];
    const opened: SessionSummary[] = [];
    gw = createGateway(
      { mqttPort: 0, udpPort: 0, httpPort: 0, publicHost: '127.0.0.1', signatureKey: 'embed-test-signature-key-0123', logLevel: 'silent' },
      { agent: new ToneAgent(440) },
    );
    gw.on('device-connected', (d) => events.push(`connected ${d.deviceId}`));
    gw.on('session-opened', (s) => { opened.push(s); events.push(`opened ${s.deviceId}`); });
    gw.on('session-closed', (s, reason) => events.push(`closed ${s.deviceId} (${reason})`));
    gw.on('device-disconnected', (d) => events.push(`disconnected ${d.deviceId}`));
    expect(() => gw!.gateway).toThrow(/not started/);
    const ports = await gw.start();
    expect(ports.http).toBeGreaterThan(0);

    const d = await RawDevice.connect(ports.http, '02:e0:00:00:00:01');
    devices.push(d);
    const hello = await d.sayHello();
    expect(opened).toEqual([{ deviceId: '02:e0:00:00:00:01', clientId: d.creds.client_id, sessionId: hello.session_id }]);

    // Speak a few real frames (they also prove the device's UDP address), then release the button.
    const enc = new OpusEncoder({ sampleRate: 16000, channels: 1, application: 'voip' });
    const pcm = speech(16000);
    d.publish({ session_id: d.session(), type: 'listen', state: 'start', mode: 'manual' });
    for (let i = 0; i < 10; i++) {
      d.sendUdp(d.datagram(enc.encode(pcm.slice(i * 960, (i + 1) * 960))));
      await new Promise((r) => setTimeout(r, 60));
    }
    enc.close();
    const before = d.datagrams.length;
    d.publish({ session_id: d.session(), type: 'listen', state: 'stop' });
    await d.waitFor((m) => m.type === 'tts' && m.state === 'stop', 10_000);
    const answer = d.datagrams.slice(before);
    expect(answer.length).toBeGreaterThanOrEqual(15);  // one second in 60 ms frames (the last one padded)

    // Decode as the device does (24 kHz) and find the 440 Hz tone.
    const dec = new OpusDecoder({ sampleRate: 24000, channels: 1 });
    const decoded = answer.map((x) => dec.decode(d.decrypt(x.data).opus));
    dec.close();
    const all = new Int16Array(decoded.reduce((n, f) => n + f.length, 0));
    let o = 0;
    for (const f of decoded) { all.set(f, o); o += f.length; }
    const middle = all.subarray(4800, 4800 + 12000);  // skip the codec's start-up
    expect(toneShare(middle, 24000, 440)).toBeGreaterThan(0.8);
    expect(toneShare(middle, 24000, 1000)).toBeLessThan(0.05);
    expect(d.messages.some((m) => m.type === 'tts' && m.state === 'sentence_start' && m.text === 'beep')).toBe(true);

    await d.close();
    devices.length = 0;
    await new Promise((r) => setTimeout(r, 300));
    expect(events).toEqual([
      'connected 02:e0:00:00:00:01',
      'opened 02:e0:00:00:00:01',
      expect.stringMatching(/^closed 02:e0:00:00:00:01 \(mqtt disconnected/),
      'disconnected 02:e0:00:00:00:01',
    ]);
    expect(gw.gateway.stats).toEqual({ connections: 0, sessions: 0 });
  });

  it('a listener that throws is counted, not fatal', async () => {
    gw!.on('device-connected', () => { throw new Error('application bug'); });
    const d = await RawDevice.connect(gw!.gateway.ports.http, '02:e0:00:00:00:02');
    devices.push(d);
    await d.sayHello();
    expect(gw!.gateway.counters().embedder_listener_errors).toBe(1);
    expect(gw!.gateway.stats.sessions).toBe(1);
  });

  it('invalid config names the key', () => {
    expect(() => createGateway({ mqttPort: -1 })).toThrow(/mqttPort/);
  });

  it('refuses what only the CLI supervisor does (workers, recycling) instead of ignoring it', () => {
    expect(() => createGateway({ workers: 2, publicHost: '127.0.0.1' })).toThrow(/workers: 2 needs the supervisor of `xiaozhi-gateway start --workers N`/);
    expect(() => createGateway({ recycleAfterSessions: 100, publicHost: '127.0.0.1' })).toThrow(/recycleAfterSessions needs the supervisor/);
  });
});
