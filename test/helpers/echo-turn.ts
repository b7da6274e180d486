// One conversation turn of a raw device with the echo agent, and the check that the echo came back
// whole: shared by the tests that run the compiled CLI with workers (workers, recycle).
import { expect } from 'vitest';
import type { RawDevice } from './raw-device.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * listen start (manual), `frames` uplink packets at the device's 60 ms cadence (cycling through
 * `packets`), listen stop; resolves with the downlink datagrams of this turn once tts stop arrived.
 */
export async function echoTurn(d: RawDevice, packets: readonly Buffer[], frames: number, timeoutMs = 20_000): Promise<Buffer[]> {
  const sid = d.session();
  const firstDatagram = d.datagrams.length;
  const firstMessage = d.messages.length;
  d.publish({ session_id: sid, type: 'listen', state: 'start', mode: 'manual' });
  for (let i = 0; i < frames; i++) {
    d.sendUdp(d.datagram(packets[i % packets.length]!));
    await sleep(60);
  }
  d.publish({ session_id: sid, type: 'listen', state: 'stop' });
  await d.waitFor((m) => m.type === 'tts' && m.state === 'stop' && d.messages.indexOf(m as never) >= firstMessage, timeoutMs);
  return d.datagrams.slice(firstDatagram).map((x) => x.data);
}

/** Every downlink datagram of a turn of `frames` uplink frames arrived: consecutive sequence numbers, about one per frame. */
export function expectWholeEcho(downlink: Buffer[], frames: number): void {
  expect(downlink.length).toBeGreaterThanOrEqual(frames - 1);
  const seqs = downlink.map((b) => b.readUInt32BE(12));
  expect(seqs.at(-1)! - seqs[0]! + 1).toBe(seqs.length);
}
