// One device session of the predecessor gateway, rebuilt for side-by-side benchmarks: every
// per-frame stage in JavaScript or in the npm packages the predecessor used, exactly as it called
// them. Runs inside a pool worker (bench/baseline/worker.ts) and, for the speech-quality study, on
// the main thread (same code, so the quality measured is the quality the pool produces).
//
//  uplink:   datagram -> header checks (JS Buffer reads) -> createDecipheriv('aes-128-ctr') per
//            packet -> @discordjs/opus decode at 16 kHz -> @livekit/rtc-node AudioResampler
//            16k -> 48k (MEDIUM) -> Int16 PCM for AudioSource.captureFrame
//  downlink: 10 ms Float32 chunk at 48 kHz -> JS Float32 -> Int16 loop (new Int16Array per chunk)
//            -> AudioResampler 48k -> 24k (MEDIUM) -> accumulate 60 ms -> @discordjs/opus encode
//            (its defaults) -> header + createCipheriv('aes-128-ctr') per packet -> datagram
//
// Settings, from the packages' sources:
//  * @discordjs/opus 0.10.0 `new OpusEncoder(rate, 1)` (src/node-opus.cc): OPUS_APPLICATION_AUDIO
//    and no CTL at all, so libopus 1.3.1 defaults hold: bitrate OPUS_AUTO (60*Fs/frame + Fs =
//    25 kbit/s for 60 ms at 24 kHz mono), complexity 9, constrained VBR, fullband, signal auto.
//  * @livekit/rtc-node AudioResampler: quality MEDIUM, the constructor's default (a predecessor
//    writing `new AudioResampler(16000, 48000)` got MEDIUM; nothing suggests it chose another).
import { createCipheriv, createDecipheriv } from 'node:crypto';
import { createRequire } from 'node:module';
import type { OpusEncoder as DiscordOpusEncoder } from '@discordjs/opus';
import type { AudioFrame as LkAudioFrame, AudioResampler as LkAudioResampler } from '@livekit/rtc-node';

const require = createRequire(import.meta.url);

export const UPLINK_RATE = 16000;
export const LIVEKIT_RATE = 48000;
export const DEVICE_DOWNLINK_RATE = 24000;
export const FRAME_MS = 60;
const HEADER = 16;

export interface BaselineLibs {
  OpusEncoder: typeof DiscordOpusEncoder;
  AudioFrame: typeof LkAudioFrame;
  AudioResampler: typeof LkAudioResampler;
  /** AudioResamplerQuality.MEDIUM */
  quality: number;
}

/** Loads the predecessor's native packages (in whichever thread calls it). */
export async function loadBaselineLibs(): Promise<BaselineLibs> {
  const lk = await import('@livekit/rtc-node');
  const opus = require('@discordjs/opus') as typeof import('@discordjs/opus');
  return { OpusEncoder: opus.OpusEncoder, AudioFrame: lk.AudioFrame, AudioResampler: lk.AudioResampler, quality: lk.AudioResamplerQuality.MEDIUM };
}

/** The predecessor's conversion: clamp, scale by 32768/32767, store (Int16Array truncates). */
export function jsF32ToS16(input: Float32Array): Int16Array {
  const out = new Int16Array(input.length);
  for (let i = 0; i < input.length; i++) {
    const s = Math.max(-1, Math.min(1, input[i]!));
    out[i] = s < 0 ? s * 0x8000 : s * 0x7fff;
  }
  return out;
}

export interface DownlinkOut {
  datagram: Buffer;
  /** 0-based index of the 60 ms frame in this session's downlink. */
  frame: number;
}

export class BaselineSession {
  readonly key: Buffer;
  readonly nonce: Buffer;
  #libs: BaselineLibs;
  #decoder: DiscordOpusEncoder;
  #encoder: DiscordOpusEncoder;
  #upResampler: LkAudioResampler;
  #downResampler: LkAudioResampler;
  #lastUpSeq = 0;
  #frame = new Int16Array((DEVICE_DOWNLINK_RATE / 1000) * FRAME_MS);
  #filled = 0;
  #downSeq = 0;
  #downFrames = 0;

  constructor(libs: BaselineLibs, key: Uint8Array, nonce: Uint8Array) {
    this.#libs = libs;
    this.key = Buffer.from(key);
    this.nonce = Buffer.from(nonce);
    this.#decoder = new libs.OpusEncoder(UPLINK_RATE, 1);
    this.#encoder = new libs.OpusEncoder(DEVICE_DOWNLINK_RATE, 1);
    this.#upResampler = new libs.AudioResampler(UPLINK_RATE, LIVEKIT_RATE, 1, libs.quality);
    this.#downResampler = new libs.AudioResampler(LIVEKIT_RATE, DEVICE_DOWNLINK_RATE, 1, libs.quality);
  }

  /** One received datagram -> 48 kHz Int16 PCM (one or more LiveKit frames' worth), or null if rejected. */
  uplink(datagram: Uint8Array): Int16Array[] | null {
    const d = Buffer.from(datagram.buffer, datagram.byteOffset, datagram.byteLength);
    if (d.length < HEADER || d[0] !== 0x01) return null;
    const len = d.readUInt16BE(2);
    if (len !== d.length - HEADER) return null;
    const seq = d.readUInt32BE(12);
    if (seq <= this.#lastUpSeq) return null;
    const decipher = createDecipheriv('aes-128-ctr', this.key, d.subarray(0, HEADER));
    const opus = Buffer.concat([decipher.update(d.subarray(HEADER)), decipher.final()]);
    let pcm16k: Buffer;
    try {
      pcm16k = this.#decoder.decode(opus);
    } catch {
      return null;
    }
    this.#lastUpSeq = seq;
    // AudioFrame hands its whole ArrayBuffer to the FFI: give it one of its own.
    const samples = new Int16Array(pcm16k.length >> 1);
    new Uint8Array(samples.buffer).set(pcm16k);
    const { AudioFrame } = this.#libs;
    const out = this.#upResampler.push(new AudioFrame(samples, UPLINK_RATE, 1, samples.length));
    return out.map((f) => f.data);
  }

  /** One 10 ms Float32 chunk at 48 kHz -> the datagrams of the 60 ms frames it completes (usually 0 or 1). */
  downlink(chunk: Float32Array): DownlinkOut[] {
    const s16 = jsF32ToS16(chunk);
    const { AudioFrame } = this.#libs;
    const frames = this.#downResampler.push(new AudioFrame(s16, LIVEKIT_RATE, 1, s16.length));
    const out: DownlinkOut[] = [];
    for (const f of frames) {
      let data = f.data.subarray(0, f.samplesPerChannel);
      while (data.length > 0) {
        const take = Math.min(data.length, this.#frame.length - this.#filled);
        this.#frame.set(data.subarray(0, take), this.#filled);
        this.#filled += take;
        data = data.subarray(take);
        if (this.#filled === this.#frame.length) {
          out.push({ datagram: this.#encodeFrame(), frame: this.#downFrames++ });
          this.#filled = 0;
        }
      }
    }
    return out;
  }

  #encodeFrame(): Buffer {
    const opus = this.#encoder.encode(Buffer.from(this.#frame.buffer, this.#frame.byteOffset, this.#frame.byteLength));
    // Header = the session nonce with payload length, timestamp and sequence filled in; it is the IV.
    const header = Buffer.from(this.nonce);
    header.writeUInt16BE(opus.length, 2);
    this.#downSeq++;
    header.writeUInt32BE((this.#downSeq * FRAME_MS) >>> 0, 8);
    header.writeUInt32BE(this.#downSeq >>> 0, 12);
    const cipher = createCipheriv('aes-128-ctr', this.key, header);
    return Buffer.concat([header, cipher.update(opus), cipher.final()]);
  }

  close(): void {
    this.#upResampler.close();
    this.#downResampler.close();
  }
}
