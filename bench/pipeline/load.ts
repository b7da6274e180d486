// The load generator and its measurements, shared by every design under test (ours, the
// predecessor): N full-duplex streams at real-time rates.
//
// Every stream, from its start time on, pushes one 10 ms Float32 downlink chunk every 10 ms and one
// uplink datagram every 60 ms. Start times are spread over the first half of the warm-up, and each
// stream's phase within the 60 ms frame (hence also within the 10 ms chunk period) is its own:
// 60 ms × frac(i × golden ratio), a low-discrepancy sequence, so for any N the phases are spread
// evenly and independently of one another, as they are in a gateway: each device sends on its own
// clock and each LiveKit subscription delivers on its own. (Spreading start times evenly over the
// ramp alone is not enough: for N dividing the ramp's length in 10 ms steps, e.g. N = 10, every
// stream would push in the same millisecond and complete its frames in step with others.)
// `aligned` puts every start on a 10 ms grid instead (all streams push their chunks in the same
// timer turn, one sixth of them completing a frame together): the worst-case burst pattern. A 1 ms timer fires every due push in time order; a late timer catches
// up (its lateness counts against the frames it pushes, see `late`).
//
// Latency of a frame = push time -> the design's output callback on the main thread:
//  * uplink: push of the datagram -> its PCM;
//  * downlink: push of the chunk that completed the 60 ms frame (which chunk that is follows from
//    the design's resampler output counts, computed once by feeding it silence) -> its datagram.
// A frame counts as late when its output arrives more than 60 ms after the frame was *due*
// (scheduled push time), and as missing when it never arrives (1 s grace after the window).
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { readFileSync, writeFileSync } from 'node:fs';
import { CHUNKS_PER_FRAME, CHUNK_SAMPLES, credentials, decodeLikeDevice, deviceDatagrams, downlinkChunks, FRAME_MS, s16Bytes, speech, TICK_MS, type StreamCredentials } from './fixtures.js';
import type { Dist, LoadRequest, LoadResult } from './protocol.js';

export interface Sink {
  /** Uplink datagram `tag` of `stream` produced its PCM. */
  up(stream: number, tag: number): void;
  /** Downlink frame `frame` (0-based) of `stream` produced its datagram. */
  down(stream: number, frame: number, datagram: Uint8Array): void;
}

export interface TargetStream {
  pushUp(datagram: Uint8Array, tag: number): void;
  /** The chunk is a fresh array the target may keep (as a LiveKit frame would be). */
  pushDown(chunk: Float32Array, tag: number): void;
}

export interface Target {
  /** completing[f] = index (0-based, per stream) of the downlink chunk that completes frame f. */
  completing: Int32Array;
  open(stream: number, cred: StreamCredentials, sink: Sink): TargetStream;
  beginWindow(): void;
  endWindow(): void;
  /** Called every 100 ms inside the window. */
  sample(): void;
  /** Design-specific results: drop counters, native metrics, pool state. */
  report(result: LoadResult): void;
  close(): Promise<void>;
}

/** Frame -> completing chunk, from cumulative resampler output counts (`outAfter(c)` = samples after chunk c). */
export function completingChunks(frames: number, samplesPerFrame: number, outputOfChunk: (chunk: number) => number): Int32Array {
  const out = new Int32Array(frames);
  let total = 0;
  let f = 0;
  for (let c = 0; f < frames; c++) {
    total += outputOfChunk(c);
    while (f < frames && total >= samplesPerFrame * (f + 1)) out[f++] = c;
    if (c > frames * CHUNKS_PER_FRAME * 4 + 1000) throw new Error('resampler produces no output');
  }
  return out;
}

export function dist(values: Float64Array, n: number): Dist {
  if (n === 0) return { count: 0, p50: 0, p99: 0, max: 0 };
  const v = values.subarray(0, n).sort();
  const rank = (q: number): number => v[Math.min(n - 1, Math.max(0, Math.ceil(q * n) - 1))]!;
  return { count: n, p50: rank(0.5), p99: rank(0.99), max: v[n - 1]! };
}

/**
 * CPU time of the main thread so far (ms), from /proc/self/task/<pid>/stat (utime + stime, in clock
 * ticks of 10 ms); undefined where there is no procfs. process.cpuUsage() counts every thread.
 */
function mainThreadCpuMs(): number | undefined {
  try {
    const stat = readFileSync(`/proc/self/task/${process.pid}/stat`, 'utf8');
    // Fields after the command name (which may contain spaces): state is field 3, utime 14, stime 15.
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) * 10;
  } catch {
    return undefined;
  }
}

const LATE_MS = 60;
const GOLDEN_FRACTION = (Math.sqrt(5) - 1) / 2;
const GRACE_MS = 1000;

export async function runLoad(req: LoadRequest, target: Target): Promise<LoadResult> {
  const n = req.streams;
  const warmTicks = Math.round(req.warmupMs / TICK_MS);
  const totalTicks = warmTicks + Math.round(req.measureMs / TICK_MS);
  const rampTicks = Math.max(1, Math.floor(warmTicks / 2));
  // Times below are in ms relative to t0 (the first possible push).
  const warmMs = warmTicks * TICK_MS;
  const totalMs = totalTicks * TICK_MS;
  const { chunks } = downlinkChunks();
  const warnings: string[] = [];
  if (downlinkChunks().speech.synthetic) warnings.push(`input is a ${downlinkChunks().speech.source}`);

  const startMs = new Float64Array(n);
  const chunkOffset = new Int32Array(n);
  const upPush: Float64Array[] = [];
  const upDone: Float64Array[] = [];
  const downPush: Float64Array[] = [];
  const downDone: Float64Array[] = [];
  const datagrams: Uint8Array[][] = [];
  const streams: (TargetStream | undefined)[] = new Array(n);
  const creds: StreamCredentials[] = [];
  const capture = req.captureFile !== undefined;
  const captured = new Map<number, Uint8Array>();
  let inWindow = false;

  const sink: Sink = {
    up(stream, tag) {
      const a = upDone[stream];
      if (a && tag < a.length && a[tag] === 0) a[tag] = performance.now();
    },
    down(stream, frame, datagram) {
      const a = downDone[stream];
      if (a && frame < a.length && a[frame] === 0) a[frame] = performance.now();
      if (capture && stream === 0 && inWindow) captured.set(frame, Uint8Array.from(datagram));
    },
  };

  for (let i = 0; i < n; i++) {
    startMs[i] = req.aligned
      ? Math.floor((i * rampTicks) / n) * TICK_MS
      : FRAME_MS * Math.floor((i * rampTicks * TICK_MS) / n / FRAME_MS) + FRAME_MS * ((i * GOLDEN_FRACTION) % 1);
    chunkOffset[i] = (i * 331) % chunks.length;
    const ticks = Math.ceil((totalMs - startMs[i]!) / TICK_MS);
    const ups = Math.ceil(ticks / CHUNKS_PER_FRAME) + 1;
    upPush.push(new Float64Array(ups));
    upDone.push(new Float64Array(ups));
    downPush.push(new Float64Array(ticks + 1));
    downDone.push(new Float64Array(Math.ceil(ticks / CHUNKS_PER_FRAME) + 1));
    const cred = credentials(i);
    creds.push(cred);
    datagrams.push(deviceDatagrams(cred, ups, Math.floor(chunkOffset[i]! / CHUNKS_PER_FRAME)));
  }
  if (target.completing.length < Math.ceil(totalTicks / CHUNKS_PER_FRAME) + 1) throw new Error('completing table too short');

  // Every stream pushes with the same 10 ms period, so the global push order repeats every period:
  // streams sorted by their phase within the period (ties in index order).
  const phase = (i: number): number => startMs[i]! - Math.floor(startMs[i]! / TICK_MS) * TICK_MS;
  const order = Array.from({ length: n }, (_, i) => i).sort((x, y) => phase(x) - phase(y) || x - y);
  const firstPeriod = Int32Array.from(order, (i) => Math.floor(startMs[i]! / TICK_MS));

  const eld = monitorEventLoopDelay({ resolution: 1 });
  let cpuStart = process.cpuUsage();
  let tBegin = 0;
  let tEnd = 0;
  let cpuUs = 0;
  let mainStart: number | undefined;
  let mainMs: number | undefined;
  let generatorLateMax = 0;
  const t0 = performance.now() + 50;
  /** Absolute time stream i's push l is due. */
  const due = (i: number, l: number): number => t0 + startMs[i]! + l * TICK_MS;

  const push = (i: number, l: number): void => {
    if (l === 0) streams[i] = target.open(i, creds[i]!, sink);
    const s = streams[i]!;
    const now = performance.now();
    if (l % CHUNKS_PER_FRAME === 0) {
      const u = l / CHUNKS_PER_FRAME;
      upPush[i]![u] = now;
      s.pushUp(datagrams[i]![u]!, u);
    }
    downPush[i]![l] = now;
    s.pushDown(chunks[(chunkOffset[i]! + l) % chunks.length]!.slice(), l);
  };

  await new Promise<void>((resolve, reject) => {
    let period = 0;
    let slot = 0;  // index into `order` of the next push within `period`
    let lastSample = 0;
    const openWindow = (): void => {
      inWindow = true;
      target.beginWindow();
      eld.enable();
      cpuStart = process.cpuUsage();
      mainStart = mainThreadCpuMs();
      tBegin = lastSample = performance.now();
    };
    const timer = setInterval(() => {
      try {
        const now = performance.now();
        for (;;) {
          if (n === 0) {
            // No streams: the window still runs (idle measurement).
            if (!inWindow && tBegin === 0 && now >= t0 + warmMs) openWindow();
            if (inWindow && now >= t0 + totalMs) break;
            return;
          }
          const i = order[slot]!;
          const at = period * TICK_MS + phase(i);
          if (t0 + at > now) break;
          if (!inWindow && tBegin === 0 && at >= warmMs) openWindow();
          if (at >= totalMs) break;
          const l = period - firstPeriod[slot]!;
          if (l >= 0) {
            if (inWindow) generatorLateMax = Math.max(generatorLateMax, now - (t0 + at));
            push(i, l);
          }
          if (++slot === n) {
            slot = 0;
            period++;
          }
        }
        if (inWindow && (n === 0 ? now >= t0 + totalMs : period * TICK_MS + phase(order[slot]!) >= totalMs)) {
          const cpu = process.cpuUsage(cpuStart);
          cpuUs = cpu.user + cpu.system;
          const mainEnd = mainThreadCpuMs();
          if (mainStart !== undefined && mainEnd !== undefined) mainMs = mainEnd - mainStart;
          tEnd = performance.now();
          eld.disable();
          target.endWindow();
          inWindow = false;
          clearInterval(timer);
          resolve();
          return;
        }
        if (inWindow && now - lastSample >= 100) {
          lastSample = now;
          target.sample();
        }
      } catch (err) {
        clearInterval(timer);
        reject(err);
      }
    }, 1);
  });

  // Grace: let in-window frames arrive.
  const graceEnd = performance.now() + GRACE_MS;
  /** Is stream i's push l inside the measured window? */
  const inWin = (i: number, l: number): boolean => {
    const at = startMs[i]! + l * TICK_MS;
    return at >= warmMs && at < totalMs;
  };
  const outstanding = (): number => {
    let missing = 0;
    for (let i = 0; i < n; i++) {
      const up = upDone[i]!, dn = downDone[i]!;
      for (let u = 0; u < up.length; u++) if (inWin(i, u * CHUNKS_PER_FRAME) && up[u] === 0) missing++;
      for (let f = 0; f < dn.length; f++) if (inWin(i, target.completing[f]!) && dn[f] === 0) missing++;
    }
    return missing;
  };
  while (performance.now() < graceEnd && outstanding() > 0) await new Promise((r) => setTimeout(r, 25));

  // Analysis.
  let expected = 0, received = 0, late = 0, missing = 0;
  const upLat = new Float64Array(n * Math.ceil(totalTicks / CHUNKS_PER_FRAME + 2));
  const downLat = new Float64Array(upLat.length);
  const allLat = new Float64Array(upLat.length * 2);
  let nu = 0, nd = 0, na = 0;
  for (let i = 0; i < n; i++) {
    const up = upDone[i]!, dn = downDone[i]!;
    for (let u = 0; u < up.length; u++) {
      if (!inWin(i, u * CHUNKS_PER_FRAME)) continue;
      expected++;
      if (up[u] === 0) { missing++; continue; }
      received++;
      const lat = up[u]! - upPush[i]![u]!;
      upLat[nu++] = lat;
      allLat[na++] = lat;
      if (up[u]! - due(i, u * CHUNKS_PER_FRAME) > LATE_MS) late++;
    }
    for (let f = 0; f < dn.length; f++) {
      const c = target.completing[f]!;
      if (!inWin(i, c)) continue;
      expected++;
      if (dn[f] === 0) { missing++; continue; }
      received++;
      const lat = dn[f]! - downPush[i]![c]!;
      downLat[nd++] = lat;
      allLat[na++] = lat;
      if (dn[f]! - due(i, c) > LATE_MS) late++;
    }
  }
  const windowS = (tEnd - tBegin) / 1000;
  const result: LoadResult = {
    kind: 'load',
    request: req,
    windowS,
    cpuMsPerStreamS: n > 0 ? cpuUs / 1000 / (n * windowS) : 0,
    ...(mainMs !== undefined && n > 0 ? { mainThreadCpuMsPerStreamS: mainMs / (n * windowS) } : {}),
    cpuUtilization: cpuUs / 1e6 / windowS,
    up: dist(upLat, nu),
    down: dist(downLat, nd),
    all: dist(allLat, na),
    expected,
    received,
    late,
    missing,
    pipelineDrops: {},
    drops: 0,
    elLagP99Ms: eld.count > 0 ? eld.percentile(99) / 1e6 : 0,
    elLagMaxMs: eld.count > 0 ? eld.max / 1e6 : 0,
    generatorLateMaxMs: generatorLateMax,
    warnings,
  };
  target.report(result);
  result.drops = late + missing + Object.values(result.pipelineDrops).reduce((a, b) => a + b, 0);

  if (capture && req.captureFile) {
    result.capture = writeCapture(req.captureFile, creds[0]!, captured, (l) => inWin(0, l), target.completing, chunkOffset[0]!);
  }
  // The target is not closed here: the child sends the result first and then exits (terminating
  // the predecessor's workers while they still chew on a backlog can abort inside @discordjs/opus).
  return result;
}

/**
 * Stream 0's downlink audio of the window, decoded like a device would (a lost frame is concealed),
 * at 16 kHz, and the matching stretch of the 16 kHz fixture as reference (same speech, rendered by
 * sox from the same source as the 48 kHz input).
 */
function writeCapture(file: string, cred: StreamCredentials, captured: Map<number, Uint8Array>, inWindow: (push: number) => boolean,
  completing: Int32Array, chunkOffset: number): { file: string; frames: number; refFile: string } {
  const frames: number[] = [];
  for (let f = 0; f < completing.length; f++) {
    if (inWindow(completing[f]!)) frames.push(f);
  }
  writeFileSync(file, s16Bytes(decodeLikeDevice(cred.key, frames.map((f) => captured.get(f)))));
  // Reference: the input chunks of those frames (frame f <- chunks 6f .. 6f+5 of the stream).
  const sp16 = speech(16000).samples;
  const per16 = CHUNK_SAMPLES / 3;
  const totalChunks = downlinkChunks().chunks.length;  // the cycle the stream's input followed
  const ref: Int16Array[] = [];
  if (frames.length > 0) {
    for (let l = frames[0]! * CHUNKS_PER_FRAME; l < (frames[frames.length - 1]! + 1) * CHUNKS_PER_FRAME; l++) {
      const c = (chunkOffset + l) % totalChunks;
      ref.push(sp16.subarray(c * per16, Math.min(sp16.length, (c + 1) * per16)));
    }
  }
  const refFile = file.replace(/\.s16$/, '') + '.ref.s16';
  writeFileSync(refFile, s16Bytes(ref));
  return { file, frames: frames.length, refFile };
}
