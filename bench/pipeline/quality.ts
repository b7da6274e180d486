// Speech quality of the downlink chains, for the quality target: the 48 kHz speech fixture through
// each chain as 10 ms chunks, the datagrams decrypted and decoded like a device (libopus, 24 kHz),
// resampled to 16 kHz, and scored against the 16 kHz fixture (rendered by sox from the same source)
// with wideband PESQ (ITU-T P.862.2, MOS-LQO 1.04..4.64) by the `pesq` Python package.
//  * predecessor: the pool's session code (bench/baseline/session.ts) on this thread;
//  * ours: the real AudioPipeline downlink, at equal settings and at our defaults on every rung of
//    the encoder ladder (level forced with setEncoderLevel).
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { AudioPipeline, DEFAULT_ENCODER_LADDER, OpusEncoder, type DownlinkEncoderOptions } from '../../src/index.js';
import { BaselineSession, loadBaselineLibs } from '../baseline/session.js';
import { frames } from '../micro/fixtures.js';
import { credentials, decodeLikeDevice, downlinkChunks, s16Bytes, speech } from './fixtures.js';
import type { QualityFile, QualityRequest, QualityResult } from './protocol.js';
import { EQUAL_ENCODER } from './targets.js';

async function oursChain(encoder: DownlinkEncoderOptions, level: number | undefined): Promise<Uint8Array[]> {
  const { chunks } = downlinkChunks();
  const cred = credentials(0);
  // Level forced and held: the pipeline's own ladder control is off, the stream follows the level.
  const pipeline = new AudioPipeline({ adaptive: false, downlinkQueueCapacity: 16384 });
  if (level !== undefined) pipeline.setEncoderLevel(level);
  const packets: { seq: number; d: Uint8Array }[] = [];
  await new Promise<void>((resolve) => {
    const down = pipeline.createDownlink({
      key: cred.key,
      nonce: cred.nonce,
      encoder,
      adaptive: level !== undefined,
      onPacket: (p) => packets.push({ seq: p.sequence, d: Uint8Array.from(p.datagram) }),
      onTurnEnd: () => resolve(),
    });
    for (const c of chunks) down.push(c);
    down.flush();
  });
  pipeline.close();
  return packets.sort((a, b) => a.seq - b.seq).map((p) => p.d);
}

async function baselineChain(): Promise<Uint8Array[]> {
  const libs = await loadBaselineLibs();
  const cred = credentials(0);
  const s = new BaselineSession(libs, cred.key, cred.nonce);
  const out: Uint8Array[] = [];
  for (const c of downlinkChunks().chunks) for (const o of s.downlink(c.slice())) out.push(o.datagram);
  s.close();
  return out;
}

/** Fresh encoders, OPUS_AUTO vs the explicit bitrate of EQUAL_ENCODER, over the 24 kHz fixture. */
function equalBitrateCheck(): string {
  const frames24 = frames(speech(24000).samples, 1440);
  const base = { sampleRate: 24000 as const, channels: 1 as const, application: 'audio' as const, complexity: 9 };
  const auto = new OpusEncoder(base);
  const fixed = new OpusEncoder({ ...base, bitrate: EQUAL_ENCODER.bitrate! });
  let same = 0;
  for (const f of frames24) if (auto.encode(f).equals(fixed.encode(f))) same++;
  auto.close();
  fixed.close();
  return `${same}/${frames24.length} packets identical (OPUS_AUTO vs ${EQUAL_ENCODER.bitrate} bit/s)`;
}

export async function runQuality(req: QualityRequest): Promise<QualityResult> {
  const cred = credentials(0);
  const files: QualityFile[] = [];
  const add = (name: string, datagrams: Uint8Array[]): void => {
    const file = join(req.dir, `${name}.s16`);
    writeFileSync(file, s16Bytes(decodeLikeDevice(cred.key, datagrams)));
    const bytes = datagrams.reduce((a, d) => a + d.length - 16, 0);
    files.push({ name, file, meanBytes: datagrams.length ? bytes / datagrams.length : 0 });
  };
  add('baseline', await baselineChain());
  add('ours-equal', await oursChain(EQUAL_ENCODER, undefined));
  add('ours-default-L0', await oursChain({}, 0));
  for (let l = 1; l <= DEFAULT_ENCODER_LADDER.length; l++) add(`ours-default-L${l}`, await oursChain({}, l));
  const reference = join(req.dir, 'reference.s16');
  const sp = speech(16000).samples;
  // The input covers whole 10 ms chunks of the 48 kHz fixture: the same span at 16 kHz.
  writeFileSync(reference, new Uint8Array(sp.buffer, sp.byteOffset, Math.min(sp.length, downlinkChunks().chunks.length * 160) * 2));
  return { kind: 'quality', reference, files, equalBitrateCheck: equalBitrateCheck() };
}

export interface PesqOutcome {
  scores: Record<string, number>;
  error?: string;
}

const PESQ_SCRIPT = `
import json, sys
import numpy as np
from pesq import pesq
pairs = json.loads(sys.argv[1])
out = {}
for name, ref, deg in pairs:
    r = np.fromfile(ref, dtype='<i2').astype(np.float32)
    d = np.fromfile(deg, dtype='<i2').astype(np.float32)
    n = min(len(r), len(d))
    out[name] = float(pesq(16000, r[:n], d[:n], 'wb'))
print(json.dumps(out))
`;

/** Wideband PESQ of each [name, reference, degraded] (16 kHz s16 files), via python3 + pesq. */
export function pesqScores(pairs: [string, string, string][]): PesqOutcome {
  if (pairs.length === 0) return { scores: {} };
  const python = process.env.PYTHON ?? 'python3';
  const r = spawnSync(python, ['-c', PESQ_SCRIPT, JSON.stringify(pairs)], { encoding: 'utf8', timeout: 300_000 });
  if (r.error || r.status !== 0) {
    const why = r.error ? r.error.message : (r.stderr || '').trim().split('\n').slice(-1)[0] ?? `exit ${r.status}`;
    return { scores: {}, error: `PESQ unavailable (${why}); install it with: pip install pesq numpy` };
  }
  try {
    return { scores: JSON.parse(r.stdout) as Record<string, number> };
  } catch {
    return { scores: {}, error: `PESQ output unreadable: ${r.stdout.slice(0, 200)}` };
  }
}
