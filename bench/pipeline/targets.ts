// The designs under test, behind the load generator's Target interface:
//  * ours: one AudioPipeline (product defaults for everything but the encoder settings and the
//    ladder switch under test);
//  * baseline: the predecessor's worker_threads pool (bench/baseline/);
//  * generator: no design at all, every push answered at once: what the apparatus costs by itself.
import { AudioPipeline, diffMetrics, Resampler, type DownlinkEncoderOptions, type MetricsSnapshot } from '../../src/index.js';
import { WorkerPool, type BaselineSessionHandle } from '../baseline/pool.js';
import { loadBaselineLibs } from '../baseline/session.js';
import { CHUNK_SAMPLES } from './fixtures.js';
import { completingChunks, type Sink, type Target, type TargetStream } from './load.js';
import type { LoadRequest, LoadResult, Settings } from './protocol.js';
import type { StreamCredentials } from './fixtures.js';

const DOWN_FRAME_SAMPLES = 1440;  // 60 ms at 24 kHz

/**
 * @discordjs/opus defaults, expressed through our API: application audio, complexity 9, signal auto,
 * constrained VBR (our default), and bitrate 27000 = what libopus 1.3.1's OPUS_AUTO resolves to here:
 * 60 * Fs / frameSize + Fs * channels, where a 60 ms SILK/hybrid frame is coded as three 20 ms
 * frames (frameSize 480 at 24 kHz). The pipeline API takes no "auto"; 27000 gives byte-identical
 * packets to OPUS_AUTO (checked by the quality child, `equalBitrateCheck`).
 */
export const EQUAL_ENCODER: DownlinkEncoderOptions = Object.freeze({ application: 'audio', complexity: 9, bitrate: 27000, signal: 'auto' });

export function encoderFor(settings: Settings): DownlinkEncoderOptions {
  return settings === 'equal' ? EQUAL_ENCODER : {};
}

function framesNeeded(req: LoadRequest): number {
  return Math.ceil((req.warmupMs + req.measureMs) / 60) + 4;
}

const DROP_COUNTERS = [
  'drop_short', 'drop_bad_type', 'drop_length_mismatch', 'drop_replay', 'drop_sequence_jump', 'drop_decrypt_decode_failure',
  'drop_queue_overflow_uplink', 'drop_queue_overflow_downlink', 'drop_silence_gated', 'drop_aborted_downlink',
];

const NATIVE_HISTOGRAMS = ['frame_queue_wait_ns', 'threadpool_queue_wait_ns', 'uplink_frame_latency_ns', 'downlink_frame_latency_ns', 'downlink_encode_ns', 'uplink_decode_ns'];

/** The completing-chunk table from our resampler (the pipeline's 48 → 24 kHz), fed silence in 10 ms chunks. */
function oursCompleting(req: LoadRequest): Int32Array {
  const rs = new Resampler({ inputRate: 48000, outputRate: 24000 });
  const silence = new Int16Array(CHUNK_SAMPLES);
  return completingChunks(framesNeeded(req), DOWN_FRAME_SAMPLES, () => rs.process(silence).length);
}

export function oursTarget(req: LoadRequest): Target {
  const pipeline = new AudioPipeline({ ...req.pipelineOptions, adaptive: req.adaptive });
  const encoder = encoderFor(req.settings);
  const completing = oursCompleting(req);
  const { words, layout } = pipeline.metricsBlock;
  const levelIndex = layout.counters.indexOf('encoder_ladder_level');
  const levels = new Array<number>(pipeline.options.ladder.length + 1).fill(0);
  let before: MetricsSnapshot | undefined;
  let after: MetricsSnapshot | undefined;
  return {
    completing,
    open(i: number, cred: StreamCredentials, sink: Sink): TargetStream {
      const up = pipeline.createUplink({ key: cred.key, nonce: cred.nonce, onFrame: (f) => sink.up(i, f.tag) });
      const down = pipeline.createDownlink({
        key: cred.key,
        nonce: cred.nonce,
        encoder,
        adaptive: req.adaptive,
        onPacket: (p) => sink.down(i, p.sequence - 1, p.datagram),
      });
      return {
        pushUp: (d, tag) => { up.push(d, tag); },
        pushDown: (c) => { down.push(c); },
      };
    },
    beginWindow() {
      before = pipeline.metrics();
    },
    endWindow() {
      after = pipeline.metrics();
    },
    sample() {
      const l = Number(words[levelIndex]!);
      levels[Math.min(l, levels.length - 1)]!++;
    },
    report(result: LoadResult) {
      if (!before || !after) return;
      const d = diffMetrics(after, before);
      for (const k of DROP_COUNTERS) if ((d.counters[k] ?? 0) > 0) result.pipelineDrops[k] = d.counters[k]!;
      const samples = levels.reduce((a, b) => a + b, 0);
      result.ladderFractions = levels.map((c) => (samples ? c / samples : 0));
      result.ladderStepsDown = d.counters.encoder_ladder_steps_down ?? 0;
      // Hand-offs between the event loop and the threadpool, per frame processed (uplink or downlink):
      // each task is a thread wake-up and a completion on the event loop, each delivery a JS call.
      const frames = (d.counters.uplink_frames_out ?? 0) + (d.counters.downlink_datagrams_out ?? 0);
      if (frames > 0) {
        result.handoffsPerFrame = {
          tasks: (d.counters.threadpool_tasks ?? 0) / frames,
          deliveries: (d.counters.batches_delivered ?? 0) / frames,
        };
      }
      result.native = {};
      for (const h of NATIVE_HISTOGRAMS) {
        const s = d.histograms[h];
        if (s) result.native[h] = { p50: s.p50 / 1e6, p99: s.p99 / 1e6, max: s.max / 1e6 };
      }
    },
    async close() {
      pipeline.close();
    },
  };
}

/**
 * The load generator's own cost at N streams: every datagram is answered at once and every frame's
 * completing chunk produces an (empty) datagram, so the generator does all its bookkeeping (push
 * times, output times, latency analysis) with no audio work behind it. The chunk copies it hands
 * over stand in for the frames LiveKit allocates; they are dropped here, as a design drops them
 * once consumed.
 */
export function generatorTarget(req: LoadRequest): Target {
  const completing = oursCompleting(req);
  const empty = new Uint8Array(0);
  return {
    completing,
    open(i: number, _cred: StreamCredentials, sink: Sink): TargetStream {
      let chunk = 0;
      let frame = 0;
      return {
        pushUp: (_d, tag) => sink.up(i, tag),
        pushDown: () => {
          while (frame < completing.length && completing[frame] === chunk) sink.down(i, frame++, empty);
          chunk++;
        },
      };
    },
    beginWindow() {},
    endWindow() {},
    sample() {},
    report() {},
    async close() {},
  };
}

export async function baselineTarget(req: LoadRequest): Promise<Target> {
  // The completing-chunk table from LiveKit's own resampler, fed silence in 10 ms chunks.
  const libs = await loadBaselineLibs();
  const lk = new libs.AudioResampler(48000, 24000, 1, libs.quality);
  const completing = completingChunks(framesNeeded(req), DOWN_FRAME_SAMPLES, () => {
    const out = lk.push(new libs.AudioFrame(new Int16Array(CHUNK_SAMPLES), 48000, 1, CHUNK_SAMPLES));
    return out.reduce((a, f) => a + f.samplesPerChannel, 0);
  });
  lk.close();
  const pool = new WorkerPool();
  await pool.ready();
  const handles: BaselineSessionHandle[] = [];
  let rejected = 0;
  let tagMismatch = 0;
  return {
    completing,
    open(i: number, cred: StreamCredentials, sink: Sink): TargetStream {
      const h = pool.createSession(cred.key, cred.nonce, {
        onPcm: (tag) => sink.up(i, tag),
        onPacket: (frame, tag, d) => {
          if (completing[frame] !== tag) tagMismatch++;
          sink.down(i, frame, d);
        },
        onReject: () => { rejected++; },
      });
      handles.push(h);
      return {
        pushUp: (d, tag) => h.pushUplink(d, tag),
        pushDown: (c, tag) => h.pushDownlink(c, tag),
      };
    },
    beginWindow() {
      rejected = 0;
    },
    endWindow() {},
    sample() {},
    report(result: LoadResult) {
      if (rejected > 0) result.pipelineDrops.rejected_datagrams = rejected;
      if (tagMismatch > 0) result.warnings.push(`${tagMismatch} downlink frames completed by another chunk than computed`);
      const loads = pool.loads;
      result.pool = { workers: pool.size, peak: pool.peakWorkers, sessions: loads.map((l) => l.sessions), elu: loads.map((l) => Math.round(l.elu * 100) / 100) };
      for (const e of pool.errors) result.warnings.push(`worker error: ${e.message}`);
    },
    async close() {
      await pool.close();
    },
  };
}
