// Signal comparison for lossy codecs: normalized cross-correlation at the best lag (a codec delays
// its output by its lookahead), computed here in float64, independent of the code under test.

/** PCM chunks joined into one array. */
export function concat(chunks: readonly Int16Array[]): Int16Array {
  const out = new Int16Array(chunks.reduce((n, c) => n + c.length, 0));
  let o = 0;
  for (const c of chunks) {
    out.set(c, o);
    o += c.length;
  }
  return out;
}

export interface LagCorrelation {
  /** Normalized cross-correlation in [-1, 1] over the whole overlap at `lag`. */
  correlation: number;
  /** Samples (per channel) by which `output` lags `reference`. */
  lag: number;
}

function channel(x: Int16Array, channels: number, c: number): Float64Array {
  const n = Math.floor(x.length / channels);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = x[i * channels + c]!;
  return out;
}

/** Correlation of reference[i] with output[i + lag] over every i where both exist. */
export function correlationAt(reference: ArrayLike<number>, output: ArrayLike<number>, lag: number, start = 0, end = Infinity): number {
  const n = Math.min(reference.length, output.length - lag, end);
  let sxy = 0, sxx = 0, syy = 0;
  for (let i = Math.max(0, start, -lag); i < n; i++) {
    const x = reference[i]!, y = output[i + lag]!;
    sxy += x * y;
    sxx += x * x;
    syy += y * y;
  }
  return sxx === 0 || syy === 0 ? 0 : sxy / Math.sqrt(sxx * syy);
}

/**
 * Finds the lag in [0, maxLag] that maximizes the correlation. The search runs on the most energetic
 * window of `window` samples (cheap), then the correlation is computed on the whole signal at the
 * lags around the winner.
 */
export function bestLagCorrelation(
  reference: Int16Array,
  output: Int16Array,
  options: { maxLag?: number; channels?: number; channel?: number; window?: number } = {},
): LagCorrelation {
  const maxLag = options.maxLag ?? 1000;
  const channels = options.channels ?? 1;
  const ref = channel(reference, channels, options.channel ?? 0);
  const out = channel(output, channels, options.channel ?? 0);
  const win = Math.min(options.window ?? 8000, Math.max(0, Math.min(ref.length, out.length - maxLag)));
  // most energetic window of the reference
  let bestStart = 0;
  if (ref.length > win) {
    const step = Math.max(1, Math.floor(win / 4));
    let bestE = -1;
    for (let s = 0; s + win <= Math.min(ref.length, out.length - maxLag); s += step) {
      let e = 0;
      for (let i = s; i < s + win; i++) e += ref[i]! * ref[i]!;
      if (e > bestE) {
        bestE = e;
        bestStart = s;
      }
    }
  }
  let lag = 0, best = -Infinity;
  for (let l = 0; l <= maxLag; l++) {
    const c = correlationAt(ref, out, l, bestStart, bestStart + win);
    if (c > best) {
      best = c;
      lag = l;
    }
  }
  let correlation = -Infinity, finalLag = lag;
  for (let l = Math.max(0, lag - 2); l <= Math.min(maxLag, lag + 2); l++) {
    const c = correlationAt(ref, out, l);
    if (c > correlation) {
      correlation = c;
      finalLag = l;
    }
  }
  return { correlation, lag: finalLag };
}

/** Signal-to-noise ratio in dB of `output[i + lag]` against `reference[i]` over [start, end). */
export function snrDb(reference: ArrayLike<number>, output: ArrayLike<number>, lag: number, start: number, end: number): number {
  let s = 0, e = 0;
  for (let i = start; i < end; i++) {
    const x = reference[i] ?? 0;
    const d = (output[i + lag] ?? 0) - x;
    s += x * x;
    e += d * d;
  }
  return 10 * Math.log10(s / Math.max(e, 1e-9));
}
