// Inputs of the pipeline benchmark: what devices and LiveKit deliver.
//  * Uplink: the 16 kHz speech fixture encoded like an ESP32 (Opus VOIP, 60 ms, auto bitrate),
//    wrapped in the device's header and encrypted with the header as the AES-CTR IV (PROTOCOL.md
//    §3.1), with sequences 1, 2, 3... Built before the run for every stream (own key and ssrc).
//  * Downlink: the 48 kHz speech fixture as 10 ms Float32 chunks (what an AudioStream delivers).
import { createDecipheriv, createHash } from 'node:crypto';
import { AesCtr, OpusDecoder, OpusEncoder, Resampler } from '../../src/index.js';
import { frames, speech, toFloat32, type Speech } from '../micro/fixtures.js';

export const CHUNK_SAMPLES = 480;  // 10 ms at 48 kHz
export const CHUNKS_PER_FRAME = 6;  // one 60 ms device frame
export const TICK_MS = 10;
export const FRAME_MS = 60;

export interface StreamCredentials {
  key: Uint8Array;
  nonce: Uint8Array;
  ssrc: number;
}

/** Deterministic per-stream key and conventional nonce `01 00 0000 <ssrc> 00000000 00000000`. */
export function credentials(stream: number): StreamCredentials {
  const key = new Uint8Array(createHash('sha256').update(`xiaozhi-bench-key-${stream}`).digest().subarray(0, 16));
  const ssrc = (0x5a000000 + stream * 2654435761) >>> 0;
  const nonce = new Uint8Array(16);
  nonce[0] = 0x01;
  new DataView(nonce.buffer).setUint32(4, ssrc);
  return { key, nonce, ssrc };
}

let uplinkCache: { packets: Uint8Array[]; speech: Speech } | undefined;

/** The 16 kHz fixture as device Opus packets (VOIP, complexity 3, auto bitrate ≈ 17 kbit/s). */
export function uplinkPackets(): { packets: Uint8Array[]; speech: Speech } {
  if (uplinkCache) return uplinkCache;
  const sp = speech(16000);
  const enc = new OpusEncoder({ sampleRate: 16000, channels: 1, application: 'voip', complexity: 3 });
  const packets = frames(sp.samples, 960).map((f) => new Uint8Array(enc.encode(f)));
  enc.close();
  uplinkCache = { packets, speech: sp };
  return uplinkCache;
}

/** `count` datagrams of one device: sequences 1..count, Opus packets from `offset` on (cycling). */
export function deviceDatagrams(cred: StreamCredentials, count: number, offset: number): Uint8Array[] {
  const { packets } = uplinkPackets();
  const aes = new AesCtr(cred.key);
  const out: Uint8Array[] = [];
  for (let i = 0; i < count; i++) {
    const p = packets[(offset + i) % packets.length]!;
    const d = new Uint8Array(16 + p.length);
    const v = new DataView(d.buffer);
    d[0] = cred.nonce[0]!;
    d[1] = cred.nonce[1]!;
    v.setUint16(2, p.length);
    v.setUint32(4, cred.ssrc);
    v.setUint32(8, 0);
    v.setUint32(12, i + 1);
    aes.crypt(d.subarray(0, 16), p, d.subarray(16));
    out.push(d);
  }
  aes.close();
  return out;
}

let downCache: { chunks: Float32Array[]; speech: Speech } | undefined;

/** The 48 kHz fixture as 10 ms Float32 chunks. */
export function downlinkChunks(): { chunks: Float32Array[]; speech: Speech } {
  if (downCache) return downCache;
  const sp = speech(48000);
  downCache = { chunks: frames(sp.samples, CHUNK_SAMPLES).map(toFloat32), speech: sp };
  return downCache;
}

/** The whole 48 kHz fixture as Float32, cut to whole 60 ms frames (for the tight loop). */
export function downlinkPcm(framesWanted: number): Float32Array {
  const { chunks } = downlinkChunks();
  const out = new Float32Array(framesWanted * CHUNKS_PER_FRAME * CHUNK_SAMPLES);
  for (let c = 0; c < framesWanted * CHUNKS_PER_FRAME; c++) out.set(chunks[c % chunks.length]!, c * CHUNK_SAMPLES);
  return out;
}

export { speech };

/** PCM parts joined into the bytes of one raw s16 file (what PESQ scoring reads). */
export function s16Bytes(parts: Int16Array[]): Uint8Array {
  const out = new Int16Array(parts.reduce((a, p) => a + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return new Uint8Array(out.buffer);
}

/**
 * Downlink datagrams as a device hears them: decrypted (the header is the AES-CTR IV), decoded by
 * libopus at 24 kHz (a missing datagram, `undefined`, is concealed), then resampled to 16 kHz for
 * wideband PESQ. Returns the 16 kHz chunks, the resampler's tail last.
 */
/** A device's decryption: AES-128-CTR over the payload, the 16 header bytes are the IV (PROTOCOL.md §3.1). */
export function decryptDatagram(key: Uint8Array, datagram: Uint8Array): Buffer {
  const decipher = createDecipheriv('aes-128-ctr', key, datagram.subarray(0, 16));
  return Buffer.concat([decipher.update(datagram.subarray(16)), decipher.final()]);
}

export function decodeLikeDevice(key: Uint8Array, datagrams: readonly (Uint8Array | undefined)[]): Int16Array[] {
  const dec = new OpusDecoder({ sampleRate: 24000, channels: 1 });
  const rs = new Resampler({ inputRate: 24000, outputRate: 16000 });
  const out: Int16Array[] = [];
  for (const d of datagrams) {
    let pcm: Int16Array;
    if (d) {
      pcm = dec.decode(decryptDatagram(key, d));
    } else {
      pcm = dec.decode(null, { frameSize: 1440 });
    }
    out.push(rs.process(pcm));
  }
  out.push(rs.flush());
  return out;
}
