import { native } from './addon.js';
import {
  expectBoolean,
  expectInteger,
  expectOneOf,
  expectOptions,
  expectTypedArray,
  rangeError,
  rejectUnknownKeys,
} from './errors.js';

export const OPUS_SAMPLE_RATES = [8000, 12000, 16000, 24000, 48000] as const;
export type OpusSampleRate = (typeof OPUS_SAMPLE_RATES)[number];
export type OpusApplication = 'voip' | 'audio' | 'restricted-lowdelay';
export type OpusBandwidth = 'narrowband' | 'mediumband' | 'wideband' | 'superwideband' | 'fullband';
export type OpusSignal = 'auto' | 'voice' | 'music';

const APPLICATIONS: readonly OpusApplication[] = ['voip', 'audio', 'restricted-lowdelay'];
const BANDWIDTHS: readonly OpusBandwidth[] = ['narrowband', 'mediumband', 'wideband', 'superwideband', 'fullband'];
const SIGNALS: readonly OpusSignal[] = ['auto', 'voice', 'music'];
/** Frame durations Opus accepts, in ms. */
export const OPUS_FRAME_DURATIONS_MS = [2.5, 5, 10, 20, 40, 60] as const;

export interface OpusEncoderOptions {
  sampleRate: OpusSampleRate;
  channels: 1 | 2;
  application: OpusApplication;
  /** bits/s in [500, 512000]; default: libopus chooses from rate and channels. */
  bitrate?: number;
  /** 0..10, default 10 (libopus default). */
  complexity?: number;
  /** Variable bitrate (default true); false = CBR. */
  vbr?: boolean;
  /** Constrained VBR (default true, the libopus default). */
  vbrConstraint?: boolean;
  /** In-band forward error correction (default false). */
  inbandFec?: boolean;
  /** Expected packet loss 0..100 (default 0); tunes FEC. */
  packetLossPercent?: number;
  /** Discontinuous transmission (default false). */
  dtx?: boolean;
  maxBandwidth?: OpusBandwidth;
  signal?: OpusSignal;
}

const ENCODER_KEYS = [
  'sampleRate', 'channels', 'application', 'bitrate', 'complexity', 'vbr', 'vbrConstraint',
  'inbandFec', 'packetLossPercent', 'dtx', 'maxBandwidth', 'signal',
] as const;

function expectRate(name: string, value: unknown): OpusSampleRate {
  const rate = expectInteger(name, value, 1, 384000);
  if (!(OPUS_SAMPLE_RATES as readonly number[]).includes(rate)) {
    throw rangeError('ERR_OUT_OF_RANGE', `${name}: expected one of ${OPUS_SAMPLE_RATES.join(', ')}, got ${rate}`);
  }
  return rate as OpusSampleRate;
}

/** Samples per channel of every valid Opus frame at `sampleRate`. */
export function opusFrameSizes(sampleRate: OpusSampleRate): number[] {
  const rate = expectRate('sampleRate', sampleRate);
  return OPUS_FRAME_DURATIONS_MS.map((ms) => (rate * ms) / 1000);
}

function expectFrame(name: string, samplesPerChannel: number, sampleRate: OpusSampleRate): void {
  const sizes = opusFrameSizes(sampleRate);
  if (!sizes.includes(samplesPerChannel)) {
    throw rangeError(
      'ERR_OPUS_FRAME',
      `${name}: expected a frame of ${sizes.join(', ')} samples per channel (2.5–60 ms at ${sampleRate} Hz), got ${samplesPerChannel}`,
    );
  }
}

export class OpusEncoder {
  readonly sampleRate: OpusSampleRate;
  readonly channels: 1 | 2;
  readonly application: OpusApplication;
  #complexity: number;
  #impl: InstanceType<typeof native.NativeOpusEncoder>;

  constructor(options: OpusEncoderOptions) {
    const o = expectOptions('options', options);
    rejectUnknownKeys('OpusEncoder options', o, ENCODER_KEYS);
    this.sampleRate = expectRate('options.sampleRate', o.sampleRate);
    this.channels = expectInteger('options.channels', o.channels, 1, 2) as 1 | 2;
    this.application = expectOneOf('options.application', o.application, APPLICATIONS);
    const n: Record<string, number | boolean> = {
      sampleRate: this.sampleRate,
      channels: this.channels,
      application: APPLICATIONS.indexOf(this.application),
    };
    if (o.bitrate !== undefined) n.bitrate = expectInteger('options.bitrate', o.bitrate, 500, 512000);
    this.#complexity = o.complexity === undefined ? 10 : expectInteger('options.complexity', o.complexity, 0, 10);
    n.complexity = this.#complexity;
    if (o.vbr !== undefined) n.vbr = expectBoolean('options.vbr', o.vbr);
    if (o.vbrConstraint !== undefined) n.vbrConstraint = expectBoolean('options.vbrConstraint', o.vbrConstraint);
    if (o.inbandFec !== undefined) n.inbandFec = expectBoolean('options.inbandFec', o.inbandFec);
    if (o.packetLossPercent !== undefined) n.packetLossPercent = expectInteger('options.packetLossPercent', o.packetLossPercent, 0, 100);
    if (o.dtx !== undefined) n.dtx = expectBoolean('options.dtx', o.dtx);
    if (o.maxBandwidth !== undefined) n.maxBandwidth = BANDWIDTHS.indexOf(expectOneOf('options.maxBandwidth', o.maxBandwidth, BANDWIDTHS));
    if (o.signal !== undefined) n.signal = SIGNALS.indexOf(expectOneOf('options.signal', o.signal, SIGNALS));
    this.#impl = new native.NativeOpusEncoder(n);
  }

  /** Encodes one frame (2.5–60 ms, interleaved if stereo) into one Opus packet. */
  encode(pcm: Int16Array): Buffer {
    expectTypedArray('pcm', pcm, Int16Array);
    if (pcm.length % this.channels !== 0) {
      throw rangeError('ERR_OPUS_FRAME', `pcm: length ${pcm.length} is not a multiple of ${this.channels} channels`);
    }
    expectFrame('pcm', pcm.length / this.channels, this.sampleRate);
    return this.#impl.encode(pcm);
  }

  get complexity(): number {
    return this.#complexity;
  }

  /** Takes effect from the next frame. */
  setComplexity(complexity: number): void {
    this.#impl.setComplexity(expectInteger('complexity', complexity, 0, 10));
    this.#complexity = complexity;
  }

  /** bits/s in [500, 512000]; takes effect from the next frame. */
  setBitrate(bitrate: number): void {
    this.#impl.setBitrate(expectInteger('bitrate', bitrate, 500, 512000));
  }

  reset(): void {
    this.#impl.reset();
  }

  close(): void {
    this.#impl.close();
  }
}

export interface OpusDecoderOptions {
  sampleRate: OpusSampleRate;
  channels: 1 | 2;
}

export interface OpusDecodeOptions {
  /** Recover the frame *before* `packet` from its in-band FEC data (the previous packet was lost). */
  fec?: boolean;
  /** Samples per channel of the lost frame for PLC/FEC; default: the last decoded frame's size. */
  frameSize?: number;
}

export class OpusDecoder {
  readonly sampleRate: OpusSampleRate;
  readonly channels: 1 | 2;
  #impl: InstanceType<typeof native.NativeOpusDecoder>;

  constructor(options: OpusDecoderOptions) {
    const o = expectOptions('options', options);
    rejectUnknownKeys('OpusDecoder options', o, ['sampleRate', 'channels']);
    this.sampleRate = expectRate('options.sampleRate', o.sampleRate);
    this.channels = expectInteger('options.channels', o.channels, 1, 2) as 1 | 2;
    this.#impl = new native.NativeOpusDecoder(this.sampleRate, this.channels);
  }

  /**
   * Decodes one packet. `null` means the packet was lost: packet loss concealment produces one
   * frame. With `{ fec: true }` the packet's FEC data recovers the frame before it.
   * A corrupt packet throws a RangeError with code ERR_OPUS_DECODE; the decoder stays usable.
   */
  decode(packet: Uint8Array | null, options?: OpusDecodeOptions): Int16Array {
    let fec = false;
    let frameSize = 0;
    if (options !== undefined) {
      const o = expectOptions('options', options);
      rejectUnknownKeys('decode options', o, ['fec', 'frameSize']);
      if (o.fec !== undefined) fec = expectBoolean('options.fec', o.fec);
      if (o.frameSize !== undefined) {
        frameSize = expectInteger('options.frameSize', o.frameSize, 1, 5760);
        expectFrame('options.frameSize', frameSize, this.sampleRate);
      }
    }
    if (packet === null) {
      if (fec) throw rangeError('ERR_OUT_OF_RANGE', 'options.fec: FEC needs the packet after the lost one, got null');
    } else {
      expectTypedArray('packet', packet, Uint8Array, '(or Buffer), or null for a lost packet');
      if (packet.length === 0 || packet.length > 4000) {
        throw rangeError('ERR_OPUS_DECODE', `packet: expected 1..4000 bytes, got ${packet.length}`);
      }
    }
    return this.#impl.decode(packet, fec, frameSize);
  }

  /** Samples per channel of the last decoded frame. */
  get lastFrameSize(): number {
    return this.#impl.lastFrameSize;
  }

  reset(): void {
    this.#impl.reset();
  }

  close(): void {
    this.#impl.close();
  }
}
