// Reading the gateway's /metrics (Prometheus text exposition) in tests.

export interface MetricSample {
  labels: Record<string, string>;
  value: number;
}

/** The samples of metric `name` (those with labels), each with its labels. */
export function metricSamples(text: string, name: string): MetricSample[] {
  const out: MetricSample[] = [];
  for (const m of text.matchAll(new RegExp(`^${name}\\{([^}]*)\\} (\\S+)$`, 'gm'))) {
    out.push({ labels: Object.fromEntries([...m[1]!.matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1]!, x[2]!])), value: Number(m[2]) });
  }
  return out;
}

/** Sum of a metric's samples whose labels include `match` (or satisfy it, given a predicate). */
export function metricSum(text: string, name: string, match: Record<string, string> | ((labels: Record<string, string>) => boolean) = {}): number {
  const pred = typeof match === 'function' ? match : (l: Record<string, string>) => Object.entries(match).every(([k, v]) => l[k] === v);
  return metricSamples(text, name).filter((s) => pred(s.labels)).reduce((a, s) => a + s.value, 0);
}
