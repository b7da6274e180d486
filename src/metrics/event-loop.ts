// xiaozhi_event_loop_delay_seconds: how late this process's event loop runs a timer due every
// 10 ms, as a cumulative histogram. prom-client's nodejs_eventloop_lag_p99_seconds is the p99 of
// the window since the previous scrape (it resets its histogram on every scrape), so a p99 over a
// whole run, or over any interval between two scrapes, cannot be computed from it; from cumulative
// buckets it can (histogram_quantile over a rate, or bucket deltas between two scrapes).
import client, { type Registry } from 'prom-client';

/** The sampling period: the loop is checked 100 times a second (one short JS callback each). */
export const EVENT_LOOP_SAMPLE_MS = 10;
export const EVENT_LOOP_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.02, 0.035, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

/** Registers the histogram and starts sampling; returns the function that stops it. */
export function registerEventLoopDelay(registry: Registry, labels: Record<string, string>): () => void {
  const names = Object.keys(labels);
  const h = new client.Histogram({
    name: 'xiaozhi_event_loop_delay_seconds',
    help: `How late the event loop ran a timer due every ${EVENT_LOOP_SAMPLE_MS} ms (cumulative; per process, with a worker label under --workers).`,
    buckets: EVENT_LOOP_BUCKETS, labelNames: names, registers: [registry],
  });
  const observe = names.length ? (v: number) => h.observe(labels, v) : (v: number) => h.observe(v);
  let due = performance.now() + EVENT_LOOP_SAMPLE_MS;
  let timer: ReturnType<typeof setTimeout> | undefined;
  const tick = () => {
    const now = performance.now();
    observe(Math.max(0, now - due) / 1000);
    due = now + EVENT_LOOP_SAMPLE_MS;
    timer = setTimeout(tick, EVENT_LOOP_SAMPLE_MS);
    timer.unref();
  };
  timer = setTimeout(tick, EVENT_LOOP_SAMPLE_MS);
  timer.unref();
  return () => clearTimeout(timer);
}
