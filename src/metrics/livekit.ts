// LiveKit bridge metrics (agent 'livekit'), computed at scrape time from the backend's stats():
// live native objects, audio sources rtc-node retains, rooms open, join time, reconnects, FFI
// errors, sessions by ending, and audio dropped on either side of the bridge. The stats' shape and the join-time buckets live here, so the
// LiveKit code (src/livekit/) fills in what this file defines, and metrics import nothing above them.
import type { Registry } from 'prom-client';
import { ScrapeMetric } from './prometheus.js';

/** Live native/FFI objects across all sessions: must return to zero when sessions are gone. */
export interface LivekitStats {
  sessions: number;
  rooms: number;
  sources: number;
  tracks: number;
  streams: number;
  rpcPending: number;
  uplinkDropped: number;
  /** Uplink frames dropped to drain a standing backlog (UplinkCapture): quiet frames (pauses)... */
  uplinkShed: number;
  /** ...and speech frames, shed because no pause came for a second. */
  uplinkShedSpeech: number;
  reconnects: number;
  /** Agent audio frames discarded (barge-in: the rest of an interrupted turn). */
  downlinkDropped: number;
  /** FFI handles found already dropped by the FFI when released (the FFI closed the object itself). */
  ffiErrors: number;
  /** Rooms joined (connect + microphone published) and joins that failed. */
  connects: number;
  connectFailures: number;
  /** Join time (connect + publish) histogram, seconds: counts per CONNECT_BUCKETS upper bound (+Inf last). */
  connectSeconds: { buckets: number[]; sum: number; count: number };
  /** Closed sessions by how they ended (see EndKind in src/livekit/livekit-session.ts). */
  endings: Record<string, number>;
}

/** Upper bounds (s) of the join-time histogram buckets. */
export const CONNECT_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

export function registerLivekitMetrics(registry: Registry, stats: () => LivekitStats & { ffiListeners: number }, retainedSources: () => number | null): void {
  const add = (m: ScrapeMetric) => registry.registerMetric(m as unknown as import('prom-client').Metric);
  add(new ScrapeMetric('xiaozhi_livekit_open', 'Live LiveKit objects: sessions, rooms, audio sources, local tracks, agent audio streams, FFI event-bus listeners (all 0 with no session).', 'gauge', () => {
    const s = stats();
    return (['sessions', 'rooms', 'sources', 'tracks', 'streams', 'ffiListeners'] as const).map((object) => ({ value: s[object], labels: { object: object === 'ffiListeners' ? 'ffi_listeners' : object } }));
  }));
  add(new ScrapeMetric('xiaozhi_livekit_retained_audio_sources', 'Audio sources @livekit/rtc-node keeps after their session closed (rooms the server ended), each with a capture thread waking every 10 ms; workers are recycled on it (--recycle-retained-sources). Absent where not measurable (no /proc).', 'gauge', () => {
    const n = retainedSources();
    return n === null ? [] : [{ value: n, labels: {} }];
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
  add(new ScrapeMetric('xiaozhi_livekit_dropped_frames_total', 'Audio frames dropped by the LiveKit bridge: uplink (AudioSource pushed back / reconnect buffer full), uplink_shed (a quiet frame dropped to drain a standing backlog), uplink_shed_speech (a speech frame dropped for that because no pause came), downlink (agent audio discarded after a barge-in).', 'counter', () => {
    const s = stats();
    return [
      { value: s.uplinkDropped, labels: { direction: 'uplink' } },
      { value: s.uplinkShed, labels: { direction: 'uplink_shed' } },
      { value: s.uplinkShedSpeech, labels: { direction: 'uplink_shed_speech' } },
      { value: s.downlinkDropped, labels: { direction: 'downlink' } },
    ];
  }));
}
