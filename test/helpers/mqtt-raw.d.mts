// Types of mqtt-raw.mjs.
import type net from 'node:net';
import type { MqttPacket } from './mqtt-bytes.mjs';

export class RawMqtt {
  socket: net.Socket;
  packets: MqttPacket[];
  closed: boolean;
  /** Called with each packet as it arrives. */
  onPacket: ((p: MqttPacket) => void) | null;
  static connect(port: number, localAddress?: string): Promise<RawMqtt>;
  write(bytes: Buffer): Promise<void>;
  trickle(bytes: Buffer, gapMs: number): Promise<void>;
  allBytes(): Buffer;
  waitFor(pred: (p: MqttPacket) => boolean, timeoutMs?: number, what?: string): Promise<MqttPacket>;
  connack(timeoutMs?: number): Promise<number | null>;
  closedWithin(timeoutMs: number): Promise<boolean>;
  destroy(): void;
}
