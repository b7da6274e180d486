// Types of mqtt-bytes.mjs.

export function remainingLength(n: number): Buffer;
export function utf8Field(s: string | Buffer): Buffer;
export function packet(firstByte: number, body: Buffer): Buffer;

export interface ConnectFields {
  clientId: string | Buffer;
  username?: string | Buffer;
  password?: string | Buffer;
  /** Seconds; default 60. */
  keepalive?: number;
  /** Default true. */
  clean?: boolean;
  /** 4 = MQTT 3.1.1 ("MQTT", the default), 3 = MQTT 3.1 ("MQIsdp"), 5 = MQTT 5, or anything else. */
  level?: number;
  /** Overrides the protocol name implied by `level`. */
  protocolName?: string | Buffer;
  will?: { topic: string; payload: string };
  /** Adds the empty MQTT 5 property lists; default: level 5. */
  properties?: boolean;
}
export function connectPacket(f: ConnectFields): Buffer;
export function publishPacket(topic: string | Buffer, payload: Buffer | string, opts?: { qos?: number; retain?: boolean; messageId?: number; dup?: boolean }): Buffer;
export function subscribePacket(messageId: number, topics: string[], first?: number): Buffer;
export const PINGREQ: Buffer;
export const DISCONNECT: Buffer;

export interface MqttPacket { type: number; flags: number; body: Buffer; raw: Buffer }
export function splitPackets(buffer: Buffer): [MqttPacket[], Buffer, boolean];
export function parsePublish(p: { flags: number; body: Buffer }): { topic: string; payload: Buffer; qos: number; retain: boolean };
