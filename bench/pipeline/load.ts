// The load generator and its measurements, shared by every design under test (ours, the
// predecessor): N full-duplex streams at real-time rates, driven by one 10 ms timer.
//
// Every stream, from its start tick on, pushes one 10 ms Float32 downlink chunk per tick and one
// uplink datagram every 6th tick (60 ms). Streams start spread over the first half of the warm-up,
// so their 60 ms phases are spread over the 6 ticks. A late timer catches up: every due tick runs,
// in order (its lateness counts against the frames it pushes, see `late`).
//
// Latency of a frame = push time -> the design's output callback on the main thread:
//  * uplink: push of the datagram -> its PCM;
//  * downlink: push of the chunk that completed the 60 ms frame (which chunk that is follows from
//    the design's resampler output counts, computed once by feeding it silence) -> its datagram.
// A frame counts as late when its output arrives more than 60 ms after the frame was *due*
// (scheduled tick time), and as missing when it never arrives (1 s grace after the window).
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { createDecipheriv } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { OpusDecoder, Resampler } from '../../src/index.js';
import { CHUNKS_PER_FRAME, CHUNK_SAMPLES, credentials, deviceDatagrams, downlinkChunks, speech, TICK_MS, type StreamCredentials } from './fixtures.js';
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

const LATE_MS = 60;
const GRACE_MS = 1000;

export async function runLoad(req: LoadRequest, target: Target): Promise<LoadResult> {
  const n = req.streams;
  const warmTicks = Math.round(req.warmupMs / TICK_MS);
  const totalTicks = warmTicks + Math.round(req.measureMs / TICK_MS);
  const rampTicks = Math.max(1, Math.floor(warmTicks / 2));
  const { chunks } = downlinkChunks();
  const warnings: string[] = [];
  if (downlinkChunks().speech.synthetic) warnings.push(`input is a ${downlinkChunks().speech.source}`);

  const startTick = new Int32Array(n);
  const chunkOffset = new Int32Array(n);
  const upPush: Float64Array[] = [];
  const upDone: Float64Array[] = [];
  const downPush: Float64Array[] = [];
  const downDone: Float64Array[] = [];
  const datagrams: Uint8Array[][] = [];
  const streams: TargetStream[] = [];
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
    startTick[i] = Math.floor((i * rampTicks) / n);
    chunkOffset[i] = (i * 331) % chunks.length;
    const ticks = totalTicks - startTick[i]!;
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

  const eld = monitorEventLoopDelay({ resolution: 1 });
  let cpuStart = process.cpuUsage();
  let tBegin = 0;
  let tEnd = 0;
  let cpuUs = 0;
  let generatorLateMax = 0;
  let opened = 0;
  const t0 = performance.now() + 50;
  const due = (tick: number): number => t0 + tick * TICK_MS;

  const runTick = (k: number): void => {
    while (opened < n && startTick[opened]! <= k) {
      const i = opened++;
      streams.push(target.open(i, creds[i]!, sink));
    }
    for (let i = 0; i < opened; i++) {
      const l = k - startTick[i]!;
      const s = streams[i]!;
      const now = performance.now();
      if (l % CHUNKS_PER_FRAME === 0) {
        const u = l / CHUNKS_PER_FRAME;
        upPush[i]![u] = now;
        s.pushUp(datagrams[i]![u]!, u);
      }
      downPush[i]![l] = now;
      s.pushDown(chunks[(chunkOffset[i]! + l) % chunks.length]!.slice(), l);
    }
  };

  await new Promise<void>((resolve, reject) => {
    let next = 0;
    let lastSample = 0;
    const timer = setInterval(() => {
      try {
        const now = performance.now();
        while (next <= totalTicks && due(next) <= now) {
          if (next === warmTicks) {
            inWindow = true;
            target.beginWindow();
            eld.enable();
            cpuStart = process.cpuUsage();
            tBegin = performance.now();
            lastSample = tBegin;
          }
          if (next === totalTicks) {
            const cpu = process.cpuUsage(cpuStart);
            cpuUs = cpu.user + cpu.system;
            tEnd = performance.now();
            eld.disable();
            target.endWindow();
            inWindow = false;
            clearInterval(timer);
            resolve();
            return;
          }
          if (inWindow) generatorLateMax = Math.max(generatorLateMax, performance.now() - due(next));
          runTick(next);
          next++;
        }
        if (inWindow && now - lastSample >= 100) {
          lastSample = now;
          target.sample();
        }
      } catch (err) {
        clearInterval(timer);
        reject(err);
      }
    }, TICK_MS);
  });

  // Grace: let in-window frames arrive.
  const graceEnd = performance.now() + GRACE_MS;
  const inWin = (tick: number): boolean => tick >= warmTicks && tick < totalTicks;
  const outstanding = (): number => {
    let missing = 0;
    for (let i = 0; i < n; i++) {
      const up = upDone[i]!, dn = downDone[i]!;
      for (let u = 0; u < up.length; u++) if (inWin(startTick[i]! + u * CHUNKS_PER_FRAME) && up[u] === 0) missing++;
      for (let f = 0; f < dn.length; f++) if (inWin(startTick[i]! + target.completing[f]!) && dn[f] === 0) missing++;
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
      const tick = startTick[i]! + u * CHUNKS_PER_FRAME;
      if (!inWin(tick)) continue;
      expected++;
      if (up[u] === 0) { missing++; continue; }
      received++;
      const lat = up[u]! - upPush[i]![u]!;
      upLat[nu++] = lat;
      allLat[na++] = lat;
      if (up[u]! - due(tick) > LATE_MS) late++;
    }
    for (let f = 0; f < dn.length; f++) {
      const c = target.completing[f]!;
      const tick = startTick[i]! + c;
      if (!inWin(tick)) continue;
      expected++;
      if (dn[f] === 0) { missing++; continue; }
      received++;
      const lat = dn[f]! - downPush[i]![c]!;
      downLat[nd++] = lat;
      allLat[na++] = lat;
      if (dn[f]! - due(tick) > LATE_MS) late++;
    }
  }
  const windowS = (tEnd - tBegin) / 1000;
  const result: LoadResult = {
    kind: 'load',
    request: req,
    windowS,
    cpuMsPerStreamS: n > 0 ? cpuUs / 1000 / (n * windowS) : 0,
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
    result.capture = writeCapture(req.captureFile, creds[0]!, captured, startTick[0]!, warmTicks, totalTicks, target.completing, chunkOffset[0]!);
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
function writeCapture(file: string, cred: StreamCredentials, captured: Map<number, Uint8Array>, start: number, warmTicks: number, totalTicks: number,
  completing: Int32Array, chunkOffset: number): { file: string; frames: number; refFile: string } {
  const frames: number[] = [];
  for (let f = 0; f < completing.length; f++) {
    const tick = start + completing[f]!;
    if (tick >= warmTicks && tick < totalTicks) frames.push(f);
  }
  const dec = new OpusDecoder({ sampleRate: 24000, channels: 1 });
  const rs = new Resampler({ inputRate: 24000, outputRate: 16000 });
  const parts: Int16Array[] = [];
  for (const f of frames) {
    const d = captured.get(f);
    let pcm: Int16Array;
    if (d) {
      const decipher = createDecipheriv('aes-128-ctr', cred.key, d.subarray(0, 16));
      const opus = Buffer.concat([decipher.update(d.subarray(16)), decipher.final()]);
      pcm = dec.decode(opus);
    } else {
      pcm = dec.decode(null, { frameSize: 1440 });
    }
    parts.push(rs.process(pcm));
  }
  parts.push(rs.flush());
  writeFileSync(file, concat(parts));
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
  writeFileSync(refFile, concat(ref));
  return { file, frames: frames.length, refFile };
}

function concat(parts: Int16Array[]): Uint8Array {
  const total = parts.reduce((a, p) => a + p.length, 0);
  const out = new Int16Array(total);
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return new Uint8Array(out.buffer);
}
