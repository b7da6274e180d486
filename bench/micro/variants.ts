// The code each stage's child process runs: our implementation, the baselines measured next to it,
// and "probes" that split our time into parts (Node-API call, TypeScript checks, kernel), so a
// missed target says where the time goes.
//
// Inputs cycle through consecutive 60 ms frames of speech. Stateful stages (resampler, Opus) give
// every variant its own instance and its own cursor, so each sees a continuous stream.
import { createCipheriv, randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import type { OpusEncoder as DiscordOpusEncoder } from '@discordjs/opus';
import { AesCtr, f32ToS16, OpusDecoder, OpusEncoder, packet, Resampler, supportedSimdLevels } from '../../src/index.js';
import { native } from '../../src/native/addon.js';
import { DEFAULT_DOWNLINK_ENCODER } from '../../src/native/pipeline.js';
import type { Variant } from './harness.js';
import { frames, speech, toFloat32 } from './fixtures.js';
import type { MissingBaseline, StageId } from './protocol.js';
import { V } from './stages.js';

export interface StageSetup {
  variants: Variant[];
  /** Baselines whose package is not installed (the stage still measures ours and says so). */
  missingBaselines: MissingBaseline[];
  facts: Record<string, string | number | boolean>;
  warnings: string[];
}

const require = createRequire(import.meta.url);

/** The 1.3.1 baseline, a devDependency: an installed package (production dependencies only) has
 *  no @discordjs/opus, and the Opus stages then measure ours alone and say how to compare. */
export const DISCORD_MISSING: MissingBaseline = {
  name: V.discord,
  package: '@discordjs/opus',
  install: 'npm i @discordjs/opus',
};

function loadDiscordOpus(): typeof import('@discordjs/opus') | undefined {
  try {
    require.resolve('@discordjs/opus');
  } catch {
    return undefined;
  }
  // Installed but not loadable (e.g. its own binary missing) is a real failure: let it throw.
  return require('@discordjs/opus') as typeof import('@discordjs/opus');
}

/** Cycles through items; each variant gets its own cursor. */
function cycle<T>(items: readonly T[]): () => T {
  let i = 0;
  const n = items.length;
  if (n === 0) throw new Error('benchmark input is empty');
  return () => {
    const v = items[i]!;
    i = i + 1 === n ? 0 : i + 1;
    return v;
  };
}

function speechWarnings(...sources: { synthetic: boolean; source: string }[]): string[] {
  return sources.filter((s) => s.synthetic).map((s) => `input is a ${s.source}`);
}

export async function setupStage(stage: StageId): Promise<StageSetup> {
  switch (stage) {
    case 'convert': return convertStage();
    case 'resample-16k-48k': return resampleStage(16000, 48000, 960);
    case 'resample-48k-24k': return resampleStage(48000, 24000, 2880);
    case 'opus-encode':
    case 'opus-encode-c10':
    case 'opus-encode-voip':
    case 'opus-encode-gateway': return opusEncodeStage(ENCODE_SETTINGS[stage]);
    case 'opus-decode': return opusDecodeStage();
    case 'aes-ctr': return aesStage();
    case 'packet': return packetStage();
  }
}

// ---------------------------------------------------------------------------------------------
// Float32 -> Int16

/** The predecessor's conversion: clamp, scale by 32768/32767, store (Int16Array truncates). */
export function jsF32ToS16(input: Float32Array, out: Int16Array): Int16Array {
  for (let i = 0; i < input.length; i++) {
    const s = Math.max(-1, Math.min(1, input[i]!));
    out[i] = s < 0 ? s * 0x8000 : s * 0x7fff;
  }
  return out;
}

function convertStage(): StageSetup {
  const sp = speech(48000);
  // 32 distinct frames (~370 KB of input): realistic cache behaviour without streaming from DRAM.
  const inputs = frames(sp.samples, 2880).slice(0, 32).map(toFloat32);
  const out = new Int16Array(2880);
  const empty = new Float32Array(0);
  const emptyOut = new Int16Array(0);
  const nextA = cycle(inputs), nextB = cycle(inputs), nextC = cycle(inputs), nextD = cycle(inputs);
  const variants: Variant[] = [
    { name: V.ours, role: 'ours', frame: () => f32ToS16(nextA(), out) },
    { name: V.jsLoopAlloc, role: 'baseline', frame: () => { const i = nextB(); return jsF32ToS16(i, new Int16Array(i.length)); } },
    { name: V.jsLoopPrealloc, role: 'baseline', frame: () => jsF32ToS16(nextC(), out) },
    { name: 'probe: addon call, no TS checks', role: 'probe', frame: () => native.f32ToS16(nextD(), out) },
    { name: 'probe: addon call, 0 samples', role: 'probe', frame: () => native.f32ToS16(empty, emptyOut) },
  ];
  const levels = ['scalar', 'sse2', 'avx2', 'neon'] as const;
  const ids: Record<string, number> = { scalar: 0, sse2: 1, avx2: 2, neon: 3 };
  const supported = new Set<string>(supportedSimdLevels());
  for (const level of levels) {
    if (!supported.has(level)) continue;
    const next = cycle(inputs);
    const id = ids[level]!;
    variants.push({ name: `probe: addon call, forced ${level}`, role: 'probe', frame: () => native.f32ToS16(next(), out, id) });
  }
  // Same results as a sanity check: ours rounds to nearest, the JS loop truncates, so allow 1 LSB.
  const a = f32ToS16(inputs[0]!);
  const b = jsF32ToS16(inputs[0]!, new Int16Array(2880));
  let maxDiff = 0;
  for (let i = 0; i < a.length; i++) maxDiff = Math.max(maxDiff, Math.abs(a[i]! - b[i]!));
  return {
    variants,
    facts: { input: sp.source, frames: inputs.length, 'max |ours - JS| (LSB)': maxDiff, 'SIMD levels': [...supported].join(',') },
    missingBaselines: [],
    warnings: speechWarnings(sp),
  };
}

// ---------------------------------------------------------------------------------------------
// Resampler

async function resampleStage(inputRate: 16000 | 48000, outputRate: 48000 | 24000, inSamples: number): Promise<StageSetup> {
  const { AudioFrame, AudioResampler, AudioResamplerQuality } = await import('@livekit/rtc-node');
  const sp = speech(inputRate);
  const inputs = frames(sp.samples, inSamples);
  const ours = new Resampler({ inputRate, outputRate });
  const quick = new AudioResampler(inputRate, outputRate, 1, AudioResamplerQuality.QUICK);
  const medium = new AudioResampler(inputRate, outputRate, 1, AudioResamplerQuality.MEDIUM);
  const counters = { ours: 0, oursFrames: 0, quick: 0, quickFrames: 0, medium: 0, mediumFrames: 0 };
  const nextO = cycle(inputs), nextQ = cycle(inputs), nextM = cycle(inputs);
  const perFrame = (samples: number, framesDone: number): number => (framesDone === 0 ? 0 : Math.round((samples / framesDone) * 10) / 10);
  const variants: Variant[] = [
    {
      name: V.ours,
      role: 'ours',
      frame: () => {
        const out = ours.process(nextO());
        counters.ours += out.length;
        counters.oursFrames++;
        return out;
      },
      notes: () => ({ 'out samples/frame': perFrame(counters.ours, counters.oursFrames) }),
    },
    {
      name: V.lkQuick,
      role: 'baseline',
      frame: () => {
        const f = nextQ();
        const out = quick.push(new AudioFrame(f, inputRate, 1, f.length));
        for (const o of out) counters.quick += o.samplesPerChannel;
        counters.quickFrames++;
        return out;
      },
      notes: () => ({ 'out samples/frame': perFrame(counters.quick, counters.quickFrames) }),
    },
    {
      name: V.lkMedium,
      role: 'baseline',
      frame: () => {
        const f = nextM();
        const out = medium.push(new AudioFrame(f, inputRate, 1, f.length));
        for (const o of out) counters.medium += o.samplesPerChannel;
        counters.mediumFrames++;
        return out;
      },
      notes: () => ({ 'out samples/frame': perFrame(counters.medium, counters.mediumFrames) }),
    },
  ];
  return {
    variants,
    facts: {
      input: sp.source,
      frames: inputs.length,
      'ours delay (out samples)': ours.delay,
      'expected out samples/frame': (inSamples * outputRate) / inputRate,
    },
    missingBaselines: [],
    warnings: speechWarnings(sp),
  };
}

// ---------------------------------------------------------------------------------------------
// Opus

// libopus CTL request numbers and values (opus_defines.h), for @discordjs/opus's applyEncoderCTL.
const OPUS_SET_APPLICATION_REQUEST = 4000;
const OPUS_SET_BITRATE_REQUEST = 4002;
const OPUS_SET_COMPLEXITY_REQUEST = 4010;
const OPUS_SET_SIGNAL_REQUEST = 4024;
const OPUS_APPLICATION_VOIP = 2048;
const OPUS_SIGNAL_VOICE = 3001;

/**
 * The predecessor ran `new OpusEncoder(24000, 1)` from @discordjs/opus with no CTLs. Its binding
 * (src/node-opus.cc) creates the encoder with OPUS_APPLICATION_AUDIO and applies nothing else, so
 * libopus 1.3.1 defaults hold: bitrate OPUS_AUTO (= 60*Fs/frame + Fs*channels = 25 kbit/s for 60 ms
 * at 24 kHz mono), complexity 9, constrained VBR, max bandwidth fullband, signal auto, no FEC/DTX.
 * Our encoder gets exactly these values. Complexity is also set explicitly on the baseline (to the
 * default it already has) so that both encoders demonstrably run the same setting.
 */
export const DOWNLINK_OPUS = {
  sampleRate: 24000,
  channels: 1,
  application: 'audio',
  complexity: 9,
  vbr: true,
  vbrConstraint: true,
  inbandFec: false,
  packetLossPercent: 0,
  dtx: false,
  maxBandwidth: 'fullband',
  signal: 'auto',
} as const;

/** The encoder settings an encode stage runs, on both sides (ours and the 1.3.1 baseline). */
interface EncodeSettings {
  application: 'audio' | 'voip';
  complexity: number;
  /** undefined = OPUS_AUTO. */
  bitrate?: number;
  signal: 'auto' | 'voice';
  text: string;
}

export const ENCODE_SETTINGS: Record<'opus-encode' | 'opus-encode-c10' | 'opus-encode-voip' | 'opus-encode-gateway', EncodeSettings> = {
  'opus-encode': { application: 'audio', complexity: 9, signal: 'auto', text: 'application audio, bitrate OPUS_AUTO, complexity 9, constrained VBR, max bandwidth fullband, signal auto, no FEC/DTX (= @discordjs/opus defaults, the predecessor)' },
  'opus-encode-c10': { application: 'audio', complexity: 10, signal: 'auto', text: 'application audio, bitrate OPUS_AUTO, complexity 10, constrained VBR, fullband, signal auto, no FEC/DTX' },
  'opus-encode-voip': { application: 'voip', complexity: 9, signal: 'auto', text: 'application voip, bitrate OPUS_AUTO, complexity 9, constrained VBR, fullband, signal auto, no FEC/DTX' },
  // The gateway's own downlink default (DEFAULT_DOWNLINK_ENCODER in src/native/pipeline.ts).
  'opus-encode-gateway': { application: DEFAULT_DOWNLINK_ENCODER.application as 'voip', complexity: DEFAULT_DOWNLINK_ENCODER.complexity, bitrate: DEFAULT_DOWNLINK_ENCODER.bitrate, signal: DEFAULT_DOWNLINK_ENCODER.signal as 'voice', text: `the gateway's downlink default: application ${DEFAULT_DOWNLINK_ENCODER.application}, complexity ${DEFAULT_DOWNLINK_ENCODER.complexity}, ${DEFAULT_DOWNLINK_ENCODER.bitrate / 1000} kbit/s constrained VBR, signal ${DEFAULT_DOWNLINK_ENCODER.signal}, no FEC/DTX` },
};

function ourEncoder(e: EncodeSettings): OpusEncoder {
  return new OpusEncoder({ ...DOWNLINK_OPUS, application: e.application, complexity: e.complexity, signal: e.signal, ...(e.bitrate === undefined ? {} : { bitrate: e.bitrate }) });
}

/** @discordjs/opus always creates an AUDIO encoder; everything else is set by CTL before the first frame. */
function baselineEncoder(Discord: typeof DiscordOpusEncoder, e: EncodeSettings): DiscordOpusEncoder {
  const enc = new Discord(24000, 1);
  if (e.application === 'voip') enc.applyEncoderCTL(OPUS_SET_APPLICATION_REQUEST, OPUS_APPLICATION_VOIP);
  enc.applyEncoderCTL(OPUS_SET_COMPLEXITY_REQUEST, e.complexity);
  if (e.bitrate !== undefined) enc.applyEncoderCTL(OPUS_SET_BITRATE_REQUEST, e.bitrate);
  if (e.signal === 'voice') enc.applyEncoderCTL(OPUS_SET_SIGNAL_REQUEST, OPUS_SIGNAL_VOICE);
  return enc;
}

function opusEncodeStage(e: EncodeSettings): StageSetup {
  const discord = loadDiscordOpus();
  const sp = speech(24000);
  const inputs = frames(sp.samples, 1440);
  const buffers = inputs.map((f) => Buffer.from(f.buffer, f.byteOffset, f.byteLength));
  const ours = ourEncoder(e);
  const bytes = { ours: 0, oursN: 0, theirs: 0, theirsN: 0 };
  const nextO = cycle(inputs), nextT = cycle(buffers);
  const mean = (b: number, n: number): number => (n === 0 ? 0 : Math.round((b / n) * 10) / 10);
  const variants: Variant[] = [
    {
      name: V.ours,
      role: 'ours',
      frame: () => {
        const p = ours.encode(nextO());
        bytes.ours += p.length;
        bytes.oursN++;
        return p;
      },
      notes: () => ({ 'mean packet bytes': mean(bytes.ours, bytes.oursN) }),
    },
  ];
  const facts: Record<string, string | number | boolean> = {
    input: sp.source,
    frames: inputs.length,
  };
  if (!discord) {
    facts.settings = e.text;
    return { variants, missingBaselines: [DISCORD_MISSING], facts, warnings: speechWarnings(sp) };
  }
  const theirs = baselineEncoder(discord.OpusEncoder, e);
  variants.push({
    name: V.discord,
    role: 'baseline',
    frame: () => {
      const p = theirs.encode(nextT());
      bytes.theirs += p.length;
      bytes.theirsN++;
      return p;
    },
    notes: () => ({ 'mean packet bytes': mean(bytes.theirs, bytes.theirsN) }),
  });
  // Settings check on fresh encoders fed the same frames. Ours is libopus 1.5.2, the baseline 1.3.1:
  // 1.4/1.5 retuned the encoder, so byte-identical packets are no longer expected (they were while
  // both sides were 1.3.1). Equal settings show as the same TOC byte (mode, bandwidth, frame size)
  // on (nearly) every packet. The byte totals are reported, not expected equal: with OPUS_AUTO on
  // the 24 kHz fixture 1.5.2 spent 16 % fewer bytes than 1.3.1 (165 vs 198 per packet, first run).
  const a = ourEncoder(e);
  const b = baselineEncoder(discord.OpusEncoder, e);
  let same = 0, sameToc = 0;
  let sizeA = 0, sizeB = 0;
  const check = Math.min(100, inputs.length);
  for (let i = 0; i < check; i++) {
    const pa = a.encode(inputs[i]!);
    const pb = b.encode(buffers[i]!);
    sizeA += pa.length;
    sizeB += pb.length;
    if (pa.equals(pb)) same++;
    if (pa[0] === pb[0]) sameToc++;
  }
  a.close();
  facts.settings = `both: ${e.text}`;
  facts['same TOC byte (fresh encoders)'] = `${sameToc}/${check}`;
  facts['identical packets (libopus 1.5.2 vs 1.3.1: not expected)'] = `${same}/${check}`;
  facts['bytes over those frames ours/baseline'] = `${sizeA}/${sizeB}`;
  return { variants, missingBaselines: [], facts, warnings: speechWarnings(sp) };
}

/** Uplink-like packets: what an ESP32 sends (16 kHz mono 60 ms, VOIP, auto bitrate ≈ 17 kbit/s). */
function uplinkPackets(): { packets: Buffer[]; source: string; synthetic: boolean } {
  const sp = speech(16000);
  const enc = new OpusEncoder({ sampleRate: 16000, channels: 1, application: 'voip', complexity: 3 });
  const packets = frames(sp.samples, 960).map((f) => enc.encode(f));
  enc.close();
  return { packets, source: sp.source, synthetic: sp.synthetic };
}

function opusDecodeStage(): StageSetup {
  const discord = loadDiscordOpus();
  const up = uplinkPackets();
  const ours = new OpusDecoder({ sampleRate: 16000, channels: 1 });
  const samples = { ours: 0, oursN: 0, theirs: 0, theirsN: 0 };
  const nextO = cycle(up.packets), nextT = cycle(up.packets);
  const variants: Variant[] = [
    {
      name: V.ours,
      role: 'ours',
      frame: () => {
        const pcm = ours.decode(nextO());
        samples.ours += pcm.length;
        samples.oursN++;
        return pcm;
      },
      notes: () => ({ 'samples/frame': samples.oursN ? samples.ours / samples.oursN : 0 }),
    },
  ];
  const total = up.packets.reduce((n, p) => n + p.length, 0);
  const facts: Record<string, string | number | boolean> = {
    input: `${up.packets.length} packets encoded from ${up.source} (voip, 16 kHz mono 60 ms, auto bitrate, complexity 3)`,
    'mean packet bytes': Math.round((total / up.packets.length) * 10) / 10,
  };
  const warnings = up.synthetic ? [`input is a ${up.source}`] : [];
  if (!discord) return { variants, missingBaselines: [DISCORD_MISSING], facts, warnings };
  const { OpusEncoder: Discord } = discord;
  const theirs: DiscordOpusEncoder = new Discord(16000, 1);
  variants.push({
    name: V.discord,
    role: 'baseline',
    frame: () => {
      const pcm = theirs.decode(nextT());
      samples.theirs += pcm.length >> 1;
      samples.theirsN++;
      return pcm;
    },
    notes: () => ({ 'samples/frame': samples.theirsN ? samples.theirs / samples.theirsN : 0 }),
  });
  // Identical output check on fresh decoders (1.5.2 vs 1.3.1: the same packets decode to the same
  // samples or within rounding; test/opus-compat.test.ts holds them to >= 60 dB SNR).
  const a = new OpusDecoder({ sampleRate: 16000, channels: 1 });
  const b: DiscordOpusEncoder = new Discord(16000, 1);
  let same = 0;
  const check = Math.min(100, up.packets.length);
  for (let i = 0; i < check; i++) {
    const pa = a.decode(up.packets[i]!);
    const pb = b.decode(up.packets[i]!);
    if (Buffer.from(pa.buffer, pa.byteOffset, pa.byteLength).equals(pb)) same++;
  }
  a.close();
  facts['identical PCM (fresh decoders)'] = `${same}/${check}`;
  return { variants, missingBaselines: [], facts, warnings };
}

// ---------------------------------------------------------------------------------------------
// AES-128-CTR

const AES_PAYLOAD = 120;

function aesStage(): StageSetup {
  const key = randomBytes(16);
  // 64 packets: distinct IVs (header with increasing timestamp/sequence) and payloads.
  const ivs: Buffer[] = [];
  const payloads: Buffer[] = [];
  for (let i = 0; i < 64; i++) {
    const iv = Buffer.alloc(16);
    iv[0] = 1;
    iv.writeUInt16BE(AES_PAYLOAD, 2);
    iv.writeUInt32BE(0x5eed1234, 4);
    iv.writeUInt32BE(i * 60, 8);
    iv.writeUInt32BE(i + 1, 12);
    ivs.push(iv);
    payloads.push(randomBytes(AES_PAYLOAD));
  }
  const ours = new AesCtr(key);
  const raw = new native.NativeAesCtr(key);
  const out = new Uint8Array(AES_PAYLOAD);
  let io = 0, it = 0, ir = 0, iu = 0;
  const variants: Variant[] = [
    {
      name: V.ours,
      role: 'ours',
      frame: () => {
        const r = ours.crypt(ivs[io]!, payloads[io]!, out);
        io = (io + 1) & 63;
        return r;
      },
    },
    {
      name: V.cipheriv,
      role: 'baseline',
      frame: () => {
        const c = createCipheriv('aes-128-ctr', key, ivs[it]!);
        const r = c.update(payloads[it]!);
        c.final();
        it = (it + 1) & 63;
        return r;
      },
    },
    {
      name: 'probe: addon call, no TS checks',
      role: 'probe',
      frame: () => {
        raw.crypt(ivs[ir]!, payloads[ir]!, out);
        ir = (ir + 1) & 63;
        return out;
      },
    },
    {
      name: 'probe: createCipheriv, update only',
      role: 'probe',
      frame: () => {
        const r = createCipheriv('aes-128-ctr', key, ivs[iu]!).update(payloads[iu]!);
        iu = (iu + 1) & 63;
        return r;
      },
    },
  ];
  // Same bytes as node:crypto.
  const ref = createCipheriv('aes-128-ctr', key, ivs[5]!).update(payloads[5]!);
  const mine = ours.crypt(ivs[5]!, payloads[5]!);
  return {
    variants,
    facts: { payload: `${AES_PAYLOAD} bytes`, 'identical to node:crypto': ref.equals(mine) },
    missingBaselines: [],
    warnings: [],
  };
}

// ---------------------------------------------------------------------------------------------
// Packet framing (informational)

function jsParse(d: Buffer): { type: number; flags: number; payloadLength: number; ssrc: number; timestamp: number; sequence: number; payload: Buffer } {
  if (d.length < 16) throw new RangeError('short');
  if (d[0] !== 1) throw new RangeError('type');
  const payloadLength = d.readUInt16BE(2);
  if (payloadLength !== d.length - 16) throw new RangeError('length');
  return {
    type: d[0], flags: d[1]!, payloadLength,
    ssrc: d.readUInt32BE(4), timestamp: d.readUInt32BE(8), sequence: d.readUInt32BE(12),
    payload: d.subarray(16),
  };
}

function jsEncode(h: { flags: number; ssrc: number; timestamp: number; sequence: number }, payload: Uint8Array): Buffer {
  const out = Buffer.allocUnsafe(16 + payload.length);
  out[0] = 1;
  out[1] = h.flags;
  out.writeUInt16BE(payload.length, 2);
  out.writeUInt32BE(h.ssrc, 4);
  out.writeUInt32BE(h.timestamp, 8);
  out.writeUInt32BE(h.sequence, 12);
  out.set(payload, 16);
  return out;
}

function packetStage(): StageSetup {
  const datagrams: Buffer[] = [];
  for (let i = 0; i < 64; i++) {
    datagrams.push(packet.encode({ flags: 0, ssrc: 0x5eed1234, timestamp: i * 60, sequence: i + 1 }, randomBytes(AES_PAYLOAD)));
  }
  let io = 0, ij = 0, seqO = 0, seqJ = 0;
  const variants: Variant[] = [
    {
      name: V.ours,
      role: 'ours',
      frame: () => {
        const p = packet.parse(datagrams[io]!);
        io = (io + 1) & 63;
        return packet.encode({ flags: 1, ssrc: p.ssrc, timestamp: p.timestamp, sequence: ++seqO >>> 0 }, p.payload);
      },
    },
    {
      name: V.jsBuffer,
      role: 'baseline',
      frame: () => {
        const p = jsParse(datagrams[ij]!);
        ij = (ij + 1) & 63;
        return jsEncode({ flags: 1, ssrc: p.ssrc, timestamp: p.timestamp, sequence: ++seqJ >>> 0 }, p.payload);
      },
    },
  ];
  // Probes: the two halves separately, and the bare addon parse call (no header object built).
  const fields = new Uint32Array(6);
  const payload = datagrams[0]!.subarray(16);
  let ip = 0, iq = 0, ir = 0, seqE = 0, seqF = 0;
  variants.push(
    { name: 'probe: ours parse() only', role: 'probe', frame: () => packet.parse(datagrams[(ip = (ip + 1) & 63)]!) },
    { name: 'probe: ours encode() only', role: 'probe', frame: () => packet.encode({ flags: 1, ssrc: 7, timestamp: 9, sequence: ++seqE >>> 0 }, payload) },
    { name: 'probe: addon packetParse call', role: 'probe', frame: () => native.packetParse(datagrams[(ir = (ir + 1) & 63)]!, fields) },
    { name: 'probe: JS parse only', role: 'probe', frame: () => jsParse(datagrams[(iq = (iq + 1) & 63)]!) },
    { name: 'probe: JS encode only', role: 'probe', frame: () => jsEncode({ flags: 1, ssrc: 7, timestamp: 9, sequence: ++seqF >>> 0 }, payload) },
  );
  const a = packet.encode({ flags: 1, ssrc: 7, timestamp: 9, sequence: 11 }, datagrams[0]!.subarray(16));
  const b = jsEncode({ flags: 1, ssrc: 7, timestamp: 9, sequence: 11 }, datagrams[0]!.subarray(16));
  return { variants, missingBaselines: [], facts: { datagram: `${16 + AES_PAYLOAD} bytes`, 'identical to JS': a.equals(b) }, warnings: [] };
}
