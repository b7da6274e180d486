// The Prometheus registry: process and event-loop metrics (prom-client defaults), the native
// pipeline's counters and latency histograms (read from its shared memory block at scrape time),
// sessions by state, and drops by reason across the pipeline and the network side.
import client, { type Registry } from 'prom-client';
import type { AdmissionState } from '../device/admission.js';
import type { AudioPipeline } from '../native/pipeline.js';
import { registerEventLoopDelay } from './event-loop.js';

type MetricValue = { value: number; labels: Record<string, string | number> };
type Sample = { name: string; help: string; type: 'counter' | 'gauge' | 'histogram'; values: Array<MetricValue & { metricName?: string }>; aggregator: 'sum' };

/** A metric whose samples are computed at scrape time (no per-event bookkeeping in JS). */
export class ScrapeMetric {
  constructor(
    readonly name: string,
    readonly help: string,
    readonly type: 'counter' | 'gauge' | 'histogram',
    private readonly read: () => Array<MetricValue & { metricName?: string }>,
  ) {}
  async get(): Promise<Sample> {
    return { name: this.name, help: this.help, type: this.type, values: this.read(), aggregator: 'sum' };
  }
  reset(): void {}
}

// Native counters that are levels, not totals.
const NATIVE_GAUGES = new Set([
  'queue_depth_uplink', 'queue_depth_downlink', 'queue_depth_peak', 'pool_slabs_in_use', 'pool_slabs_peak',
  'streams_open', 'workers_active', 'encoder_ladder_level', 'encoder_complexity', 'encoder_celt_only',
  'encoder_rung_bitrate',
]);

export interface MetricsSources {
  pipeline: AudioPipeline;
  /** Gateway-level counters (sessions, messages, network-side drops). */
  counters(): Record<string, number>;
  /** Sessions by state. */
  sessionsByState(): Record<string, number>;
  mqttConnections(): number;
  /** Live ssrc -> session registrations on the UDP socket. */
  udpBindings(): number;
  /** Admission control's last readings and verdict. */
  admission(): AdmissionState;
  /**
   * Worker index under `--workers N`. The primary sums every worker's samples with equal labels
   * (prom-client's AggregatorRegistry): counters and histograms add up across workers, while levels
   * that only mean something per process (sessions, connections, queue depths, CPU, memory,
   * event-loop lag) carry a `worker` label so they stay apart.
   */
  worker?: number;
}

// Gateway counters that are drops, reported under xiaozhi_drops_total{reason}: input from the
// network (or an agent) that was refused, limited or failed, each under its own reason.
const GATEWAY_DROPS = [
  'udp_short', 'udp_oversize', 'udp_malformed', 'udp_unknown_ssrc', 'udp_rate_limited', 'udp_address_rejected', 'udp_handler_errors',
  'mqtt_publish_rate_limited', 'mqtt_refused_max_connections', 'mqtt_refused_connect_rate', 'mqtt_refused_per_ip_connections',
  'mqtt_refused_connect_timeout', 'mqtt_refused_protocol', 'mqtt_refused_oversized', 'mqtt_refused_tls_handshake', 'mqtt_auth_failures',
  'mqtt_acl_denials', 'message_invalid', 'hello_rejected', 'hello_rate_limited', 'ota_rate_limited', 'ota_rejected', 'ota_client_gone', 'ota_errors',
  'pacer_backlog', 'pacer_send_failed', 'agent_audio_wrong_rate', 'agent_audio_invalid', 'agent_event_errors', 'pipeline_callback_errors',
];

export function createMetricsRegistry(sources: MetricsSources): Registry {
  const registry = new client.Registry();
  registry.setDefaultLabels({ service: 'xiaozhi-gateway' });
  const perWorker: Record<string, string> = sources.worker === undefined ? {} : { worker: String(sources.worker) };
  client.collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: 10, labels: perWorker });
  const level = (values: MetricValue[]): MetricValue[] => values.map((v) => ({ ...v, labels: { ...v.labels, ...perWorker } }));

  const snapshot = () => sources.pipeline.metrics();
  const add = (m: ScrapeMetric) => registry.registerMetric(m as unknown as client.Metric);

  add(new ScrapeMetric('xiaozhi_pipeline_events_total', 'Native audio pipeline counters (frames, bytes, tasks, ladder steps).', 'counter', () =>
    Object.entries(snapshot().counters)
      .filter(([k]) => !NATIVE_GAUGES.has(k) && !k.startsWith('drop_'))
      .map(([event, value]) => ({ value, labels: { event } }))));
  add(new ScrapeMetric('xiaozhi_pipeline_state', 'Native audio pipeline levels (queue depths, pool slabs, encoder ladder).', 'gauge', () =>
    Object.entries(snapshot().counters)
      .filter(([k]) => NATIVE_GAUGES.has(k))
      .map(([gauge, value]) => ({ value, labels: { gauge, ...perWorker } }))));
  add(new ScrapeMetric('xiaozhi_drops_total', 'Dropped datagrams/frames by reason (pipeline and network side).', 'counter', () => {
    const native = Object.entries(snapshot().counters)
      .filter(([k]) => k.startsWith('drop_'))
      .map(([k, value]) => ({ value, labels: { reason: k.slice(5) } }));
    const c = sources.counters();
    return native.concat(GATEWAY_DROPS.map((reason) => ({ value: c[reason] ?? 0, labels: { reason } })));
  }));
  add(new ScrapeMetric('xiaozhi_gateway_events_total', 'Gateway events (hellos, messages, sessions, UDP rebinding, agent errors, downlink datagrams sent after an abort).', 'counter', () =>
    Object.entries(sources.counters())
      .filter(([k]) => !GATEWAY_DROPS.includes(k))
      .map(([event, value]) => ({ value, labels: { event } }))));
  add(new ScrapeMetric('xiaozhi_sessions', 'Audio sessions by state.', 'gauge', () =>
    level(Object.entries(sources.sessionsByState()).map(([state, value]) => ({ value, labels: { state } })))));
  add(new ScrapeMetric('xiaozhi_mqtt_connections', 'Device MQTT connections.', 'gauge', () => level([{ value: sources.mqttConnections(), labels: {} }])));
  add(new ScrapeMetric('xiaozhi_admission', 'Admission control: machine CPU (0..1) and event-loop delay p99 (ms) of the last window, and busy (1: new sessions refused).', 'gauge', () => {
    const a = sources.admission();
    return level([
      { value: a.cpu, labels: { reading: 'cpu' } },
      { value: a.eventLoopLagMs, labels: { reading: 'event_loop_lag_ms' } },
      { value: a.busy ? 1 : 0, labels: { reading: 'busy' } },
    ]);
  }));
  // Event-loop utilisation as a counter of busy seconds: rate() over any window is the share of
  // time the main thread was running JS or native callbacks rather than waiting in the poll phase
  // (Node's performance.eventLoopUtilization). Near 1, the main thread is the limit and one more
  // worker process helps; per process, so it carries the worker label.
  add(new ScrapeMetric('xiaozhi_event_loop_active_seconds_total', 'Seconds the event loop was busy (not idle waiting for I/O); rate() is the event-loop utilisation (0..1), per process, with a worker label under --workers.', 'counter', () =>
    level([{ value: performance.eventLoopUtilization().active / 1000, labels: {} }])));
  add(new ScrapeMetric('xiaozhi_udp_bindings', 'Sessions registered on the UDP socket (by ssrc).', 'gauge', () => level([{ value: sources.udpBindings(), labels: {} }])));
  if (sources.worker !== undefined) {
    // Which process is which worker: an operator (or a test) finds the pid to look at or to kill.
    add(new ScrapeMetric('xiaozhi_worker_info', 'One sample per live gateway worker process.', 'gauge', () => [{ value: 1, labels: { ...perWorker, pid: process.pid } }]));
  }
  // The native log2-ns histograms become Prometheus histograms with power-of-two second buckets.
  add(new ScrapeMetric('xiaozhi_pipeline_duration_seconds', 'Native pipeline stage times, queue waits and frame latencies.', 'histogram', () => {
    const out: Array<MetricValue & { metricName: string }> = [];
    for (const [stage, h] of Object.entries(snapshot().histograms)) {
      const name = stage.replace(/_ns$/, '');
      let cumulative = 0;
      let sum = 0;
      for (let i = 0; i < h.buckets.length; i++) {
        const n = h.buckets[i]!;
        cumulative += n;
        sum += n * 1.5 * 2 ** i;  // bucket midpoint estimate, in ns
        if (i >= 9 && i <= 34) out.push({ metricName: 'xiaozhi_pipeline_duration_seconds_bucket', value: cumulative, labels: { stage: name, le: 2 ** (i + 1) / 1e9 } });
      }
      out.push({ metricName: 'xiaozhi_pipeline_duration_seconds_bucket', value: h.count, labels: { stage: name, le: '+Inf' } });
      out.push({ metricName: 'xiaozhi_pipeline_duration_seconds_sum', value: sum / 1e9, labels: { stage: name } });
      out.push({ metricName: 'xiaozhi_pipeline_duration_seconds_count', value: h.count, labels: { stage: name } });
    }
    return out;
  }));
  samplers.set(registry, registerEventLoopDelay(registry, perWorker));
  return registry;
}

const samplers = new WeakMap<Registry, () => void>();

/** Stops what createMetricsRegistry started (the event-loop delay sampler). */
export function stopMetrics(registry: Registry): void {
  samplers.get(registry)?.();
  samplers.delete(registry);
}
