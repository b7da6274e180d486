// Downlink Opus quality-vs-CPU study (issue: adaptive downlink encoder ladder).
//
//   npx tsc -p tsconfig.build.json && node dist/bench/quality-study/run.js [options]
//
// 1. Renders TTS-like speech (espeak-ng and flite voices, English and Mandarin) to 24 kHz mono with
//    sox, cached in bench/quality-study/.cache/.
// 2. Encodes it at each candidate setting exactly as the downlink does (60 ms frames of 1440
//    samples at 24 kHz mono, our addon's OpusEncoder), decodes it at 24 kHz as the device does
//    (OpusDecoder), and scores it with PESQ-WB (ITU-T P.862.2, pesq_score.py) against the original.
//    Forced CELT on a VOIP encoder (the ladder's celtOnly rungs) exists only inside the pipeline, so
//    those rows are encoded through a real AudioPipeline downlink stream and decrypted here.
// 3. Times the encoder per 60 ms frame for every direct candidate in one process, interleaved in
//    shuffled blocks, repeated in several runs; then checks through the pipeline that forced CELT
//    on VOIP costs what restricted-lowdelay costs.
// 4. Prints a markdown table and a recommendation (default setting + ladder).
//
// --codec both: instead of the study, the libopus comparison (issue 14). The gateway's default, each
// rung of its ladder and the predecessor's setting, each encoded by our addon (the libopus it builds)
// and by @discordjs/opus (a devDependency that bundles libopus 1.3.1), both decoded by our decoder,
// PESQ-WB per utterance; per setting the paired difference between the two encoders with its 95 % CI.
// No CPU timing (bench opus-encode does that).
//
// Needs: sox, espeak-ng, flite (apt-get install sox espeak-ng flite) and python3 with
// `pip install pesq numpy soundfile`.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import {
  AudioPipeline,
  DEFAULT_DOWNLINK_ENCODER,
  DEFAULT_ENCODER_LADDER,
  OpusDecoder,
  OpusEncoder,
  opusVersion,
  type DownlinkPacket,
  type OpusApplication,
  type OpusSignal,
} from '../../src/index.js';
import { packageRoot } from '../../src/native/addon.js';
import { decryptDatagram } from '../pipeline/fixtures.js';

const require = createRequire(import.meta.url);

const RATE = 24000;
const FRAME = 1440; // 60 ms at 24 kHz
const STUDY_DIR = join(packageRoot, 'bench', 'quality-study');
const CACHE = join(STUDY_DIR, '.cache');

// ---------------------------------------------------------------------------------------------
// Options

interface Args {
  runs: number;
  /** Frames timed per candidate per run (0 = one pass over the whole speech material). */
  frames: number;
  block: number;
  quality: boolean;
  timing: boolean;
  pipelineCheck: boolean;
  quick: boolean;
  /** Keep the decoded 16 kHz wavs in .cache/degraded (≈ 300 MB for the full study). */
  keepAudio: boolean;
  json: string;
  /** 'both': the libopus comparison (ours against @discordjs/opus's 1.3.1) instead of the study. */
  codec: 'ours' | 'both';
}

function parseArgs(argv: string[]): Args {
  const a: Args = { runs: 3, frames: 0, block: 12, quality: true, timing: true, pipelineCheck: true, quick: false, keepAudio: false, json: join(CACHE, 'results.json'), codec: 'ours' };
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    const num = (): number => {
      const v = Number(argv[++i]);
      if (!Number.isFinite(v) || v < 0) throw new Error(`${k}: expected a number`);
      return v;
    };
    switch (k) {
      case '--runs': a.runs = Math.max(1, Math.round(num())); break;
      case '--frames': a.frames = Math.round(num()); break;
      case '--block': a.block = Math.max(1, Math.round(num())); break;
      case '--no-quality': a.quality = false; break;
      case '--no-timing': a.timing = false; break;
      case '--no-pipeline-check': a.pipelineCheck = false; break;
      case '--quick': a.quick = true; break;
      case '--keep-audio': a.keepAudio = true; break;
      case '--json': a.json = argv[++i] ?? a.json; break;
      case '--codec': {
        const v = argv[++i];
        if (v !== 'ours' && v !== 'both') throw new Error('--codec: expected ours or both');
        a.codec = v;
        break;
      }
      case '--help':
      case '-h':
        console.log('usage: node dist/bench/quality-study/run.js [--runs N] [--frames N] [--block N] [--quick] [--keep-audio] [--no-quality] [--no-timing] [--no-pipeline-check] [--json FILE] [--codec ours|both]');
        process.exit(0);
        break;
      default:
        throw new Error(`unknown option ${k}`);
    }
  }
  return a;
}

// ---------------------------------------------------------------------------------------------
// Speech material

interface Utterance {
  id: string;
  tool: 'espeak-ng' | 'flite';
  voice: string;
  /** espeak-ng words per minute. */
  speed?: number;
  text: string;
}

const UTTERANCES: Utterance[] = [
  { id: 'espeak-en-us', tool: 'espeak-ng', voice: 'en-us', speed: 165,
    text: "Sure! Today in Berlin it's mostly cloudy, with a high of eighteen degrees. You might want a jacket this evening." },
  { id: 'espeak-en-us-f3-slow', tool: 'espeak-ng', voice: 'en-us+f3', speed: 135,
    text: "I've set a timer for twelve minutes. When it rings, take the pasta out of the water." },
  { id: 'espeak-en-gb-m3-fast', tool: 'espeak-ng', voice: 'en-gb+m3', speed: 195,
    text: 'Here is a quick fact: octopuses have three hearts, and their blood is blue because it carries copper instead of iron.' },
  { id: 'espeak-en-klatt4', tool: 'espeak-ng', voice: 'en-us+klatt4', speed: 160,
    text: 'Your next meeting starts at half past three in room four. Traffic looks light, so leave at ten past.' },
  { id: 'espeak-cmn', tool: 'espeak-ng', voice: 'cmn', speed: 165,
    text: '你好，我是小智。今天天气晴朗，最高气温二十五度。' },
  { id: 'espeak-cmn-f4', tool: 'espeak-ng', voice: 'cmn+f4', speed: 180,
    text: '好的，已经为你打开客厅的灯。想听点音乐吗？' },
  { id: 'flite-slt', tool: 'flite', voice: 'slt',
    text: 'Good morning. You have two new messages, and one reminder: call the dentist before noon.' },
  { id: 'flite-rms', tool: 'flite', voice: 'rms',
    text: 'The capital of Australia is Canberra, not Sydney. It was chosen as a compromise in nineteen oh eight.' },
  { id: 'flite-awb', tool: 'flite', voice: 'awb',
    text: 'Okay, I have added milk, eggs, and a loaf of bread to your shopping list. Anything else?' },
];

interface Speech {
  utt: Utterance;
  /** 24 kHz mono Int16, peak-normalized to -3 dBFS, 0.2 s lead-in and 0.3 s tail. */
  pcm: Int16Array;
  /** The same at 16 kHz (sox), the PESQ reference. */
  ref16: string;
}

function toolVersion(tool: string): string {
  try {
    return execFileSync(tool, ['--version'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] }).split('\n')[0] ?? '';
  } catch (err) {
    throw new Error(`${tool} is needed (apt-get install -y sox espeak-ng flite): ${(err as Error).message}`);
  }
}

function sox(args: string[], input?: Buffer): Buffer {
  return execFileSync('sox', ['-D', '-V1', ...args], { input, maxBuffer: 1 << 28, stdio: ['pipe', 'pipe', 'pipe'] });
}

function readS16(file: string): Int16Array {
  const b = readFileSync(file);
  return new Int16Array(b.buffer.slice(b.byteOffset, b.byteOffset + (b.length & ~1)));
}

function renderSpeech(): Speech[] {
  mkdirSync(join(CACHE, 'speech'), { recursive: true });
  const versions = `${toolVersion('espeak-ng')}|${toolVersion('sox')}|flite`;
  return UTTERANCES.map((u) => {
    const key = createHash('sha256').update(JSON.stringify(u) + versions).digest('hex').slice(0, 10);
    const base = join(CACHE, 'speech', `${u.id}-${key}`);
    const raw24 = `${base}.s16`;
    const ref16 = `${base}-16k.wav`;
    if (!existsSync(raw24) || !existsSync(ref16)) {
      const tts = `${base}-tts.wav`;
      if (u.tool === 'espeak-ng') {
        execFileSync('espeak-ng', ['-v', u.voice, '-s', String(u.speed ?? 160), '-w', tts, u.text]);
      } else {
        execFileSync('flite', ['-voice', u.voice, '-t', u.text, '-o', tts]);
      }
      sox([tts, '-t', 'raw', '-e', 'signed-integer', '-b', '16', '-c', '1', raw24, 'remix', '1', 'rate', '-v', String(RATE), 'norm', '-3', 'pad', '0.2', '0.3']);
      sox(['-t', 'raw', '-r', String(RATE), '-e', 'signed-integer', '-b', '16', '-c', '1', raw24, '-b', '16', ref16, 'rate', '-v', '16000']);
    }
    return { utt: u, pcm: readS16(raw24), ref16 };
  });
}

// ---------------------------------------------------------------------------------------------
// Candidates

interface Candidate {
  label: string;
  application: OpusApplication;
  /** Forced CELT on a VOIP/AUDIO encoder: only the pipeline can do that (quality measured there). */
  celtOnly: boolean;
  complexity: number;
  /** undefined = libopus OPUS_AUTO (60*Fs/frame + Fs*channels = 25000 bps at 24 kHz, 60 ms). */
  bitrate: number | undefined;
  signal: OpusSignal;
  predecessor: boolean;
  /** Spot check only (not a default/ladder option): signal auto on voip, forced CELT on audio. */
  spot: boolean;
  /** Which libopus encodes: our addon's, or @discordjs/opus's 1.3.1 (--codec both). */
  libopus: Libopus;
  /** --codec both: what the setting is to the gateway (default, rung n, predecessor). */
  role?: string;
  /** Ours only: encode through an AudioPipeline downlink (20 ms parts) even when not celtOnly. */
  viaPipeline?: boolean;
  /** undefined = libopus's default (VBR). */
  vbr?: boolean;
}

type Libopus = 'ours' | '1.3.1';

const APP_SHORT: Record<OpusApplication, string> = { voip: 'voip', audio: 'audio', 'restricted-lowdelay': 'rld' };

function label(c: Omit<Candidate, 'label'>): string {
  const app = c.celtOnly ? `${APP_SHORT[c.application]}+celt` : APP_SHORT[c.application];
  const br = c.bitrate === undefined ? 'auto(25k)' : `${c.bitrate / 1000}k`;
  const sig = c.application === 'restricted-lowdelay' || c.celtOnly ? '' : ` ${c.signal}`;
  return `${app} c${c.complexity} ${br}${sig}${c.predecessor ? ' **predecessor**' : ''}${c.vbr === false ? ' cbr' : ''}${c.libopus === '1.3.1' ? ' [1.3.1]' : ''}`;
}

function cand(c: Omit<Candidate, 'label' | 'predecessor' | 'spot' | 'libopus'> & { predecessor?: boolean; spot?: boolean; libopus?: Libopus }): Candidate {
  const full = { predecessor: false, spot: false, libopus: 'ours' as Libopus, ...c };
  return { ...full, label: label(full) };
}

/** Complexities of the default's family (voip, 24 kbps): all 11, so the ladder can pick any rung. */
const ALL_COMPLEXITIES = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10];

function candidates(quick: boolean): Candidate[] {
  const dense = quick ? [0, 5, 9] : ALL_COMPLEXITIES;
  const bitrates = quick ? [24000] : [16000, 24000, 32000];
  const out: Candidate[] = [
    // @discordjs/opus 0.10 (src/node-opus.cc): opus_encoder_create(rate, channels, OPUS_APPLICATION_AUDIO)
    // and no CTL, so libopus 1.3.1 defaults: bitrate OPUS_AUTO, complexity 9, constrained VBR, signal auto.
    cand({ application: 'audio', celtOnly: false, complexity: 9, bitrate: undefined, signal: 'auto', predecessor: true }),
  ];
  for (const bitrate of bitrates) {
    for (const complexity of dense) {
      out.push(cand({ application: 'voip', celtOnly: false, complexity, bitrate, signal: 'voice' }));
      out.push(cand({ application: 'voip', celtOnly: true, complexity, bitrate, signal: 'voice' }));
      out.push(cand({ application: 'audio', celtOnly: false, complexity, bitrate, signal: 'auto' }));
      out.push(cand({ application: 'restricted-lowdelay', celtOnly: false, complexity, bitrate, signal: 'auto' }));
      // Spot checks: signal auto on voip, forced CELT on audio.
      if (bitrate === 24000 && (complexity === 5 || complexity === 9)) {
        out.push(cand({ application: 'voip', celtOnly: false, complexity, bitrate, signal: 'auto', spot: true }));
        out.push(cand({ application: 'audio', celtOnly: true, complexity, bitrate, signal: 'auto', spot: true }));
      }
    }
  }
  return out;
}

/** Encoder lookahead in samples (OPUS_GET_LOOKAHEAD): Fs/400, plus Fs/250 unless restricted-lowdelay. */
function lookahead(c: Candidate): number {
  return RATE / 400 + (c.application === 'restricted-lowdelay' ? 0 : RATE / 250);
}

/** One 60 ms frame in, one Opus packet out. */
interface FrameEncoder {
  encode(pcm: Int16Array): Uint8Array;
  close(): void;
}

function makeEncoder(c: Candidate): FrameEncoder {
  if (c.libopus === '1.3.1') return makeEncoder131(c);
  if (c.celtOnly) throw new Error(`${c.label}: forced CELT needs the pipeline`);
  return new OpusEncoder({
    sampleRate: RATE,
    channels: 1,
    application: c.application,
    complexity: c.complexity,
    signal: c.signal,
    ...(c.bitrate === undefined ? {} : { bitrate: c.bitrate }),
    ...(c.vbr === undefined ? {} : { vbr: c.vbr }),
  });
}

// libopus request numbers (include/opus_defines.h, src/opus_private.h; the same in 1.3.1 and 1.5.2).
const CTL = Object.freeze({
  setApplication: 4000,
  setBitrate: 4002,
  setVbr: 4006,
  setComplexity: 4010,
  setSignal: 4024,
  /** Private (src/opus_private.h): what our Encoder::set_celt_only sends, with MODE_CELT_ONLY. */
  setForceMode: 11002,
});
const OPUS_APPLICATION = { voip: 2048, audio: 2049, 'restricted-lowdelay': 2051 } as const;
const OPUS_SIGNAL = { auto: -1000, voice: 3001, music: 3002 } as const;
const MODE_CELT_ONLY = 1002;

type DiscordOpus = typeof import('@discordjs/opus');
let discordOpus: DiscordOpus | undefined;

/**
 * @discordjs/opus 0.10 creates its encoder on first use with OPUS_APPLICATION_AUDIO and applies no
 * request, so libopus 1.3.1's defaults hold (VBR, constrained, complexity 9, bitrate and signal auto:
 * what our Encoder also sets, apart from the fields below). OPUS_SET_APPLICATION is accepted before
 * the first frame, and 1.3.1's opus_encoder_init sets nothing else from the application, so setting
 * it is the same as creating the encoder with it. The predecessor row applies no request at all.
 */
function makeEncoder131(c: Candidate): FrameEncoder {
  if (discordOpus === undefined) {
    try {
      discordOpus = require('@discordjs/opus') as DiscordOpus;
    } catch (err) {
      throw new Error(`--codec both needs the devDependency @discordjs/opus (libopus 1.3.1): ${(err as Error).message}`);
    }
  }
  const enc = new discordOpus.OpusEncoder(RATE, 1);
  if (!c.predecessor) {
    enc.applyEncoderCTL(CTL.setApplication, OPUS_APPLICATION[c.application]);
    enc.applyEncoderCTL(CTL.setBitrate, c.bitrate ?? -1000);
    enc.applyEncoderCTL(CTL.setComplexity, c.complexity);
    enc.applyEncoderCTL(CTL.setSignal, OPUS_SIGNAL[c.signal]);
    if (c.vbr !== undefined) enc.applyEncoderCTL(CTL.setVbr, c.vbr ? 1 : 0);
    if (c.celtOnly) enc.applyEncoderCTL(CTL.setForceMode, MODE_CELT_ONLY);
  } else if (c.application !== 'audio' || c.complexity !== 9 || c.bitrate !== undefined || c.signal !== 'auto' || c.celtOnly) {
    throw new Error(`${c.label}: the predecessor row must be libopus 1.3.1's defaults`);
  }
  return {
    encode: (pcm) => enc.encode(Buffer.from(pcm.buffer, pcm.byteOffset, pcm.byteLength)),
    close: () => {},
  };
}

// ---------------------------------------------------------------------------------------------
// Encode + decode (quality path)

interface Coded {
  /** Decoded 24 kHz output, delay-trimmed to the input's length. */
  pcm: Int16Array;
  packets: Buffer[];
  /** Frames coded as three 20 ms parts joined into one packet (the pipeline's way for VBR hybrid/CELT). */
  partFrames: number;
}

function padForDelay(pcm: Int16Array, delay: number): Int16Array {
  const frames = Math.ceil((pcm.length + delay) / FRAME);
  const padded = new Int16Array(frames * FRAME);
  padded.set(pcm);
  return padded;
}

function decodeAll(packets: Buffer[], length: number, delay: number): Int16Array {
  const dec = new OpusDecoder({ sampleRate: RATE, channels: 1 });
  const out = new Int16Array(packets.length * FRAME);
  packets.forEach((p, i) => {
    const d = dec.decode(p);
    if (d.length !== FRAME) throw new Error(`decoded ${d.length} samples, expected ${FRAME}`);
    out.set(d, i * FRAME);
  });
  dec.close();
  return out.subarray(delay, delay + length);
}

function codeDirect(c: Candidate, pcm: Int16Array): Coded {
  const delay = lookahead(c);
  const padded = padForDelay(pcm, delay);
  const enc = makeEncoder(c);
  const packets: Buffer[] = [];
  for (let off = 0; off < padded.length; off += FRAME) packets.push(Buffer.from(enc.encode(padded.subarray(off, off + FRAME))));
  enc.close();
  return { pcm: decodeAll(packets, pcm.length, delay), packets, partFrames: 0 };
}

const PART = FRAME / 3; // 20 ms

/**
 * One 60 ms packet from three 20 ms packets of the same configuration (RFC 6716 3.2.5, code 3), as
 * the pipeline's FramePartsEncoder does with opus_repacketizer for VBR hybrid and CELT frames.
 */
function joinParts(parts: Uint8Array[]): Buffer {
  const toc = parts[0]![0]! & 0xfc;
  if (parts.some((p) => (p[0]! & 0xfc) !== toc)) throw new Error('20 ms parts of one frame changed mode or bandwidth: they cannot share a packet');
  const bodies = parts.map((p) => p.subarray(1));
  const cbr = bodies.every((b) => b.length === bodies[0]!.length);
  const head = [toc | 3, (cbr ? 0 : 0x80) | parts.length];
  if (!cbr) {
    for (const b of bodies.slice(0, -1)) {
      if (b.length < 252) head.push(b.length);
      else head.push(252 + (b.length & 3), (b.length - 252 - (b.length & 3)) >> 2);
    }
  }
  return Buffer.concat([Buffer.from(head), ...bodies]);
}

/**
 * The 1.3.1 side of the forced-CELT rungs, framed as the pipeline frames ours: each 60 ms frame is
 * three opus_encode calls of 20 ms joined into one packet (a forced-CELT frame never changes mode
 * inside a frame, so the pipeline never recodes it whole; codePipeline counts that).
 */
function codeParts131(c: Candidate, pcm: Int16Array): Coded {
  const delay = lookahead(c);
  const padded = padForDelay(pcm, delay);
  const enc = makeEncoder(c);
  const packets: Buffer[] = [];
  for (let off = 0; off < padded.length; off += FRAME) {
    packets.push(joinParts([0, 1, 2].map((k) => Uint8Array.from(enc.encode(padded.subarray(off + k * PART, off + (k + 1) * PART))))));
  }
  enc.close();
  return { pcm: decodeAll(packets, pcm.length, delay), packets, partFrames: packets.length };
}

/** Encodes one utterance the way the candidate says (direct, through the pipeline, or in parts). */
async function codeCandidate(pipeline: AudioPipeline, c: Candidate, pcm: Int16Array): Promise<Coded> {
  if (c.libopus === '1.3.1') return c.celtOnly ? codeParts131(c, pcm) : codeDirect(c, pcm);
  return c.celtOnly || c.viaPipeline ? codePipeline(pipeline, c, pcm) : codeDirect(c, pcm);
}

const KEY = Buffer.from('000102030405060708090a0b0c0d0e0f', 'hex');
const NONCE = Buffer.from('01000000123456780000000000000000', 'hex');

async function codePipeline(pipeline: AudioPipeline, c: Candidate, pcm: Int16Array): Promise<Coded> {
  const delay = lookahead(c);
  const padded = padForDelay(pcm, delay);
  const datagrams: Buffer[] = [];
  let stream: ReturnType<AudioPipeline['createDownlink']> | undefined;
  const before = pipeline.metrics().counters;
  await new Promise<void>((resolve) => {
    stream = pipeline.createDownlink({
      key: KEY,
      nonce: NONCE,
      inputRate: RATE,
      deviceRate: RATE,
      frameMs: 60,
      adaptive: false,
      encoder: { application: c.application, complexity: c.complexity, signal: c.signal, celtOnly: c.celtOnly, ...(c.bitrate === undefined ? {} : { bitrate: c.bitrate }), ...(c.vbr === undefined ? {} : { vbr: c.vbr }) },
      onPacket: (p: DownlinkPacket) => datagrams.push(Buffer.from(p.datagram)),
      onTurnEnd: () => resolve(),
    });
    for (let off = 0; off < padded.length; off += FRAME) stream.push(padded.subarray(off, off + FRAME));
    stream.flush();
  });
  stream?.close();
  const packets = datagrams.map((d) => decryptDatagram(KEY, d));
  if (packets.length !== padded.length / FRAME) throw new Error(`${c.label}: ${packets.length} packets for ${padded.length / FRAME} frames`);
  const after = pipeline.metrics().counters;
  const partFrames = (after.downlink_frames_coded_in_parts ?? 0) - (before.downlink_frames_coded_in_parts ?? 0);
  return { pcm: decodeAll(packets, pcm.length, delay), packets, partFrames };
}

/** Lag (samples) maximizing the cross-correlation of y against x: checks the delay trim. */
function bestLag(x: Int16Array, y: Int16Array, maxLag: number): number {
  let best = 0;
  let bestV = -Infinity;
  const n = Math.min(x.length, y.length) - maxLag;
  for (let lag = -maxLag; lag <= maxLag; lag++) {
    let s = 0;
    for (let i = maxLag; i < n; i++) s += x[i]! * y[i + lag]!;
    if (s > bestV) { bestV = s; best = lag; }
  }
  return best;
}

// Opus TOC byte (RFC 6716 3.1): config 0-11 SILK NB/MB/WB, 12-15 hybrid SWB/FB, 16-31 CELT NB/WB/SWB/FB.
function tocClass(toc: number): string {
  const cfg = toc >> 3;
  if (cfg < 12) return `S-${['NB', 'MB', 'WB'][cfg >> 2]}`;
  if (cfg < 16) return `H-${cfg < 14 ? 'SWB' : 'FB'}`;
  return `C-${['NB', 'WB', 'SWB', 'FB'][(cfg - 16) >> 2]}`;
}

function modeMix(packets: Buffer[]): string {
  const counts = new Map<string, number>();
  for (const p of packets) {
    const k = tocClass(p[0]!);
    counts.set(k, (counts.get(k) ?? 0) + 1);
  }
  return [...counts.entries()]
    .sort((a, b) => b[1] - a[1])
    .filter(([, n], i) => i === 0 || n / packets.length >= 0.03)
    .map(([k, n]) => `${k} ${Math.round((100 * n) / packets.length)}%`)
    .join(', ');
}

interface QualityResult {
  mosMean: number;
  mosMin: number;
  perUtterance: Record<string, number>;
  bytesPerFrame: number;
  modes: string;
  /** Share of frames coded in 20 ms parts (0 = every frame one 60 ms opus_encode). */
  partsShare: number;
}

async function measureQuality(cands: Candidate[], speech: Speech[], keepAudio: boolean, packetsOut?: Map<Candidate, Buffer[]>): Promise<Map<Candidate, QualityResult>> {
  const degDir = join(CACHE, 'degraded');
  rmSync(degDir, { recursive: true, force: true });
  mkdirSync(degDir, { recursive: true });
  const pipeline = new AudioPipeline({ maxWorkers: 1, adaptive: false, downlinkQueueCapacity: 16384 });
  const pairs: { ref: string; deg: string }[] = [];
  const owner: { c: Candidate; u: string }[] = [];
  const bytes = new Map<Candidate, { total: number; frames: number; packets: Buffer[]; partFrames: number }>();
  const t0 = Date.now();

  // Sanity checks: the delay trim is right on both paths, and the pipeline's encoder is ours.
  const probe = speech[0]!;
  const probes = (['ours', '1.3.1'] as const).flatMap((lib) => {
    const mine = cands.filter((x) => x.libopus === lib);
    return [mine.find((x) => x.application === 'voip' && !x.celtOnly), mine.find((x) => x.application === 'restricted-lowdelay'), mine.find((x) => x.celtOnly)];
  });
  for (const c of probes) {
    if (!c) continue;
    const coded = await codeCandidate(pipeline, c, probe.pcm);
    const lag = bestLag(probe.pcm, coded.pcm, 480);
    console.error(`[quality] delay check ${c.label}: residual lag after trimming ${lookahead(c)} samples = ${lag}`);
    if (Math.abs(lag) > 2) throw new Error(`${c.label}: decoded output misaligned by ${lag} samples`);
  }
  {
    // CBR, because the pipeline codes VBR hybrid/CELT frames in 20 ms parts (FramePartsEncoder) and
    // a CBR frame whole, as OpusEncoder does: byte-identical packets then say the pipeline's encoder
    // is ours, configured alike.
    const c = cand({ application: DEFAULT_DOWNLINK_ENCODER.application, celtOnly: false, complexity: DEFAULT_DOWNLINK_ENCODER.complexity, bitrate: DEFAULT_DOWNLINK_ENCODER.bitrate, signal: DEFAULT_DOWNLINK_ENCODER.signal, vbr: false });
    const a = codeDirect(c, probe.pcm).packets;
    const b = (await codePipeline(pipeline, c, probe.pcm)).packets;
    const same = a.filter((p, i) => b[i] !== undefined && p.equals(b[i]!)).length;
    console.error(`[quality] pipeline vs OpusEncoder (${c.label}): ${same}/${a.length} packets byte-identical`);
    if (same !== a.length || a.length !== b.length) throw new Error('the pipeline encoder does not match OpusEncoder: the forced-CELT rows would not be comparable');
    console.error('[quality] note: with VBR the pipeline codes hybrid and CELT frames in 20 ms parts, so its forced-CELT rows are framed that way');
  }

  for (const [ci, c] of cands.entries()) {
    const agg = { total: 0, frames: 0, packets: [] as Buffer[], partFrames: 0 };
    for (const s of speech) {
      const coded = await codeCandidate(pipeline, c, s.pcm);
      for (const p of coded.packets) agg.total += p.length;
      agg.frames += coded.packets.length;
      agg.partFrames += coded.partFrames;
      agg.packets.push(...coded.packets);
      const deg = join(degDir, `c${String(ci).padStart(3, '0')}-${s.utt.id}-16k.wav`);
      const raw = Buffer.from(coded.pcm.buffer, coded.pcm.byteOffset, coded.pcm.byteLength);
      sox(['-t', 'raw', '-r', String(RATE), '-e', 'signed-integer', '-b', '16', '-c', '1', '-', '-b', '16', deg, 'rate', '-v', '16000'], raw);
      pairs.push({ ref: s.ref16, deg });
      owner.push({ c, u: s.utt.id });
    }
    bytes.set(c, agg);
    packetsOut?.set(c, agg.packets);
  }
  pipeline.close();
  console.error(`[quality] encoded ${cands.length} settings x ${speech.length} utterances in ${((Date.now() - t0) / 1000).toFixed(1)} s; scoring with PESQ...`);

  // Scores are cached by the content of both files (encoding is deterministic, so reruns for
  // timing stability do not pay for PESQ again).
  const t1 = Date.now();
  const cacheFile = join(CACHE, 'pesq-cache.json');
  const cache = (existsSync(cacheFile) ? JSON.parse(readFileSync(cacheFile, 'utf8')) : {}) as Record<string, number>;
  const refHash = new Map<string, string>();
  const keys = pairs.map((p) => {
    let rh = refHash.get(p.ref);
    if (rh === undefined) refHash.set(p.ref, (rh = createHash('sha256').update(readFileSync(p.ref)).digest('hex')));
    return createHash('sha256').update(rh).update(readFileSync(p.deg)).digest('hex');
  });
  const todo = pairs.filter((_, i) => cache[keys[i]!] === undefined);
  if (todo.length > 0) {
    const list = join(CACHE, 'pairs.json');
    writeFileSync(list, JSON.stringify(todo));
    const outText = execFileSync('python3', [join(STUDY_DIR, 'pesq_score.py'), list], { encoding: 'utf8', maxBuffer: 1 << 28, stdio: ['ignore', 'pipe', 'inherit'] });
    const fresh = JSON.parse(outText) as { deg: string; mos: number | null; error: string | null }[];
    const byDeg = new Map(fresh.map((f) => [f.deg, f]));
    pairs.forEach((p, i) => {
      const f = byDeg.get(p.deg);
      if (f === undefined) return;
      if (f.mos === null) throw new Error(`PESQ failed for ${p.deg}: ${f.error}`);
      cache[keys[i]!] = f.mos;
    });
    writeFileSync(cacheFile, JSON.stringify(cache));
  }
  const scores = keys.map((k) => ({ mos: cache[k] ?? null, error: 'missing' }));
  if (!keepAudio) rmSync(degDir, { recursive: true, force: true });
  console.error(`[quality] PESQ: ${todo.length} pairs scored, ${pairs.length - todo.length} from the cache, in ${((Date.now() - t1) / 1000).toFixed(1)} s`);

  const per = new Map<Candidate, Record<string, number>>();
  scores.forEach((s, i) => {
    const o = owner[i]!;
    if (s.mos === null) throw new Error(`PESQ failed for ${o.c.label} / ${o.u}: ${s.error}`);
    const r = per.get(o.c) ?? {};
    r[o.u] = s.mos;
    per.set(o.c, r);
  });
  const out = new Map<Candidate, QualityResult>();
  for (const c of cands) {
    const r = per.get(c)!;
    const v = Object.values(r);
    const b = bytes.get(c)!;
    out.set(c, {
      mosMean: v.reduce((a, x) => a + x, 0) / v.length,
      mosMin: Math.min(...v),
      perUtterance: r,
      bytesPerFrame: b.total / b.frames,
      modes: modeMix(b.packets),
      partsShare: b.partFrames / b.frames,
    });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// CPU timing

interface TimingResult {
  /** Wall time of each encode() (hrtime), pooled over runs. */
  medianUs: number;
  p99Us: number;
  meanUs: number;
  /** Median of each run. */
  runMedians: number[];
  /** Process CPU time (getrusage user+system) per frame, summed over blocks: immune to preemption. */
  cpuMeanUs: number;
  runCpuMeans: number[];
  samples: number;
}

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function shuffled(n: number, rnd: () => number): number[] {
  const a = Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rnd() * (i + 1));
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}

function quantile(sorted: Float64Array | number[], q: number): number {
  if (sorted.length === 0) return NaN;
  const pos = q * (sorted.length - 1);
  const lo = Math.floor(pos);
  const hi = Math.min(sorted.length - 1, lo + 1);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (pos - lo);
}

function summarize(runs: number[][], cpuRuns: { us: number; frames: number }[]): TimingResult {
  const all = Float64Array.from(runs.flat()).sort();
  const runMedians = runs.map((r) => quantile(Float64Array.from(r).sort(), 0.5));
  const cpuUs = cpuRuns.reduce((a, r) => a + r.us, 0);
  const cpuFrames = cpuRuns.reduce((a, r) => a + r.frames, 0);
  return {
    medianUs: quantile(all, 0.5),
    p99Us: quantile(all, 0.99),
    meanUs: all.reduce((a, x) => a + x, 0) / all.length,
    runMedians,
    cpuMeanUs: cpuUs / cpuFrames,
    runCpuMeans: cpuRuns.map((r) => r.us / r.frames),
    samples: all.length,
  };
}

function speechFrames(speech: Speech[]): Int16Array[] {
  const total = speech.reduce((a, s) => a + s.pcm.length, 0);
  const all = new Int16Array(total);
  let off = 0;
  for (const s of speech) {
    all.set(s.pcm, off);
    off += s.pcm.length;
  }
  const frames: Int16Array[] = [];
  for (let o = 0; o + FRAME <= all.length; o += FRAME) frames.push(all.slice(o, o + FRAME));
  return frames;
}

function gc(): void {
  (globalThis as { gc?: () => void }).gc?.();
}

/**
 * Each candidate keeps one encoder that walks through the speech material frame by frame (state
 * carries over, as in a real stream). Candidates take turns in blocks of `block` frames, in a
 * freshly shuffled order for every block, so machine noise spreads over all of them.
 */
function measureCpu(cands: Candidate[], frames: Int16Array[], args: Args): Map<Candidate, TimingResult> {
  const direct = cands.filter((c) => !c.celtOnly);
  const encoders = direct.map(makeEncoder);
  const cursor = direct.map((_, i) => (i * 37) % frames.length);
  const rnd = mulberry32(0x5eed);
  const perRun = args.frames > 0 ? args.frames : frames.length;
  const blocks = Math.ceil(perRun / args.block);
  const step = (i: number, times: number[] | undefined, cpu: { us: number; frames: number } | undefined): void => {
    const enc = encoders[i]!;
    const c0 = process.cpuUsage();
    for (let k = 0; k < args.block; k++) {
      const f = frames[cursor[i]!]!;
      cursor[i] = (cursor[i]! + 1) % frames.length;
      const t0 = process.hrtime.bigint();
      enc.encode(f);
      const t1 = process.hrtime.bigint();
      times?.push(Number(t1 - t0) / 1000);
    }
    if (cpu) {
      const d = process.cpuUsage(c0);
      cpu.us += d.user + d.system;
      cpu.frames += args.block;
    }
  };
  // Warm-up: JIT, allocator, every encoder's state and caches (about 60 frames each).
  for (let w = 0; w < Math.ceil(60 / args.block); w++) for (const i of shuffled(direct.length, rnd)) step(i, undefined, undefined);
  const times: number[][][] = direct.map(() => []);
  const cpuTimes: { us: number; frames: number }[][] = direct.map(() => []);
  for (let r = 0; r < args.runs; r++) {
    gc();
    const t0 = Date.now();
    const run: number[][] = direct.map(() => []);
    const cpuRun = direct.map(() => ({ us: 0, frames: 0 }));
    for (let b = 0; b < blocks; b++) for (const i of shuffled(direct.length, rnd)) step(i, run[i], cpuRun[i]);
    run.forEach((t, i) => times[i]!.push(t));
    cpuRun.forEach((t, i) => cpuTimes[i]!.push(t));
    console.error(`[cpu] run ${r + 1}/${args.runs}: ${direct.length} settings x ${blocks * args.block} frames in ${((Date.now() - t0) / 1000).toFixed(1)} s (load ${loadavg().map((x) => x.toFixed(2)).join(' ')})`);
  }
  encoders.forEach((e) => e.close());
  const out = new Map<Candidate, TimingResult>();
  direct.forEach((c, i) => out.set(c, summarize(times[i]!, cpuTimes[i]!)));
  return out;
}

const PIPELINE_FRAMES = 600;

interface PipelineCheckRow {
  c: Candidate;
  /** Per round: wall time from the first push to the end of the turn, per frame. */
  wallUs: number[];
  /** Per round: process CPU time (getrusage) over the same span, per frame. */
  cpuUs: number[];
}

const median = (xs: number[]): number => quantile([...xs].sort((a, b) => a - b), 0.5);

/**
 * Forced CELT on VOIP (the ladder's celtOnly rungs) can only be run inside the pipeline, so its CPU
 * is taken as restricted-lowdelay's (timed directly) scaled by the ratio of the two measured here,
 * through a real downlink stream (one worker, one stream, 600 frames pushed then flushed; the span
 * includes passthrough "resampling", AES and dispatch, a few µs per frame, on both sides). Hybrid
 * VOIP rows are included to compare the pipeline's numbers with the direct ones.
 */
async function pipelineCheck(frames: Int16Array[], complexities: number[], rounds: number): Promise<PipelineCheckRow[]> {
  const configs: Candidate[] = [];
  for (const complexity of complexities) {
    configs.push(cand({ application: 'restricted-lowdelay', celtOnly: false, complexity, bitrate: 24000, signal: 'auto' }));
    configs.push(cand({ application: 'voip', celtOnly: true, complexity, bitrate: 24000, signal: 'voice' }));
    if (complexity === 0 || complexity === 5 || complexity === 9) configs.push(cand({ application: 'voip', celtOnly: false, complexity, bitrate: 24000, signal: 'voice' }));
  }
  const pipeline = new AudioPipeline({ maxWorkers: 1, adaptive: false, downlinkQueueCapacity: 16384 });
  const n = Math.min(frames.length, PIPELINE_FRAMES);
  const rnd = mulberry32(0xc0ffee);
  const rows: PipelineCheckRow[] = configs.map((c) => ({ c, wallUs: [], cpuUs: [] }));
  for (let r = -1; r < rounds; r++) {
    gc();
    const t = Date.now();
    for (const i of shuffled(configs.length, rnd)) {
      const c = configs[i]!;
      let stream: ReturnType<AudioPipeline['createDownlink']> | undefined;
      const c0 = process.cpuUsage();
      const t0 = process.hrtime.bigint();
      await new Promise<void>((resolve) => {
        stream = pipeline.createDownlink({
          key: KEY, nonce: NONCE, inputRate: RATE, deviceRate: RATE, frameMs: 60, adaptive: false,
          encoder: { application: c.application, complexity: c.complexity, signal: c.signal, celtOnly: c.celtOnly, bitrate: 24000 },
          onPacket: () => {},
          onTurnEnd: () => resolve(),
        });
        const start = (i * 53) % Math.max(1, frames.length - n);
        for (let k = 0; k < n; k++) stream.push(frames[start + k]!);
        stream.flush();
      });
      const t1 = process.hrtime.bigint();
      const d = process.cpuUsage(c0);
      stream?.close();
      if (r < 0) continue; // warm-up round
      rows[i]!.wallUs.push(Number(t1 - t0) / 1000 / n);
      rows[i]!.cpuUs.push((d.user + d.system) / n);
    }
    if (r >= 0) console.error(`[pipeline] round ${r + 1}/${rounds}: ${configs.length} settings x ${n} frames in ${((Date.now() - t) / 1000).toFixed(1)} s`);
  }
  pipeline.close();
  return rows;
}

// ---------------------------------------------------------------------------------------------
// Report

interface Row {
  c: Candidate;
  q: QualityResult | undefined;
  t: TimingResult | undefined;
  /** Forced-CELT rows: how their timing was derived. */
  tFrom: string | undefined;
}

const f0 = (x: number): string => (Number.isFinite(x) ? x.toFixed(0) : '–');
const f2 = (x: number): string => (Number.isFinite(x) ? x.toFixed(2) : '–');

function scaled(t: TimingResult, k: number): TimingResult {
  return {
    medianUs: t.medianUs * k,
    p99Us: t.p99Us * k,
    meanUs: t.meanUs * k,
    runMedians: t.runMedians.map((x) => x * k),
    cpuMeanUs: t.cpuMeanUs * k,
    runCpuMeans: t.runCpuMeans.map((x) => x * k),
    samples: t.samples,
  };
}

/**
 * CPU of forced CELT on VOIP relative to restricted-lowdelay: the median over every complexity and
 * round of the paired ratio (both measured in the same round). One pooled factor, because the
 * per-complexity ratios scatter within the machine's noise (they are printed).
 */
function celtRatios(check: PipelineCheckRow[]): { pooled: number; byComplexity: Map<number, number> } {
  const all: number[] = [];
  const byComplexity = new Map<number, number>();
  for (const celt of check.filter((r) => r.c.celtOnly)) {
    const rld = check.find((r) => r.c.application === 'restricted-lowdelay' && r.c.complexity === celt.c.complexity);
    if (!rld) continue;
    const paired = celt.cpuUs.map((x, i) => x / rld.cpuUs[i]!).filter(Number.isFinite);
    all.push(...paired);
    byComplexity.set(celt.c.complexity, median(paired));
  }
  return { pooled: all.length > 0 ? median(all) : NaN, byComplexity };
}

function buildRows(cands: Candidate[], quality: Map<Candidate, QualityResult>, cpu: Map<Candidate, TimingResult>, check: PipelineCheckRow[]): Row[] {
  const { pooled } = celtRatios(check);
  return cands.map((c) => {
    let t = cpu.get(c);
    let tFrom: string | undefined;
    if (c.celtOnly) {
      const twin = cands.find((x) => x.application === 'restricted-lowdelay' && x.complexity === c.complexity && x.bitrate === c.bitrate);
      const tt = twin ? cpu.get(twin) : undefined;
      // The pipeline measured forced CELT on voip only; audio+celt (a spot check) is left unscaled.
      const k = c.application === 'voip' && Number.isFinite(pooled) ? pooled : 1;
      t = tt ? scaled(tt, k) : undefined;
      tFrom = twin ? `${twin.label} × ${k.toFixed(2)}` : undefined;
    }
    return { c, q: quality.get(c), t, tFrom };
  });
}

const FAMILY_ORDER = ['voip voice', 'voip auto', 'voip+celt', 'audio', 'audio+celt', 'rld'];
function family(c: Candidate): string {
  if (c.celtOnly) return `${APP_SHORT[c.application]}+celt`;
  if (c.application === 'voip') return `voip ${c.signal}`;
  return APP_SHORT[c.application];
}
function rowOrder(r: Row): number[] {
  const br = r.c.bitrate === undefined ? -1 : [24000, 16000, 32000].indexOf(r.c.bitrate);
  return [r.c.predecessor ? 0 : 1, br, FAMILY_ORDER.indexOf(family(r.c)), -r.c.complexity];
}

/** audio and restricted-lowdelay at 16 and 32 kbps: only c0/5/9 in the table (all in the JSON). */
function shownInTable(c: Candidate): boolean {
  return c.predecessor || c.bitrate === 24000 || c.application === 'voip' || [0, 5, 9].includes(c.complexity);
}

function renderTable(rows: Row[], pred: Row): string {
  const lines = [
    '| setting | encode µs/frame median (p99) | CPU µs/frame mean [per run] | rel. CPU vs predecessor | PESQ-WB MOS-LQO mean (min) | bytes/frame | Opus modes |',
    '|---|---|---|---|---|---|---|',
  ];
  const predCpu = pred.t?.cpuMeanUs ?? NaN;
  const sorted = [...rows].sort((a, b) => {
    const x = rowOrder(a);
    const y = rowOrder(b);
    for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return x[i]! - y[i]!;
    return 0;
  });
  for (const r of sorted) {
    if (!shownInTable(r.c)) continue;
    const approx = r.tFrom ? '≈' : '';
    const wall = r.t ? `${approx}${f0(r.t.medianUs)} (${f0(r.t.p99Us)})` : '–';
    const cpu = r.t ? `${approx}${f0(r.t.cpuMeanUs)} [${r.t.runCpuMeans.map(f0).join('/')}]` : '–';
    const rel = r.t ? `${approx}${f2(r.t.cpuMeanUs / predCpu)}` : '–';
    const q = r.q ? `${f2(r.q.mosMean)} (${f2(r.q.mosMin)})` : '–';
    const bytes = r.q ? r.q.bytesPerFrame.toFixed(0) : '–';
    lines.push(`| ${r.c.label} | ${wall} | ${cpu} | ${rel} | ${q} | ${bytes} | ${r.q?.modes ?? '–'} |`);
  }
  return lines.join('\n');
}

interface Recommendation {
  text: string;
  default?: Row;
  ladder: Row[];
}

/** Two-sided 95 % Student t quantiles by degrees of freedom. */
const T95 = [NaN, 12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.16, 2.145, 2.131];

/** Mean of a − b over the utterances both were scored on, and the half-width of its paired 95 % CI. */
function pairedDelta(a: QualityResult, b: QualityResult): { mean: number; half: number } {
  const d = Object.keys(b.perUtterance).filter((k) => a.perUtterance[k] !== undefined).map((k) => a.perUtterance[k]! - b.perUtterance[k]!);
  const n = d.length;
  const mean = d.reduce((x, y) => x + y, 0) / n;
  const sd = Math.sqrt(d.reduce((x, y) => x + (y - mean) ** 2, 0) / Math.max(1, n - 1));
  return { mean, half: ((T95[n - 1] ?? 1.96) * sd) / Math.sqrt(n) };
}
const fmtDelta = (d: { mean: number; half: number }): string => `${d.mean >= 0 ? '+' : '−'}${Math.abs(d.mean).toFixed(2)} ± ${d.half.toFixed(2)}`;

type Scored = Row & { q: QualityResult; t: TimingResult };
const scoredRow = (r: Row): r is Scored => r.q !== undefined && r.t !== undefined;
const cpuOf = (r: Scored): number => r.t.cpuMeanUs;

function recommend(rows: Row[], pred: Row, maxBitrate: number): Recommendation {
  if (!scoredRow(pred)) return { text: 'No recommendation: the predecessor row lacks a score or a timing.', ladder: [] };
  const out: string[] = [];
  const tol = 0.1;
  // Default: the cheapest setting (mean CPU time) that is within 0.1 MOS of the predecessor with 95 %
  // confidence (paired over the utterances: mean Δ − CI half-width ≥ −0.1), among voip/audio
  // settings (the ladder then has CELT to fall back to) at a bitrate <= maxBitrate. Among settings
  // within 5 % of that CPU, the best-scoring; on a tie (< 0.01 MOS), the lower complexity.
  const eligible = rows.filter(scoredRow).filter((r) => !r.c.celtOnly && !r.c.predecessor && !r.c.spot && r.c.application !== 'restricted-lowdelay' && (r.c.bitrate ?? 25000) <= maxBitrate);
  const within = eligible.filter((r) => {
    const d = pairedDelta(r.q, pred.q);
    return d.mean - d.half >= -tol;
  });
  if (within.length === 0) return { text: `No setting at ≤ ${maxBitrate / 1000} kbps is within ${tol} MOS of the predecessor.`, ladder: [] };
  const cheapest = Math.min(...within.map(cpuOf));
  const near = within
    .filter((r) => cpuOf(r) <= cheapest * 1.05)
    .sort((a, b) => (Math.abs(b.q.mosMean - a.q.mosMean) >= 0.01 ? b.q.mosMean - a.q.mosMean : a.c.complexity - b.c.complexity || cpuOf(a) - cpuOf(b)));
  const def = near[0]!;
  out.push(
    `**Default (bitrate ≤ ${maxBitrate / 1000} kbps):** \`${def.c.label}\` — ${f0(cpuOf(def))} µs CPU/frame (${f2(cpuOf(def) / cpuOf(pred))}× the predecessor's ${f0(cpuOf(pred))} µs), ` +
      `PESQ-WB ${f2(def.q.mosMean)} vs predecessor ${f2(pred.q.mosMean)} (paired Δ ${fmtDelta(pairedDelta(def.q, pred.q))}), ${def.q.bytesPerFrame.toFixed(0)} vs ${pred.q.bytesPerFrame.toFixed(0)} bytes/frame. ` +
      `Rule: cheapest voip/audio setting at ≤ ${maxBitrate / 1000} kbps within ${tol} MOS of the predecessor with 95 % confidence (paired over the ${Object.keys(pred.q.perUtterance).length} utterances); among settings within 5 % of that CPU, the best-scoring (ties < 0.01 MOS: lower complexity).`,
  );

  // Ladder: what the pipeline's ladder can change on a stream: complexity and celtOnly, with the
  // default's application, signal and bitrate. Take the CPU/quality Pareto front below 0.9× the
  // default's CPU (a point must beat every cheaper one by > 0.02 MOS), then walk it from expensive
  // to cheap keeping rungs that cut CPU by >= 15 % each, always ending with the cheapest point; at
  // most 5 rungs.
  const familyRows = rows.filter(scoredRow).filter((r) => r.c.application === def.c.application && r.c.bitrate === def.c.bitrate && (r.c.celtOnly || r.c.signal === def.c.signal) && r !== def && !r.c.predecessor && !r.c.spot);
  // Complexities libopus treats alike (e.g. hybrid 4 ≡ 5, 8 ≡ 9 ≡ 10) score the same and differ in
  // CPU only by noise: keep the lowest complexity of such a group (same mode, ≤ 0.005 MOS lower,
  // ≤ 5 % more CPU), so noise does not pick the rung.
  const distinct = familyRows.filter((r) => !familyRows.some((o) => o.c.celtOnly === r.c.celtOnly && o.c.complexity < r.c.complexity && o.q.mosMean >= r.q.mosMean - 0.005 && cpuOf(o) <= cpuOf(r) * 1.05));
  const cheaper = distinct.filter((r) => cpuOf(r) < cpuOf(def) * 0.9).sort((a, b) => cpuOf(a) - cpuOf(b));
  const front: Scored[] = [];
  let bestMos = -Infinity;
  for (const r of cheaper) {
    if (r.q.mosMean > bestMos + 0.02) {
      front.push(r);
      bestMos = r.q.mosMean;
    }
  }
  front.reverse(); // expensive → cheap
  const ladder: Scored[] = [];
  let last = cpuOf(def);
  for (const r of front) {
    if (cpuOf(r) <= last * 0.85) {
      ladder.push(r);
      last = cpuOf(r);
    }
  }
  const cheapestPoint = front[front.length - 1];
  if (cheapestPoint && !ladder.includes(cheapestPoint)) {
    if (ladder.length > 0 && cpuOf(cheapestPoint) > cpuOf(ladder[ladder.length - 1]!) * 0.85) ladder.pop();
    ladder.push(cheapestPoint);
  }
  while (ladder.length > 5) {
    // drop the inner rung that saves the least CPU over its upper neighbour
    let worst = 1;
    let worstRatio = 0;
    for (let i = 1; i < ladder.length - 1; i++) {
      const ratio = cpuOf(ladder[i]!) / cpuOf(ladder[i - 1]!);
      if (ratio > worstRatio) { worstRatio = ratio; worst = i; }
    }
    ladder.splice(worst, 1);
  }
  out.push('');
  out.push('**Ladder** (expensive → cheap; each rung keeps the default\'s application, signal and bitrate, as the pipeline does):');
  out.push('');
  out.push('| rung | { complexity, celtOnly } | CPU µs/frame mean | rel. CPU vs default | PESQ-WB mean (min) | Δ MOS vs default (95 % CI) |');
  out.push('|---|---|---|---|---|---|');
  out.push(`| default | { ${def.c.complexity}, false } | ${f0(cpuOf(def))} | 1.00 | ${f2(def.q.mosMean)} (${f2(def.q.mosMin)}) | – |`);
  ladder.forEach((r, i) => {
    out.push(`| ${i + 1} | { ${r.c.complexity}, ${r.c.celtOnly} } | ${r.tFrom ? '≈' : ''}${f0(cpuOf(r))} | ${f2(cpuOf(r) / cpuOf(def))} | ${f2(r.q.mosMean)} (${f2(r.q.mosMin)}) | ${fmtDelta(pairedDelta(r.q, def.q))} |`);
  });
  out.push('');
  out.push(`Suggested constants: \`DEFAULT_DOWNLINK_ENCODER = { application: '${def.c.application}', complexity: ${def.c.complexity}, bitrate: ${def.c.bitrate}, signal: '${def.c.signal}' }\`, ` +
    `\`DEFAULT_ENCODER_LADDER = [${ladder.map((r) => `{ complexity: ${r.c.complexity}, celtOnly: ${r.c.celtOnly} }`).join(', ')}]\`.`);
  out.push('');
  out.push(`Pareto front considered (${def.c.application}, ${def.c.bitrate} bps, CPU < 0.9× default): ${front.map((r) => `{${r.c.complexity},${r.c.celtOnly}} ${f0(cpuOf(r))} µs ${f2(r.q.mosMean)}`).join('; ') || 'none'}.`);

  // The placeholders in src/native/pipeline.ts, for comparison.
  const find = (app: OpusApplication, complexity: number, celtOnly: boolean, bitrate: number, signal: OpusSignal): Row | undefined =>
    rows.find((r) => r.c.application === app && r.c.complexity === complexity && r.c.celtOnly === celtOnly && r.c.bitrate === bitrate && (celtOnly || r.c.signal === signal) && !r.c.predecessor);
  const d = DEFAULT_DOWNLINK_ENCODER;
  const cur = [find(d.application, d.complexity, false, d.bitrate, d.signal), ...DEFAULT_ENCODER_LADDER.map((g) => find(d.application, g.complexity, g.celtOnly, d.bitrate, d.signal))];
  out.push('');
  out.push(`Current placeholders (src/native/pipeline.ts, ${d.application} ${d.bitrate} bps ${d.signal}): ${cur.map((r, i) => {
    const g = DEFAULT_ENCODER_LADDER[i - 1];
    const name = g === undefined ? `default c${d.complexity}` : `{${g.complexity},${g.celtOnly}}`;
    return r && scoredRow(r) ? `${name} ${f0(cpuOf(r))} µs ${f2(r.q.mosMean)}` : `${name} not measured`;
  }).join('; ')}.`);
  return { text: out.join('\n'), default: def, ladder };
}

// ---------------------------------------------------------------------------------------------
// --codec both: our libopus against 1.3.1 at the settings the gateway uses

interface ComparisonPair {
  role: string;
  ours: Candidate;
  old: Candidate;
}

/**
 * The predecessor's setting, the gateway's default and every ladder rung, each by both encoders in
 * the same framing: whole 60 ms opus_encode calls, except forced CELT, which only our pipeline can
 * set and which it codes in 20 ms parts (the 1.3.1 side is then coded in the same parts). Then the
 * default and the hybrid rungs once more as the gateway really codes them (through the pipeline, in
 * parts when the frame is hybrid), against 1.3.1 in whole 60 ms frames.
 */
function comparisonPairs(): ComparisonPair[] {
  const d = DEFAULT_DOWNLINK_ENCODER;
  const settings: { role: string; c: Parameters<typeof cand>[0] }[] = [
    { role: 'predecessor', c: { application: 'audio', celtOnly: false, complexity: 9, bitrate: undefined, signal: 'auto', predecessor: true } },
    { role: 'default', c: { application: d.application, celtOnly: false, complexity: d.complexity, bitrate: d.bitrate, signal: d.signal } },
    // A rung keeps the stream's application and signal; its bitrate replaces the stream's when set.
    ...DEFAULT_ENCODER_LADDER.map((r, i) => ({
      role: `rung ${i + 1}`,
      c: { application: d.application, celtOnly: r.celtOnly, complexity: r.complexity, bitrate: r.bitrate ?? d.bitrate, signal: d.signal },
    })),
  ];
  const pairs: ComparisonPair[] = settings.map(({ role, c }) => ({ role, ours: { ...cand(c), role }, old: { ...cand({ ...c, libopus: '1.3.1' }), role } }));
  for (const p of [...pairs]) {
    if (p.ours.predecessor || p.ours.celtOnly) continue;
    pairs.push({ role: `${p.role}, as the gateway codes it`, ours: { ...p.ours, viaPipeline: true, role: `${p.role} (pipeline)` }, old: p.old });
  }
  return pairs;
}

function meanCi(xs: number[]): { mean: number; half: number } {
  const n = xs.length;
  const mean = xs.reduce((a, x) => a + x, 0) / n;
  const sd = Math.sqrt(xs.reduce((a, x) => a + (x - mean) ** 2, 0) / Math.max(1, n - 1));
  return { mean, half: ((T95[n - 1] ?? 1.96) * sd) / Math.sqrt(n) };
}

function discordOpusVersion(): string {
  try {
    return (JSON.parse(readFileSync(join(packageRoot, 'node_modules', '@discordjs', 'opus', 'package.json'), 'utf8')) as { version: string }).version;
  } catch {
    return '?';
  }
}

const framing = (q: QualityResult): string => (q.partsShare === 0 ? '60 ms' : `20 ms parts ${Math.round(q.partsShare * 100)}%`);

async function compareLibopus(speech: Speech[], seconds: number, args: Args): Promise<void> {
  const pairs = comparisonPairs();
  const cands = [...new Set(pairs.flatMap((p) => [p.ours, p.old]))];
  const ours = opusVersion();
  const v = ours.replace('libopus ', '');
  const cpuModel = cpus()[0]?.model ?? '?';
  console.error(`[compare] ${speech.length} utterances, ${seconds.toFixed(1)} s of speech; ${cands.length} encodings; ours ${ours}, @discordjs/opus ${discordOpusVersion()} (libopus 1.3.1); decoder: ours`);
  const packets = new Map<Candidate, Buffer[]>();
  const quality = await measureQuality(cands, speech, args.keepAudio, packets);
  const lines = [
    `Speech: ${speech.length} TTS utterances, ${seconds.toFixed(1)} s at 24 kHz mono, 60 ms frames. Encoders: ours (${ours}) and @discordjs/opus ${discordOpusVersion()} (libopus 1.3.1), same settings; decoder: ours for both, at 24 kHz. Score: PESQ-WB (P.862.2) MOS-LQO per utterance. ± = 95 % CI (Student t over the ${speech.length} utterances; Δ paired by utterance). Machine: ${cpuModel} x${cpus().length}, node ${process.version}.`,
    '',
    `| role | setting | PESQ-WB ${v} mean ± CI (min) | PESQ-WB 1.3.1 mean ± CI (min) | Δ (${v} − 1.3.1) | verdict | bytes/frame ${v} / 1.3.1 | identical packets | framing ${v} / 1.3.1 | Opus modes ${v} / 1.3.1 |`,
    '|---|---|---|---|---|---|---|---|---|---|',
  ];
  const rows: unknown[] = [];
  const losses: string[] = [];
  for (const { role, ours: a, old: b } of pairs) {
    const qa = quality.get(a)!;
    const qb = quality.get(b)!;
    const ca = meanCi(Object.values(qa.perUtterance));
    const cb = meanCi(Object.values(qb.perUtterance));
    const d = pairedDelta(qa, qb);
    const loss = d.mean + d.half < 0;
    const verdict = loss ? '**loss** (beyond the CI)' : d.mean - d.half > 0 ? 'gain (beyond the CI)' : 'same within the CI';
    if (loss) losses.push(`${role} (${fmtDelta(d)})`);
    const pa = packets.get(a)!;
    const pb = packets.get(b)!;
    const same = pa.filter((p, k) => pb[k] !== undefined && p.equals(pb[k]!)).length;
    const name = a.label.replace(' **predecessor**', '');
    lines.push(`| ${role} | ${name} | ${f2(ca.mean)} ± ${f2(ca.half)} (${f2(qa.mosMin)}) | ${f2(cb.mean)} ± ${f2(cb.half)} (${f2(qb.mosMin)}) | ${fmtDelta(d)} | ${verdict} | ${qa.bytesPerFrame.toFixed(1)} / ${qb.bytesPerFrame.toFixed(1)} | ${same}/${pa.length} | ${framing(qa)} / ${framing(qb)} | ${qa.modes} / ${qb.modes} |`);
    rows.push({ role, setting: name, ours: qa, libopus131: qb, delta: d, identicalPackets: same, packets: pa.length });
  }
  lines.push('');
  lines.push(losses.length === 0
    ? 'No setting loses against 1.3.1 beyond the 95 % CI.'
    : `LOSS against 1.3.1 beyond the 95 % CI: ${losses.join('; ')}.`);
  console.log(lines.join('\n'));
  writeFileSync(args.json, JSON.stringify({ machine: { cpu: cpuModel, cores: cpus().length, node: process.version, opus: ours, baseline: `@discordjs/opus ${discordOpusVersion()}` }, speechSeconds: seconds, rows }, null, 1));
  console.error(`[compare] JSON: ${args.json}`);
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  mkdirSync(CACHE, { recursive: true });
  const speech = renderSpeech();
  const seconds = speech.reduce((a, s) => a + s.pcm.length, 0) / RATE;
  if (args.codec === 'both') return compareLibopus(speech, seconds, args);
  const cands = candidates(args.quick);
  const cpuModel = cpus()[0]?.model ?? '?';
  const load0 = loadavg();
  console.error(`[study] ${speech.length} utterances, ${seconds.toFixed(1)} s of speech; ${cands.length} settings; ${opusVersion()}; ${cpuModel} x${cpus().length}; node ${process.version}`);

  const quality = args.quality ? await measureQuality(cands, speech, args.keepAudio) : new Map<Candidate, QualityResult>();
  const frames = speechFrames(speech);
  const cpu = args.timing ? measureCpu(cands, frames, args) : new Map<Candidate, TimingResult>();
  const check = args.pipelineCheck ? await pipelineCheck(frames, args.quick ? [0, 5, 9] : ALL_COMPLEXITIES, Math.max(5, args.runs + 2)) : [];
  const load1 = loadavg();

  const rows = buildRows(cands, quality, cpu, check);
  const pred = rows.find((r) => r.c.predecessor)!;
  const table = renderTable(rows, pred);
  const recs = [recommend(rows, pred, 25000), ...(args.quick ? [] : [recommend(rows, pred, 32000)])];

  const out: string[] = [];
  out.push(`Speech: ${speech.length} TTS utterances (${UTTERANCES.map((u) => `${u.tool} ${u.voice}`).join(', ')}), ${seconds.toFixed(1)} s at 24 kHz mono, 60 ms frames (1440 samples). Score: PESQ-WB (P.862.2) MOS-LQO, 16 kHz, per utterance.`);
  out.push(`Machine: ${cpuModel} x${cpus().length}, node ${process.version}, ${opusVersion()}; load average ${load0.map(f2).join(' ')} at start, ${load1.map(f2).join(' ')} at end. CPU: ${args.runs} runs x ${Math.ceil((args.frames > 0 ? args.frames : frames.length) / args.block) * args.block} frames per setting, interleaved in shuffled blocks of ${args.block}.`);
  out.push('');
  out.push(table);
  out.push('');
  out.push('Wall: hrtime around each encode() call, pooled over runs. CPU: process CPU time (getrusage) per block of frames, summed — what a threadpool worker spends; "[per run]" shows the spread. Relative CPU and the recommendation use the CPU mean. ≈: forced-CELT rows are restricted-lowdelay timings scaled by the pipeline ratio below. audio and rld at 16/32 kbps: c0/5/9 shown (every complexity is in the JSON).');
  if (check.length > 0) {
    out.push('');
    const ratios = celtRatios(check);
    out.push(`Pipeline check (one downlink stream, one worker, ${PIPELINE_FRAMES} frames per measurement, 24 kbps; process CPU µs per frame incl. AES and dispatch; median over rounds [min–max]; ratio = median of the per-round paired ratios). Pooled voip+celt / rld ratio used for the ≈ rows: **${f2(ratios.pooled)}**.`);
    out.push('');
    out.push('| complexity | rld CPU | voip+celt CPU | voip+celt / rld | voip hybrid CPU | voip hybrid wall |');
    out.push('|---|---|---|---|---|---|');
    const cs = [...new Set(check.map((r) => r.c.complexity))].sort((a, b) => b - a);
    for (const c of cs) {
      const pick = (app: OpusApplication, celt: boolean): PipelineCheckRow | undefined => check.find((r) => r.c.complexity === c && r.c.application === app && r.c.celtOnly === celt);
      const rld = pick('restricted-lowdelay', false);
      const celt = pick('voip', true);
      const hyb = pick('voip', false);
      const cell = (xs: number[] | undefined): string => (xs && xs.length > 0 ? `${f0(median(xs))} [${f0(Math.min(...xs))}–${f0(Math.max(...xs))}]` : '–');
      out.push(`| ${c} | ${cell(rld?.cpuUs)} | ${cell(celt?.cpuUs)} | ${f2(ratios.byComplexity.get(c) ?? NaN)} | ${cell(hyb?.cpuUs)} | ${cell(hyb?.wallUs)} |`);
    }
  }
  out.push('');
  out.push(recs.map((r) => r.text).join('\n\n'));
  console.log(out.join('\n'));

  writeFileSync(args.json, JSON.stringify({
    machine: { cpu: cpuModel, cores: cpus().length, node: process.version, opus: opusVersion(), load: [load0, load1] },
    args,
    speechSeconds: seconds,
    rows: rows.map((r) => ({ ...r.c, quality: r.q, cpu: r.t, cpuFrom: r.tFrom })),
    pipelineCheck: check.map((r) => ({ label: r.c.label, wallUs: r.wallUs, cpuUs: r.cpuUs })),
    recommendations: recs.map((rec) => ({ default: rec.default?.c.label, ladder: rec.ladder.map((r) => ({ complexity: r.c.complexity, celtOnly: r.c.celtOnly, label: r.c.label })) })),
  }, null, 1));
  console.error(`[study] JSON: ${args.json}`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
