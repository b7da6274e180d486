// runTightLoop (the bench-only addon, bench/native.ts), the pipeline benchmark's reference (b): it must do the work it claims (every
// frame pair in, a PCM frame and a datagram out per stream), and its real-time pace must really
// space the frame pairs (the paced figure is only meaningful if the thread idles between them).
// No assertion is on speed.
import { describe, expect, it } from 'vitest';
import { OpusEncoder } from '../src/index.js';
import { benchNative } from '../bench/native.js';
import { native } from '../src/native/addon.js';
import { expectCoded } from './helpers/errors.js';
import { speech } from './helpers/fixtures.js';
import { deviceDatagram, helloNonce } from './helpers/wire.js';

const key = new Uint8Array(16).fill(7);
const nonce = helloNonce(0x1234);
const FRAMES = 6;

function inputs(): { datagrams: Uint8Array[]; pcm: Float32Array } {
  const sp16 = speech(16000);
  const enc = new OpusEncoder({ sampleRate: 16000, channels: 1, application: 'voip' });
  const datagrams: Uint8Array[] = [];
  for (let f = 0; f < FRAMES; f++) datagrams.push(deviceDatagram(key, nonce, f + 1, new Uint8Array(enc.encode(sp16.subarray(f * 960, (f + 1) * 960)))));
  enc.close();
  const sp48 = speech(48000);
  const pcm = new Float32Array(FRAMES * 2880);
  for (let i = 0; i < pcm.length; i++) pcm[i] = sp48[i]! / 32768;
  return { datagrams, pcm };
}

describe('runTightLoop', () => {
  const { datagrams, pcm } = inputs();

  it('lives in the bench addon only: the product addon does not export it', () => {
    expect(typeof benchNative().runTightLoop).toBe('function');
    expect('runTightLoop' in native).toBe(false);
  });

  it('turns every frame pair of every stream into one PCM frame and one datagram', () => {
    const r = benchNative().runTightLoop(key, nonce, datagrams, pcm, { streams: 3 });
    expect(r.uplinkFramesOut).toBe(3 * FRAMES);
    expect(r.downlinkDatagramsOut).toBe(3 * FRAMES);
    expect(r.framePairNs.length).toBe(3 * FRAMES);
  });

  it('paced: frame pair k starts no earlier than k × paceUs, with the same output', () => {
    const paceUs = 3000;
    const r = benchNative().runTightLoop(key, nonce, datagrams, pcm, { streams: 3, paceUs });
    expect(r.uplinkFramesOut).toBe(3 * FRAMES);
    expect(r.downlinkDatagramsOut).toBe(3 * FRAMES);
    // The last of 18 pairs starts at >= 17 × 3 ms; back to back they take a few ms in all.
    expect(r.totalNs).toBeGreaterThanOrEqual((3 * FRAMES - 1) * paceUs * 1000);
  });

  it('paced in bursts: each burst of paceBurst pairs starts when its first pair is due', () => {
    const r = benchNative().runTightLoop(key, nonce, datagrams, pcm, { streams: 3, paceUs: 3000, paceBurst: 3 });
    expect(r.uplinkFramesOut).toBe(3 * FRAMES);
    expect(r.downlinkDatagramsOut).toBe(3 * FRAMES);
    // 6 bursts of 3 pairs, 9 ms apart: the last starts at >= 45 ms.
    expect(r.totalNs).toBeGreaterThanOrEqual(5 * 3 * 3000 * 1000);
  });

  it('rejects a pace that is not a whole number of µs in [0, 1 s]', () => {
    expectCoded(() => benchNative().runTightLoop(key, nonce, datagrams, pcm, { paceUs: -1 }), RangeError, 'ERR_OUT_OF_RANGE', 'options.paceUs');
    expectCoded(() => benchNative().runTightLoop(key, nonce, datagrams, pcm, { paceUs: 1.5 }), RangeError, 'ERR_OUT_OF_RANGE', 'options.paceUs');
    expectCoded(() => benchNative().runTightLoop(key, nonce, datagrams, pcm, { paceUs: 2_000_000 }), RangeError, 'ERR_OUT_OF_RANGE', 'options.paceUs');
    expectCoded(() => benchNative().runTightLoop(key, nonce, datagrams, pcm, { paceUs: 1000, paceBurst: 0 }), RangeError, 'ERR_OUT_OF_RANGE', 'options.paceBurst');
  });
});
