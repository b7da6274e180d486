// The native audio stages as one deterministic task, run by test/worker.test.ts in worker threads
// (through the COMPILED package, dist/) and on the main thread (through src/): `gw` is the package
// module. The same input gives the same output in every thread.

export function runTask(gw, input) {
  const { pcm16k, key, ivs, payloads, floats, nonce } = input;
  const out = {};

  // Opus uplink-like: 16 kHz mono voip 60 ms, encode + decode (+ one PLC frame)
  const enc = new gw.OpusEncoder({ sampleRate: 16000, channels: 1, application: 'voip' });
  const dec = new gw.OpusDecoder({ sampleRate: 16000, channels: 1 });
  const packets = [];
  const decoded = [];
  for (let f = 0; f + 960 <= pcm16k.length; f += 960) {
    const p = enc.encode(pcm16k.subarray(f, f + 960));
    packets.push(new Uint8Array(p));
    decoded.push(dec.decode(p));
  }
  decoded.push(dec.decode(null));
  enc.close();
  dec.close();
  out.packets = packets;
  out.decoded = concat16(decoded);

  // AES-CTR with one instance over many IVs, in place and not
  const aes = new gw.AesCtr(key);
  out.cipher = payloads.map((p, i) => (i % 2 === 0 ? aes.crypt(ivs[i], p) : aes.crypt(ivs[i], Uint8Array.from(p), undefined)));
  aes.close();

  // conversions at every SIMD level
  out.s16 = {};
  for (const level of gw.supportedSimdLevels()) out.s16[level] = gw.f32ToS16(floats, undefined, level);
  out.f32 = gw.s16ToF32(pcm16k.subarray(0, 4000));

  // resampling 16 -> 48 kHz
  const rs = new gw.Resampler({ inputRate: 16000, outputRate: 48000 });
  out.resampled = concat16([rs.process(pcm16k.subarray(0, 8000)), rs.process(pcm16k.subarray(8000, 16000)), rs.flush()]);
  rs.close();

  // downlink headers
  const iv = new gw.packet.DownlinkIv(nonce);
  out.headers = payloads.map((p, i) => new Uint8Array(iv.next(p.length, i * 60)));
  return out;
}

/** A loop that keeps the addon busy until the thread is terminated. */
export function busyLoop(gw, input, onStarted) {
  const enc = new gw.OpusEncoder({ sampleRate: 16000, channels: 1, application: 'voip' });
  const dec = new gw.OpusDecoder({ sampleRate: 16000, channels: 1 });
  const aes = new gw.AesCtr(input.key);
  let n = 0;
  for (;;) {
    const frame = input.pcm16k.subarray((n * 960) % (input.pcm16k.length - 960), ((n * 960) % (input.pcm16k.length - 960)) + 960);
    const p = enc.encode(frame);
    aes.crypt(input.ivs[0], p, p);
    aes.crypt(input.ivs[0], p, p);
    dec.decode(p);
    gw.f32ToS16(input.floats);
    if (++n === 5) onStarted();
  }
}

function concat16(parts) {
  const out = new Int16Array(parts.reduce((s, p) => s + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}
