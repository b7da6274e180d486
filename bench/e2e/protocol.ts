// Messages between `bench e2e` (the driver: devices), its gateway child process and its agents
// child process (every bench agent, as a participant each, in one process), and its floor child
// (bare rtc-node doing the LiveKit work of N sessions, floor.ts).
import type { TurnPlan } from './turns.js';
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
  /** Per session: [device datagram sequence, captured at (ms since epoch)]. */
  uplinkCaptured: Record<string, Array<[number, number]>>;
  /** Per session id: [end sample (cumulative, 48 kHz), time] of each agent frame received and handed to the downlink. */
  downlinkForwarded: Record<string, Array<[number, number]>>;
  /** Per session id: time each downlink datagram was built (encoded + encrypted, handed to the pacer). */
  downlinkBuilt: Record<string, number[]>;
  /** Per session id: time each downlink datagram was sent (pacer → UDP socket). */
  downlinkSent: Record<string, number[]>;
  /** Per session id: when a turn of agent audio ended (the gate saw a gap): later datagrams are not matched. */
  turnEnds: Record<string, number[]>;
  /** CPU time of the gateway process since 'mark' (µs) and the wall time (ms). */
  cpuUserUs: number;
  cpuSystemUs: number;
  wallMs: number;
  eventLoopP99Ms: number;
  eventLoopMaxMs: number;
  /** Uplink frames the bridge dropped (source pushing back): latency matching is off when > 0. */
  uplinkDropped: number;
  /** Uplink frames shed to drain a standing backlog. */
  uplinkShed: number;
  /** Agent frames discarded by the gate plus datagrams the pacer dropped (backlog bound, failed send). */
  downlinkDropped: number;
  /** LiveKit sessions open in the gateway (should equal the session count). */
  livekitSessions: number;
}

export type FromChild = { type: 'ready'; ports: { mqtt: number; udp: number; http: number } } | ChildReport | { type: 'error'; message: string };

export type ToAgents =
  | { type: 'join'; rooms: Array<{ room: string; identity: string }> }
  | { type: 'speak'; plan: TurnPlan }
  | { type: 'cpu' }
  | { type: 'stop' };

export type FromAgents =
  | { type: 'ready' }
  | { type: 'joined'; count: number }
  | { type: 'cpu'; userUs: number; systemUs: number }
  | { type: 'error'; message: string };
