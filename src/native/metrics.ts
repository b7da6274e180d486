// Turns the pipeline's native metrics block (64-bit atomics that JS maps without a call into the
// addon) into named totals and histogram percentiles.

export interface MetricsLayout {
  counters: string[];
  histograms: string[];
  buckets: number;
  /** Index (in 64-bit words) of the first histogram bucket. */
  histogramOffset: number;
}

export interface HistogramSummary {
  count: number;
  /** Percentiles in nanoseconds: the upper edge of the log2 bucket holding that rank (conservative). */
  p50: number;
  p90: number;
  p99: number;
  max: number;
  /** Raw bucket counts: bucket i holds durations in [2^i, 2^(i+1)) ns. */
  buckets: number[];
}

export interface MetricsSnapshot {
  counters: Record<string, number>;
  histograms: Record<string, HistogramSummary>;
}

export function summarizeBuckets(buckets: number[]): HistogramSummary {
  const count = buckets.reduce((a, b) => a + b, 0);
  const rank = (q: number): number => {
    if (count === 0) return 0;
    const target = Math.max(1, Math.ceil(q * count));
    let seen = 0;
    for (let i = 0; i < buckets.length; i++) {
      seen += buckets[i]!;
      if (seen >= target) return 2 ** (i + 1);
    }
    return 2 ** buckets.length;
  };
  let last = -1;
  for (let i = buckets.length - 1; i >= 0; i--) if (buckets[i]! > 0) { last = i; break; }
  return { count, p50: rank(0.5), p90: rank(0.9), p99: rank(0.99), max: last < 0 ? 0 : 2 ** (last + 1), buckets };
}

export function readMetrics(words: BigUint64Array, layout: MetricsLayout): MetricsSnapshot {
  const counters: Record<string, number> = {};
  layout.counters.forEach((name, i) => {
    counters[name] = Number(words[i]);
  });
  const histograms: Record<string, HistogramSummary> = {};
  layout.histograms.forEach((name, h) => {
    const base = layout.histogramOffset + h * layout.buckets;
    const buckets: number[] = new Array(layout.buckets);
    for (let b = 0; b < layout.buckets; b++) buckets[b] = Number(words[base + b]);
    histograms[name] = summarizeBuckets(buckets);
  });
  return { counters, histograms };
}

/** Difference of two snapshots (counters and histogram buckets), e.g. over a benchmark window. */
export function diffMetrics(after: MetricsSnapshot, before: MetricsSnapshot): MetricsSnapshot {
  const counters: Record<string, number> = {};
  for (const [k, v] of Object.entries(after.counters)) counters[k] = v - (before.counters[k] ?? 0);
  const histograms: Record<string, HistogramSummary> = {};
  for (const [k, h] of Object.entries(after.histograms)) {
    const b = before.histograms[k]?.buckets ?? [];
    histograms[k] = summarizeBuckets(h.buckets.map((v, i) => v - (b[i] ?? 0)));
  }
  return { counters, histograms };
}
