// (b) The physical limit: the pipeline's per-frame stages called back to back in one C++ loop on
// one thread (runTightLoop of the bench addon, bench/native.ts: no queues, no threadpool, no JS delivery), over the same inputs.
import { DEFAULT_DOWNLINK_ENCODER } from '../../src/index.js';
import { benchNative } from '../native.js';
import { credentials, deviceDatagrams, downlinkPcm } from './fixtures.js';
import type { Settings, TightRequest, TightResult } from './protocol.js';

const APPLICATIONS = ['voip', 'audio', 'restricted-lowdelay'];
const SIGNALS = ['auto', 'voice', 'music'];

/** runTightLoop's encoder options (numeric enums, as the pipeline binding takes them). */
export function tightEncoder(settings: Settings): Record<string, number> {
  if (settings === 'equal') return { application: 1, bitrate: -1, complexity: 9, signal: 0 };  // @discordjs/opus defaults (OPUS_AUTO)
  const d = DEFAULT_DOWNLINK_ENCODER;
  return { application: APPLICATIONS.indexOf(d.application), bitrate: d.bitrate, complexity: d.complexity, signal: SIGNALS.indexOf(d.signal) };
}

export function runTight(req: TightRequest): TightResult {
  const cred = credentials(0);
  const datagrams = deviceDatagrams(cred, req.frames, 0);
  const pcm = downlinkPcm(req.frames);
  // Paced: each frame pair starts when it would arrive in real time from `streams` streams with
  // evenly spread phases ('round': the whole round's pairs together, every 60 ms), and the thread
  // sleeps in between (the CPU time is then what the stages cost with idle gaps around them, as in
  // any real-time server; the wall time is frames × 60 ms).
  const paceUs = req.paced ? Math.round(60_000 / req.streams) : 0;
  const paceBurst = req.paced === 'round' ? req.streams : 1;
  const options = { ...tightEncoder(req.settings), streams: req.streams, chunkSamples: 480, paceUs, paceBurst };
  // Warm-up: caches, allocator, libopus tables.
  const warm = Math.min(20, req.frames);
  benchNative().runTightLoop(cred.key, cred.nonce, datagrams.slice(0, warm), pcm.subarray(0, warm * 2880), { ...options, paceUs: 0 });
  // CPU time of the call (one thread) rather than its wall time: on a shared machine the wall time
  // includes preemption by other processes, which is not a cost of the stages.
  const cpu0 = process.cpuUsage();
  const r = benchNative().runTightLoop(cred.key, cred.nonce, datagrams, pcm, options);
  const cpu = process.cpuUsage(cpu0);
  const per = Float64Array.from(r.framePairNs).sort();
  const n = per.length;
  const mean = ((cpu.user + cpu.system) * 1000) / n;
  return {
    kind: 'tight',
    request: req,
    meanNs: mean,
    wallMeanNs: r.totalNs / n,
    p50Ns: per[Math.floor(n * 0.5)]!,
    p99Ns: per[Math.min(n - 1, Math.ceil(n * 0.99) - 1)]!,
    uplinkFramesOut: r.uplinkFramesOut,
    downlinkDatagramsOut: r.downlinkDatagramsOut,
    cpuMsPerStreamS: mean / 1e6 / 0.06,
    streamsPerCore: 60e6 / mean,
  };
}
