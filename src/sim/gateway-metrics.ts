// The gateway's own CPU and memory, read from its Prometheus endpoint (same host/port as the OTA
// URL, path /metrics; prom-client default metric names).
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';

export interface PromSample {
  /** Wall clock of the scrape (ms, performance.now()). */
  at: number;
  cpuSeconds: number | null;
  rssBytes: number | null;
  heapUsedBytes: number | null;
  eventLoopLagP99Seconds: number | null;
}

export function metricsUrlFor(otaUrl: string): string {
  const u = new URL(otaUrl);
  return `${u.protocol}//${u.host}/metrics`;
}

/** Value of an unlabelled sample (or the sum over all label sets), null when absent. */
export function promValue(text: string, name: string): number | null {
  let found = false;
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const rest = line.slice(name.length);
    if (rest[0] !== ' ' && rest[0] !== '{') continue;
    const parts = line.trim().split(/\s+/);
    // name{labels} value [timestamp]: the value is the token after the name/labels.
    const valueToken = rest[0] === '{' ? line.slice(line.lastIndexOf('}') + 1).trim().split(/\s+/)[0] : parts[1];
    const v = Number(valueToken);
    if (Number.isFinite(v)) {
      found = true;
      sum += v;
    }
  }
  return found ? sum : null;
}

/** Largest value over all label sets (a level per process, e.g. per worker of --workers N), null when absent. */
export function promMax(text: string, name: string): number | null {
  let max: number | null = null;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name + ' ') && !line.startsWith(name + '{')) continue;
    const v = promValue(line, name);
    if (v !== null) max = max === null ? v : Math.max(max, v);
  }
  return max;
}

export function parseProm(text: string, at: number): PromSample {
  return {
    at,
    cpuSeconds: promValue(text, 'process_cpu_seconds_total'),
    rssBytes: promValue(text, 'process_resident_memory_bytes'),
    heapUsedBytes: promValue(text, 'nodejs_heap_size_used_bytes'),
    // CPU and memory add up over the workers of --workers N; the lag is the worst worker's.
    eventLoopLagP99Seconds: promMax(text, 'nodejs_eventloop_lag_p99_seconds'),
  };
}

export function fetchText(url: string, timeoutMs = 5000, insecure = false): Promise<string> {
  const u = new URL(url);
  const req = u.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const r = req(u, { method: 'GET', agent: false, timeout: timeoutMs, ...(insecure ? { rejectUnauthorized: false } : {}) }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const body = Buffer.concat(chunks).toString('utf8');
        if (res.statusCode !== 200) reject(new Error(`GET ${url}: HTTP ${res.statusCode}`));
        else resolve(body);
      });
      res.on('error', reject);
    });
    r.on('timeout', () => r.destroy(new Error(`GET ${url}: timed out after ${timeoutMs} ms`)));
    r.on('error', reject);
    r.end();
  });
}

export interface GatewayResourceReport {
  available: boolean;
  /** Why not, when unavailable. */
  reason?: string;
  /** Mean CPU over the run, % of one core. */
  cpuPercent?: number | null;
  /** Highest CPU over one sampling interval, % of one core. */
  cpuPeakPercent?: number | null;
  rssBytes?: number | null;
  rssPeakBytes?: number | null;
  rssStartBytes?: number | null;
  eventLoopLagP99Ms?: number | null;
  samples?: number;
}

/** Samples /metrics periodically during the run. */
export class GatewayMonitor {
  readonly url: string;
  #samples: PromSample[] = [];
  #error: string | null = null;
  #timer: NodeJS.Timeout | null = null;
  #inflight: Promise<void> | null = null;
  #insecure: boolean;
  #now: () => number;

  constructor(otaUrl: string, options: { insecure?: boolean; now?: () => number } = {}) {
    this.url = metricsUrlFor(otaUrl);
    this.#insecure = options.insecure ?? false;
    this.#now = options.now ?? (() => performance.now());
  }

  async sample(): Promise<void> {
    if (this.#inflight) return this.#inflight;
    this.#inflight = (async () => {
      try {
        const text = await fetchText(this.url, 5000, this.#insecure);
        const s = parseProm(text, this.#now());
        if (s.cpuSeconds === null && s.rssBytes === null) {
          this.#error = `${this.url} has no process_cpu_seconds_total / process_resident_memory_bytes (prom-client default metrics not registered?)`;
        } else {
          this.#samples.push(s);
          this.#error = null;
        }
      } catch (err) {
        this.#error = (err as Error).message;
      } finally {
        this.#inflight = null;
      }
    })();
    return this.#inflight;
  }

  start(intervalMs = 2000): void {
    this.#timer = setInterval(() => void this.sample(), intervalMs);
    this.#timer.unref();
  }

  async stop(): Promise<void> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    await this.#inflight;
  }

  /** The latest sample, for progress lines. */
  get latest(): PromSample | undefined {
    return this.#samples[this.#samples.length - 1];
  }

  report(): GatewayResourceReport {
    const s = this.#samples;
    if (s.length === 0) return { available: false, reason: this.#error ?? 'no sample taken' };
    const first = s[0]!;
    const last = s[s.length - 1]!;
    let cpuPercent: number | null = null;
    let cpuPeak: number | null = null;
    if (s.length >= 2 && first.cpuSeconds !== null && last.cpuSeconds !== null && last.at > first.at) {
      cpuPercent = ((last.cpuSeconds - first.cpuSeconds) / ((last.at - first.at) / 1000)) * 100;
      for (let i = 1; i < s.length; i++) {
        const a = s[i - 1]!;
        const b = s[i]!;
        if (a.cpuSeconds === null || b.cpuSeconds === null || b.at <= a.at) continue;
        const p = ((b.cpuSeconds - a.cpuSeconds) / ((b.at - a.at) / 1000)) * 100;
        if (cpuPeak === null || p > cpuPeak) cpuPeak = p;
      }
    }
    const rss = s.map((x) => x.rssBytes).filter((x): x is number => x !== null);
    const lag = s.map((x) => x.eventLoopLagP99Seconds).filter((x): x is number => x !== null);
    const report: GatewayResourceReport = {
      available: true,
      cpuPercent,
      cpuPeakPercent: cpuPeak,
      rssBytes: last.rssBytes,
      rssPeakBytes: rss.length ? Math.max(...rss) : null,
      rssStartBytes: first.rssBytes,
      eventLoopLagP99Ms: lag.length ? Math.max(...lag) * 1000 : null,
      samples: s.length,
    };
    if (cpuPercent === null) report.reason = 'fewer than two CPU samples';
    return report;
  }
}
