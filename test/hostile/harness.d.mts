// Types of harness.mjs (plain ESM so scripts/fuzz-live.mjs can run it without a TypeScript step).
import type dgram from 'node:dgram';
import type { ConnectFields, MqttPacket } from '../helpers/mqtt-bytes.mjs';

export const root: string;
export function sleep(ms: number): Promise<void>;

export interface ChildState {
  counters: Record<string, number>;
  stats: { connections: number; sessions: number };
  sessionsByState: Record<string, number>;
  openStreams: number;
  streamsOpen: number;
  udpBindings: number;
  resources: Record<string, number>;
  native: Record<string, number>;
  memory: number;
  protoKeys: number;
}

export interface GatewayChild {
  ports: { mqtt: number; udp: number; http: number };
  fatal: string[];
  exit: { code: number | null; signal: string | null } | null;
  stderr: string;
  alive(): boolean;
  problem(): string | null;
  state(timeoutMs?: number): Promise<ChildState>;
  stop(): Promise<void>;
}
export function startGateway(config?: Record<string, unknown>): Promise<GatewayChild>;
export function ipAllocator(secondOctet: number): () => string;
export function nextMac(prefix?: number): string;

export {
  DISCONNECT, packet as mqttPacket, PINGREQ, publishPacket, remainingLength, splitPackets, subscribePacket, utf8Field, type MqttPacket,
} from '../helpers/mqtt-bytes.mjs';
/** mqtt-bytes' connectPacket with keepalive 240 by default and never MQTT 5 property lists. */
export function connectPacket(f: Omit<ConnectFields, 'properties'>): Buffer;

export { RawMqtt } from '../helpers/mqtt-raw.mjs';

export interface HttpResult { status?: number; headers?: Record<string, unknown>; body?: string; error?: string }
export function httpRequest(o: {
  port: number; localAddress?: string; method?: string; path?: string; headers?: Record<string, string | string[] | number>;
  body?: string | Buffer; timeoutMs?: number; bodyChunks?: Array<string | Buffer>; chunkGapMs?: number;
}): Promise<HttpResult>;
export function rawHttp(o: { port: number; localAddress?: string; chunks: Array<string | Buffer>; gapMs?: number; timeoutMs?: number }): Promise<string>;
export function otaHeaders(mac: string, uuid: string): Record<string, string>;
export function uuidFor(mac: string): string;
export function otaBody(mac: string, uuid: string): string;
export function speechFrames(count?: number): Promise<Buffer[]>;

export interface HelloReply {
  type: 'hello'; session_id: string;
  udp: { server: string; port: number; key: string; nonce: string };
  [k: string]: unknown;
}
export type Message = Record<string, unknown> & { at: number };

export class Device {
  messages: Message[];
  datagrams: Array<{ at: number; data: Buffer }>;
  mqtt: RawMqtt;
  udp: dgram.Socket | null;
  hello: HelloReply | null;
  seq: number;
  ip: string;
  mac: string;
  creds: { endpoint: string; client_id: string; username: string; password: string; publish_topic: string; keepalive: number };
  record: Array<{ kind: 'mqtt' | 'udp'; bytes: Buffer }> | null;
  static connect(gw: GatewayChild, o?: { ip?: string; mac?: string; record?: boolean; keepalive?: number }): Promise<Device>;
  sendMqtt(bytes: Buffer): Promise<void>;
  publish(message: Record<string, unknown> | string | Buffer, opts?: { qos?: number; retain?: boolean; messageId?: number }): Promise<void>;
  waitFor(pred: (m: Message) => boolean, timeoutMs?: number, what?: string): Promise<Message>;
  helloMessage(): Record<string, unknown>;
  openUdp(): Promise<void>;
  sayHello(timeoutMs?: number): Promise<HelloReply>;
  session(): string;
  header(payloadLength: number, sequence: number, timestamp?: number, hello?: HelloReply): Buffer;
  datagram(opus: Uint8Array, sequence?: number, hello?: HelloReply): Buffer;
  sendUdp(data: Buffer, socket?: dgram.Socket): Promise<void>;
  decrypt(datagram: Buffer): { header: Buffer; opus: Buffer };
  close(o?: { graceful?: boolean }): Promise<void>;
}
export function encrypt(keyHex: string, iv: Buffer, data: Buffer): Buffer;

export class Canary {
  device: Device;
  turns: number;
  failures: Array<{ turn: number; error: string; cases: string[] }>;
  expectedFrames: number;
  lastTurnAt: number;
  constructor(gw: GatewayChild, o?: { framesPerTurn?: number; turnTimeoutMs?: number; ip?: string });
  start(): Promise<void>;
  enter(name: string): void;
  leave(name: string): void;
  waitTurns(n?: number, timeoutMs?: number): Promise<void>;
  describeFailures(): string;
  stop(): Promise<void>;
}

export interface Footprint { sessions: number; connections: number; openStreams: number; streamsOpen: number; udpBindings: number; tcpSockets: number; udpSockets: number; timers: number }
export function footprint(s: ChildState): Footprint;
export const MUST_STAY_ZERO: string[];
export function waitClean(gw: GatewayChild, base: Footprint, o?: { timeoutMs?: number; timerSlack?: number }): Promise<{ clean: boolean; state: ChildState; bad?: string[] }>;
export function counterValue(state: ChildState, name: string): number;

export { rng, type Rng } from '../helpers/prng.mjs';
