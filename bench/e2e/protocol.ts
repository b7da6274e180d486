// Messages between `bench e2e` (devices + agents) and its gateway child process.
export interface ChildConfig {
  livekitUrl: string;
  apiKey: string;
  apiSecret: string;
}

export type ToChild = { type: 'mark' } | { type: 'collect' } | { type: 'stop' };

/** Times are absolute (performance.timeOrigin + performance.now(), ms): comparable across processes. */
export interface ChildReport {
  type: 'report';
  /** Per session id: capture completion time of each uplink frame. */
  uplinkCaptured: Record<string, number[]>;
  /** Per session id: [end sample (cumulative, 48 kHz), time] of each agent frame handed to the downlink. */
  downlinkForwarded: Record<string, Array<[number, number]>>;
  /** CPU time of the gateway process since 'mark' (µs) and the wall time (ms). */
  cpuUserUs: number;
  cpuSystemUs: number;
  wallMs: number;
  eventLoopP99Ms: number;
  /** Uplink frames the bridge dropped (source pushing back): latency matching is off when > 0. */
  uplinkDropped: number;
}

export type FromChild = { type: 'ready'; ports: { mqtt: number; udp: number; http: number } } | ChildReport | { type: 'error'; message: string };
