// Interleaved measurement of several implementations of one stage inside one process.
//
// Every variant is warmed up, then the variants take turns in short blocks (rotating and reversing
// the order every round) so that a noisy neighbour, a frequency change or a GC of the process hits
// all of them alike. Inside a block, frames are timed in batches with process.hrtime.bigint(); a
// batch's mean is one sample. Median and p99 are taken over those samples.
import type { MeasureSettings, VariantResult, VariantRole } from './protocol.js';
import { median, percentileSorted, sortedCopy } from './stats.js';

export interface Variant {
  name: string;
  role: VariantRole;
  /** Processes the next 60 ms frame. The result is kept in a sink so no work is optimised away. */
  frame: () => unknown;
  /** Facts gathered while running (packet sizes, output lengths...), read after measuring. */
  notes?: () => Record<string, string | number | boolean>;
}

type GcFn = (options?: { type?: 'minor' | 'major'; execution?: 'sync' | 'async' }) => void;
const gc = (globalThis as { gc?: GcFn }).gc;

// Results land here; a module-level variable the JIT cannot prove dead.
export let sink: unknown;

function now(): bigint {
  return process.hrtime.bigint();
}

/** Runs `frames` frames untimed, returns the elapsed ns. */
function runUntimed(v: Variant, frames: number): number {
  const fn = v.frame;
  const t0 = now();
  for (let i = 0; i < frames; i++) sink = fn();
  return Number(now() - t0);
}

/** Runs v for about `ms` in ~2 ms chunks; returns the median per-frame time (ns) of the chunks. */
function warm(v: Variant, ms: number): number {
  const deadline = Number(now()) + ms * 1e6;
  let chunk = 1;
  const estimates: number[] = [];
  do {
    const ns = runUntimed(v, chunk);
    const est = ns / chunk;
    estimates.push(est);
    chunk = Math.max(1, Math.min(1 << 16, Math.round(2e6 / Math.max(est, 1))));
  } while (Number(now()) < deadline);
  // The later chunks ran on the optimised code; their median ignores a preempted one.
  return median(estimates.slice(Math.floor(estimates.length / 2)));
}

interface Slot {
  v: Variant;
  batch: number;
  samples: number[];
  timedNs: number;
  frames: number;
}

export function measure(variants: Variant[], s: MeasureSettings): VariantResult[] {
  if (variants.length === 0) return [];
  // Warm-up, interleaved in a few rounds so every variant also sees the others' side effects
  // (allocator, caches) before measuring starts.
  const warmRounds = 3;
  const estimates = new Map<Variant, number>();
  for (let r = 0; r < warmRounds; r++) {
    for (const v of variants) estimates.set(v, warm(v, s.warmupMs / warmRounds));
  }

  const slots: Slot[] = variants.map((v) => {
    const est = Math.max(estimates.get(v) ?? 1, 1);
    const batch = Math.max(1, Math.min(s.maxBatch, Math.ceil((s.minBatchUs * 1e3) / est)));
    return { v, batch, samples: [], timedNs: 0, frames: 0 };
  });

  const targetNs = s.measureMs * 1e6;
  const blockNs = s.blockMs * 1e6;
  const minSamples = 100;
  const n = slots.length;
  for (let round = 0; ; round++) {
    if (slots.every((x) => x.timedNs >= targetNs && x.samples.length >= minSamples)) break;
    // Rotate the starting variant every round and reverse the direction every n rounds, so no
    // variant always runs right after the same other one.
    const forward = Math.floor(round / n) % 2 === 0;
    for (let k = 0; k < n; k++) {
      const idx = forward ? (round + k) % n : (round + n - 1 - k) % n;
      const slot = slots[idx]!;
      // Collect the previous block's garbage outside any timed region: each variant pays for the
      // scavenges its own allocations cause during its block, not for the others'.
      if (gc) gc({ type: 'minor' });
      runBlock(slot, blockNs);
    }
  }

  return slots.map((x) => {
    const sorted = sortedCopy(x.samples);
    let sum = 0;
    for (const v of x.samples) sum += v;
    return {
      name: x.v.name,
      role: x.v.role,
      medianNs: percentileSorted(sorted, 0.5),
      p99Ns: percentileSorted(sorted, 0.99),
      meanNs: sum / x.samples.length,
      minNs: sorted[0] ?? Number.NaN,
      batches: x.samples.length,
      frames: x.frames,
      batchSize: x.batch,
      ...(x.v.notes ? { notes: x.v.notes() } : {}),
    };
  });
}

/** Timed batches until the block has lasted blockNs (by the batches' own clock reads). */
function runBlock(slot: Slot, blockNs: number): void {
  const fn = slot.v.frame;
  const batch = slot.batch;
  const samples = slot.samples;
  let timed = 0;
  let batches = 0;
  const start = process.hrtime.bigint();
  let t1 = start;
  do {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < batch; i++) sink = fn();
    t1 = process.hrtime.bigint();
    const ns = Number(t1 - t0);
    timed += ns;
    batches++;
    samples.push(ns / batch);
  } while (Number(t1 - start) < blockNs);
  slot.timedNs += timed;
  slot.frames += batch * batches;
}
