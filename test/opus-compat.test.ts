// Our libopus 1.5.2 against libopus 1.3.1 (the copy inside @discordjs/opus, a dev dependency), both
// ways round: devices in the field run older libopus builds, and the gateway must stay
// interoperable with them. What the versions promise: the bitstream is fixed by RFC 6716, so any
// encoder's packets decode in any decoder; decoder *output* is not bit-exact across versions (the
// RFC's conformance test, opus_compare, allows small differences, and 1.4/1.5 changed decoder
// internals), so the checks here are "the same audio to a high SNR", not "the same bytes".
// Packet loss concealment is left out: it is not normative and 1.5 changed it.
import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import { OpusDecoder, OpusEncoder, opusVersion, type OpusEncoderOptions, type OpusSampleRate } from '../src/index.js';
import { speech } from './helpers/fixtures.js';
import { bestLagCorrelation, snrDb } from './helpers/signal.js';

const require = createRequire(import.meta.url);
const discord = require('@discordjs/opus') as typeof import('@discordjs/opus');

// libopus CTL request numbers (opus_defines.h), for @discordjs/opus's applyEncoderCTL.
const OPUS_SET_BITRATE_REQUEST = 4002;
const OPUS_SET_VBR_REQUEST = 4006;
const OPUS_SET_COMPLEXITY_REQUEST = 4010;

interface Case {
  name: string;
  rate: OpusSampleRate & (16000 | 24000 | 48000);
  frameMs: number;
  /** Our encoder's options (the 1.3.1 encoder gets the same bitrate/VBR/complexity by CTL). */
  options: Omit<OpusEncoderOptions, 'sampleRate' | 'channels'>;
}

// SILK (the uplink as devices send it), SILK at the downlink rate, hybrid, and CELT.
const CASES: Case[] = [
  { name: 'SILK 16 kHz 60 ms (uplink)', rate: 16000, frameMs: 60, options: { application: 'voip' } },
  { name: 'SILK 24 kHz 60 ms CBR 24 kb/s (downlink)', rate: 24000, frameMs: 60, options: { application: 'voip', bitrate: 24000, vbr: false } },
  { name: 'hybrid 48 kHz 20 ms 32 kb/s', rate: 48000, frameMs: 20, options: { application: 'voip', bitrate: 32000 } },
  { name: 'CELT 48 kHz 20 ms 64 kb/s', rate: 48000, frameMs: 20, options: { application: 'audio', bitrate: 64000 } },
];

function frames(pcm: Int16Array, n: number): Int16Array[] {
  const out: Int16Array[] = [];
  for (let i = 0; i + n <= pcm.length; i += n) out.push(pcm.subarray(i, i + n));
  return out;
}

function toBuffer(pcm: Int16Array): Buffer {
  return Buffer.from(pcm.buffer, pcm.byteOffset, pcm.byteLength);
}

function fromBuffer(b: Buffer): Int16Array {
  const out = new Int16Array(b.length >> 1);
  new Uint8Array(out.buffer).set(b.subarray(0, out.length * 2));
  return out;
}

function concat(parts: Int16Array[]): Int16Array {
  const out = new Int16Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

function encodeOurs(c: Case, input: Int16Array[]): Buffer[] {
  const enc = new OpusEncoder({ sampleRate: c.rate, channels: 1, ...c.options });
  const packets = input.map((f) => enc.encode(f));
  enc.close();
  return packets;
}

function encode131(c: Case, input: Int16Array[]): Buffer[] {
  const enc = new discord.OpusEncoder(c.rate, 1);  // OPUS_APPLICATION_AUDIO, fixed by the binding
  if (c.options.bitrate !== undefined) enc.applyEncoderCTL(OPUS_SET_BITRATE_REQUEST, c.options.bitrate);
  if (c.options.vbr === false) enc.applyEncoderCTL(OPUS_SET_VBR_REQUEST, 0);
  enc.applyEncoderCTL(OPUS_SET_COMPLEXITY_REQUEST, 10);
  return input.map((f) => enc.encode(toBuffer(f)));
}

function decodeOurs(c: Case, packets: Buffer[]): Int16Array {
  const dec = new OpusDecoder({ sampleRate: c.rate, channels: 1 });
  const out = concat(packets.map((p) => dec.decode(p)));
  dec.close();
  return out;
}

function decode131(c: Case, packets: Buffer[]): Int16Array {
  const dec = new discord.OpusEncoder(c.rate, 1);
  return concat(packets.map((p) => fromBuffer(dec.decode(p))));
}

/** The two decoders' outputs of the same packets, and each against the input. */
function compare(c: Case, input: Int16Array, packets: Buffer[]): { decodersSnr: number; ours: number; theirs: number } {
  const ours = decodeOurs(c, packets);
  const theirs = decode131(c, packets);
  expect(ours.length).toBe(theirs.length);
  return {
    decodersSnr: snrDb(theirs, ours, 0, 0, ours.length),
    ours: bestLagCorrelation(input, ours).correlation,
    theirs: bestLagCorrelation(input, theirs).correlation,
  };
}

describe('libopus 1.5.2 (ours) interoperates with libopus 1.3.1 (@discordjs/opus)', () => {
  it('the two libraries are what this test claims', () => {
    expect(opusVersion()).toBe('libopus 1.5.2');
    // @discordjs/opus 0.10.0 bundles libopus 1.3.1 (its deps/opus/package_version).
    expect((require('@discordjs/opus/package.json') as { version: string }).version).toBe('0.10.0');
  });

  // Measured on x86-64 (8 s of the espeak-ng fixture): the two decoders agree to 111-212 dB on
  // every case, both ways (212 dB is snrDb's ceiling: identical samples), and correlate with the
  // input alike (0.938-0.996). The 60 dB bound leaves room for float rounding of other SIMD paths
  // (aarch64, other CPUs); a real decoding difference (synthesis, postfilter, a mode switch handled
  // otherwise) lands far below it.
  describe.each(CASES)('$name', (c) => {
    const pcm = speech(c.rate).subarray(0, c.rate * 8);
    const input = frames(pcm, (c.rate * c.frameMs) / 1000);
    const used = pcm.subarray(0, input.length * input[0]!.length);

    it('1.3.1 packets: our decoder and 1.3.1 decoder give the same audio (high SNR)', () => {
      const r = compare(c, used, encode131(c, input));
      console.log(`[compat] ${c.name}: 1.3.1 packets, decoders agree to ${r.decodersSnr.toFixed(1)} dB; correlation with input ours ${r.ours.toFixed(3)}, 1.3.1 ${r.theirs.toFixed(3)}`);
      expect(r.decodersSnr).toBeGreaterThanOrEqual(60);
      expect(r.ours).toBeGreaterThanOrEqual(0.88);
      expect(Math.abs(r.ours - r.theirs)).toBeLessThan(0.01);
    });

    it('our 1.5.2 packets decode in 1.3.1 to the same audio as in 1.5.2 (high SNR)', () => {
      const r = compare(c, used, encodeOurs(c, input));
      console.log(`[compat] ${c.name}: 1.5.2 packets, decoders agree to ${r.decodersSnr.toFixed(1)} dB; correlation with input ours ${r.ours.toFixed(3)}, 1.3.1 ${r.theirs.toFixed(3)}`);
      expect(r.decodersSnr).toBeGreaterThanOrEqual(60);
      expect(r.theirs).toBeGreaterThanOrEqual(0.88);
      expect(Math.abs(r.ours - r.theirs)).toBeLessThan(0.01);
    });
  });
});
