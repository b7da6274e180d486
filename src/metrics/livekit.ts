// LiveKit bridge metrics (agent 'livekit'), computed at scrape time from the backend's stats():
// live native objects, rooms open, join time, reconnects, FFI errors, sessions by ending, and audio
// dropped on either side of the bridge.
import type { Registry } from 'prom-client';
import { CONNECT_BUCKETS, type LivekitStats } from '../livekit/livekit-session.js';
import { ScrapeMetric } from './prometheus.js';

export function registerLivekitMetrics(registry: Registry, stats: () => LivekitStats & { ffiListeners: number }): void {
  const add = (m: ScrapeMetric) => registry.registerMetric(m as unknown as import('prom-client').Metric);
  add(new ScrapeMetric('xiaozhi_livekit_open', 'Live LiveKit objects: sessions, rooms, audio sources, local tracks, agent audio streams, FFI event-bus listeners (all 0 with no session).', 'gauge', () => {
    const s = stats();
    return (['sessions', 'rooms', 'sources', 'tracks', 'streams', 'ffiListeners'] as const).map((object) => ({ value: s[object], labels: { object: object === 'ffiListeners' ? 'ffi_listeners' : object } }));
  }));
  add(new ScrapeMetric('xiaozhi_livekit_join_seconds', 'Time to join a LiveKit room (connect + microphone published).', 'histogram', () => {
    const h = stats().connectSeconds;
    let cumulative = 0;
    const out: Array<{ metricName: string; value: number; labels: Record<string, string | number> }> = CONNECT_BUCKETS.map((le, i) => {
      cumulative += h.buckets[i]!;
      return { metricName: 'xiaozhi_livekit_join_seconds_bucket', value: cumulative, labels: { le } };
    });
    out.push({ metricName: 'xiaozhi_livekit_join_seconds_bucket', value: h.count, labels: { le: '+Inf' } });
    out.push({ metricName: 'xiaozhi_livekit_join_seconds_sum', value: h.sum, labels: {} });
    out.push({ metricName: 'xiaozhi_livekit_join_seconds_count', value: h.count, labels: {} });
    return out;
  }));
  add(new ScrapeMetric('xiaozhi_livekit_events_total', 'LiveKit events: joins, failed joins, reconnections, FFI handles found already gone (ffi_errors).', 'counter', () => {
    const s = stats();
    return [
      { value: s.connects, labels: { event: 'joins' } },
      { value: s.connectFailures, labels: { event: 'join_failures' } },
      { value: s.reconnects, labels: { event: 'reconnects' } },
      { value: s.ffiErrors, labels: { event: 'ffi_errors' } },
    ];
  }));
  add(new ScrapeMetric('xiaozhi_livekit_sessions_ended_total', 'LiveKit sessions closed, by how they ended (device, agent_left, no_agent, agent_lost, server_<reason>, connect_failed, connect_timeout, closed_while_connecting).', 'counter', () =>
    Object.entries(stats().endings).map(([reason, value]) => ({ value, labels: { reason } }))));
  add(new ScrapeMetric('xiaozhi_livekit_dropped_frames_total', 'Audio frames dropped by the LiveKit bridge: uplink (AudioSource pushed back / reconnect buffer full), uplink_shed (standing backlog drained), downlink (agent audio discarded after a barge-in).', 'counter', () => {
    const s = stats();
    return [
      { value: s.uplinkDropped, labels: { direction: 'uplink' } },
      { value: s.uplinkShed, labels: { direction: 'uplink_shed' } },
      { value: s.downlinkDropped, labels: { direction: 'downlink' } },
    ];
  }));
}
