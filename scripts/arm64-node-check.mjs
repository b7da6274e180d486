#!/usr/bin/env node
// The JS side of the arm64 tier: run by Debian's arm64 nodejs under qemu-user (test/arm64.test.ts),
// it loads the prebuilt linux-arm64 addon through the package's own loader (dist/src/native: 
// node-gyp-build, then the AES self-test against node:crypto) and checks each native component
// against a reference computed here in JS. vitest itself cannot run there (its bundler ships
// x86-64-only native binaries in node_modules, and Debian 12's Node 18 is below what vitest 4 needs),
// so this is plain node:assert, and the result is one JSON line on stdout for the test to assert.
//
// Needs XIAOZHI_GATEWAY_PREBUILD pointing at a directory with prebuilds/linux-arm64/ and no build/
// (the repository's build/ holds this machine's x86-64 addon, which node-gyp-build would pick first).
// Also prints the NEON conversion kernel's speed relative to the scalar one (indicative only: qemu
// translates both, so the ratio says little about real arm64 hardware).
import assert from 'node:assert/strict';
import { createCipheriv, randomBytes } from 'node:crypto';
import { arch } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const n = await import(pathToFileURL(join(root, 'dist', 'src', 'native', 'index.js')).href);
const checks = [];

function check(name, fn) {
  fn();
  checks.push(name);
}

// Same rule as native/dsp/convert.h, in float64 with an explicit tie-to-even (Math.round is ties-up).
function refOne(x) {
  if (Number.isNaN(x)) return 0;
  const d = x * 32768;
  if (d >= 32767) return 32767;
  if (d <= -32768) return -32768;
  const t = Math.trunc(d);
  const frac = d - t;
  if (frac > 0.5 || (frac === 0.5 && t % 2 !== 0)) return t + 1;
  if (frac < -0.5 || (frac === -0.5 && t % 2 !== 0)) return t - 1;
  return t;
}

check('runs on arm64', () => assert.equal(arch(), 'arm64'));

const build = n.nativeBuildInfo();
const opusInfo = n.opusBuildInfo();
check('conversion uses NEON', () => {
  assert.deepEqual(n.supportedSimdLevels(), ['scalar', 'neon']);
  assert.equal(n.simdLevel(), 'neon');
});
check('libopus built with NEON kernels, active', () => {
  assert.equal(n.opusVersion(), 'libopus 1.5.2');
  assert.deepEqual(opusInfo.simd.compiled, ['neon']);
  assert.deepEqual(opusInfo.simd.active, ['neon']);
});

check('f32ToS16 NEON == scalar == reference (edges, ties, random, every length 0..64)', () => {
  const edges = [0, -0, 1, -1, 0.5, -0.5, 1.5, -1.5, 32767.5 / 32768, -32768.5 / 32768, 1e-10, -1e-10,
    0.5 / 32768, 1.5 / 32768, 2.5 / 32768, -2.5 / 32768, Infinity, -Infinity, NaN, 3.4e38, -3.4e38, 65536, -65536];
  const random = new Float32Array(100_003);
  const bytes = randomBytes(random.length * 4);
  for (let i = 0; i < random.length; ++i) random[i] = (bytes.readInt32LE(i * 4) / 2 ** 31) * 1.3;
  for (const input of [Float32Array.from(edges), random]) {
    const expected = Int16Array.from(input, refOne);
    assert.deepEqual(n.f32ToS16(input, undefined, 'neon'), expected);
    assert.deepEqual(n.f32ToS16(input, undefined, 'scalar'), expected);
    assert.deepEqual(n.f32ToS16(input), expected);
  }
  for (let len = 0; len <= 64; ++len) {
    const input = random.subarray(len, 2 * len);
    assert.deepEqual(n.f32ToS16(input, undefined, 'neon'), Int16Array.from(input, refOne), `length ${len}`);
  }
  const all = new Int16Array(65536).map((_, i) => i - 32768);
  assert.deepEqual(n.f32ToS16(n.s16ToF32(all), undefined, 'neon'), all);
});

check('AES-128-CTR == node:crypto', () => {
  const key = randomBytes(16);
  const iv = randomBytes(16);
  const data = randomBytes(4099);
  const aes = new n.AesCtr(key);
  assert.deepEqual(Buffer.from(aes.crypt(iv, data)), createCipheriv('aes-128-ctr', key, iv).update(data));
  aes.close();
});

check('packet encode/parse round trip', () => {
  const payload = randomBytes(321);
  const p = n.packet.parse(n.packet.encode({ ssrc: 0xdeadbeef, timestamp: 123456, sequence: 42 }, payload));
  assert.equal(p.ssrc, 0xdeadbeef);
  assert.equal(p.sequence, 42);
  assert.deepEqual(Buffer.from(p.payload), payload);
});

function tone(rate, hz, samples, amplitude = 12000) {
  return Int16Array.from({ length: samples }, (_, i) => Math.round(amplitude * Math.sin((2 * Math.PI * hz * i) / rate)));
}
// Correlation with the reference after the best lag (codec and filter delays), in [-1, 1].
function bestCorrelation(ref, got, maxLag) {
  let best = -1;
  for (let lag = 0; lag <= maxLag; ++lag) {
    let xy = 0, xx = 0, yy = 0;
    for (let i = 0; i + lag < got.length && i < ref.length; ++i) {
      xy += ref[i] * got[i + lag];
      xx += ref[i] * ref[i];
      yy += got[i + lag] * got[i + lag];
    }
    best = Math.max(best, xy / Math.sqrt(xx * yy || 1));
  }
  return best;
}

let opusCorrelation = 0;
check('Opus 16 kHz encode/decode round trip keeps a 440 Hz tone', () => {
  const enc = new n.OpusEncoder({ sampleRate: 16000, channels: 1, application: 'voip', bitrate: 32000 });
  const dec = new n.OpusDecoder({ sampleRate: 16000, channels: 1 });
  const input = tone(16000, 440, 16000);
  const out = [];
  for (let i = 0; i + 960 <= input.length; i += 960) out.push(...dec.decode(enc.encode(input.subarray(i, i + 960))));
  enc.close();
  dec.close();
  const decoded = Int16Array.from(out);
  assert.equal(decoded.length, input.length - (input.length % 960));
  opusCorrelation = bestCorrelation(input.subarray(1000, 9000), decoded.subarray(1000), 400);
  assert.ok(opusCorrelation > 0.95, `correlation ${opusCorrelation}`);
});

let resamplerCorrelation = 0;
check('Resampler 48 kHz -> 16 kHz keeps a 1 kHz tone', () => {
  const r = new n.Resampler({ inputRate: 48000, outputRate: 16000 });
  const out = Int16Array.from([...r.process(tone(48000, 1000, 48000)), ...r.flush()]);
  assert.ok(Math.abs(out.length - 16000) <= 64, `length ${out.length}`);
  resamplerCorrelation = bestCorrelation(tone(16000, 1000, 8000).subarray(100), out.subarray(100), 200);
  assert.ok(resamplerCorrelation > 0.99, `correlation ${resamplerCorrelation}`);
});

// NEON vs scalar conversion under qemu: median of rounds, each a few calls (indicative only).
function medianMs(level, input, output, calls, rounds = 7) {
  const times = [];
  for (let r = 0; r < rounds; ++r) {
    const t0 = process.hrtime.bigint();
    for (let c = 0; c < calls; ++c) n.f32ToS16(input, output, level);
    times.push(Number(process.hrtime.bigint() - t0) / 1e6 / calls);
  }
  return times.sort((a, b) => a - b)[rounds >> 1];
}
const speed = {};
for (const [label, length, calls] of [['frame960', 960, 2000], ['block1M', 1 << 20, 3]]) {
  const input = new Float32Array(length).map((_, i) => Math.sin(i / 7) * 0.9);
  const output = new Int16Array(length);
  medianMs('neon', input, output, calls, 1); // warm-up: qemu translates the code on first use
  medianMs('scalar', input, output, calls, 1);
  const scalar = medianMs('scalar', input, output, calls);
  const neon = medianMs('neon', input, output, calls);
  speed[label] = { samples: length, scalarMs: +scalar.toFixed(4), neonMs: +neon.toFixed(4), speedup: +(scalar / neon).toFixed(2) };
}

process.stdout.write(
  `${JSON.stringify({ ok: true, node: process.version, arch: arch(), openssl: build.openssl, build, opusSimd: opusInfo.simd, checks, opusCorrelation, resamplerCorrelation, speed })}\n`,
);
