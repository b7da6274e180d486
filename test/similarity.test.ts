// The measure the LiveKit tiers use to say "the other side heard this" (test/helpers/livekit-harness.ts).
// It must find speech that a jitter buffer moved in time, and must not find speech that is not there.
import { describe, expect, it } from 'vitest';
import { OpusDecoder } from '../src/index.js';
import { deviceSpeech, similarity } from './helpers/livekit-harness.js';
import { concat } from './helpers/signal.js';

const RATE = 16000;
const ms = (n: number) => Math.round((RATE * n) / 1000);

// What the e2e uplink test sends, and that speech after the device's Opus (what a receiver plays
// before its own resampling).
const { pcm: reference, packets } = deviceSpeech(3, 0.3);
const decoder = new OpusDecoder({ sampleRate: RATE, channels: 1 });
const coded = concat(packets.map((p) => Int16Array.from(decoder.decode(p))));
const silence = (n: number) => new Int16Array(ms(n));

describe('similarity (received audio against the reference)', () => {
  it('finds the reference behind a delay, with its lag', () => {
    const s = similarity(concat([silence(200), reference, silence(600)]), reference, RATE);
    expect(s.waveform).toBeGreaterThan(0.99);
    expect(s.lagMs).toBeCloseTo(200, 0);
  });

  // The e2e uplink failure seen under load ("waveform 0.000 … lag 3033 ms"): the agent's jitter
  // buffer cut 60 ms at 1.5 s to catch up, and the capture ends 400 ms after the speech. The true
  // lag then scored a lower envelope NCC than the reference's first 0.6 s against the capture's
  // last 0.6 s (speech fading to silence in both); zero padding makes that overlap pay for the
  // 2.4 s of reference it does not contain.
  it('follows a receiver that cut 60 ms out of the middle (NetEq catching up after a delay spike)', () => {
    const cut = ms(1500);
    const s = similarity(concat([silence(250), coded.subarray(0, cut), coded.subarray(cut + ms(60)), silence(400)]), reference, RATE);
    expect(s.waveform).toBeGreaterThan(0.9);
    expect(s.lagMs).toBeGreaterThan(240);
    expect(s.lagMs).toBeLessThan(270);
  });

  // Stretched by 20 ms at the start and cut by 100 ms later: the window tracker (±15 ms per
  // window) lost the audio after the cut and scored 0.56 before it learned to search again.
  it('finds the audio again after a cut larger than the per-window search', () => {
    const a = ms(60), cut = ms(1500);
    const rx = concat([silence(250), coded.subarray(0, a), coded.subarray(a - ms(20), a), coded.subarray(a, cut), coded.subarray(cut + ms(100)), silence(500)]);
    expect(similarity(rx, reference, RATE).waveform).toBeGreaterThan(0.9);
  });

  it('follows a receiver that inserted 80 ms (NetEq expanding through a late packet)', () => {
    const at = ms(1000);
    const s = similarity(concat([silence(200), coded.subarray(0, at), silence(80), coded.subarray(at), silence(600)]), reference, RATE);
    expect(s.waveform).toBeGreaterThan(0.9);
  });

  it('scores other speech, silence and a received signal that stops early as not heard', () => {
    const other = deviceSpeech(3, 6).pcm;
    expect(similarity(concat([silence(200), other, silence(600)]), reference, RATE).waveform).toBeLessThan(0.35);
    expect(similarity(silence(3800), reference, RATE).waveform).toBe(0);
    // Only the first 0.6 s arrived: most voiced windows find nothing.
    expect(similarity(concat([silence(200), reference.subarray(0, ms(600)), silence(3000)]), reference, RATE).waveform).toBeLessThan(0.35);
    // Only the last 0.6 s arrived, at the very end: the zero padding keeps it from looking like a lag.
    const tail = similarity(concat([silence(3000), reference.subarray(reference.length - ms(600))]), reference, RATE);
    expect(tail.waveform).toBeLessThan(0.35);
  });
});
