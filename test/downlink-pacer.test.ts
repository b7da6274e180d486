// The downlink pacer on an injected clock: datagram by datagram, when it leaves, against when it
// arrived and against a model of the device's playback (plays 60 ms per packet, in order, from
// when it arrives; queue of ~40 packets). No wall clock: every time here is the fake clock's.
import { describe, expect, it } from 'vitest';
import { DownlinkPacer, type PacedSession } from '../src/device/downlink-pacer.js';

const FRAME = 60;

class FakeClock {
  t = 0;
  #fns: Array<{ fn: () => void; every: number; next: number }> = [];
  timers = {
    setInterval: ((fn: () => void, every: number) => {
      const h = { fn, every, next: this.t + every };
      this.#fns.push(h);
      return h as unknown as ReturnType<typeof setInterval>;
    }) as unknown as typeof setInterval,
    clearInterval: ((h: unknown) => {
      this.#fns = this.#fns.filter((x) => x !== h);
    }) as unknown as typeof clearInterval,
    now: () => this.t,
  };

  /** Moves the clock to `to`, firing intervals on their schedule. */
  advance(to: number): void {
    for (;;) {
      const due = this.#fns.filter((h) => h.next <= to).sort((a, b) => a.next - b.next)[0];
      if (!due) break;
      this.t = due.next;
      due.next += due.every;
      due.fn();
    }
    this.t = to;
  }
}

/** A device: records each datagram's send time and plays them in order, 60 ms each. */
class Device implements PacedSession {
  readonly udpBound = true;
  readonly sentAt: number[] = [];
  readonly ids: number[] = [];
  starts: number[] = [];
  stops: number[] = [];
  drops = 0;
  constructor(readonly clock: FakeClock) {}
  sendDatagram(d: Buffer): boolean {
    this.sentAt.push(this.clock.t);
    this.ids.push(d.readUInt32BE(0));
    return true;
  }
  sendTtsStart(): void {
    this.starts.push(this.clock.t);
  }
  sendTtsStop(): void {
    this.stops.push(this.clock.t);
  }
  countDrop(): void {
    this.drops++;
  }

  /** Playback model: [largest queue (packets), underruns after the first packet, when the last packet ends]. */
  playback(): { maxQueued: number; underruns: number; endsAt: number } {
    let playhead = -Infinity;
    let underruns = 0;
    const ends: number[] = [];
    for (const at of this.sentAt) {
      if (playhead < at) {
        if (ends.length) underruns++;
        playhead = at;
      }
      playhead += FRAME;
      ends.push(playhead);
    }
    let maxQueued = 0;
    for (let i = 0; i < this.sentAt.length; i++) {
      const at = this.sentAt[i]!;
      // Packets sent by now whose playback has not ended: queued in the device.
      let q = 0;
      for (let j = 0; j <= i; j++) if (ends[j]! > at) q++;
      maxQueued = Math.max(maxQueued, q);
    }
    return { maxQueued, underruns: underruns, endsAt: playhead };
  }
}

function datagram(id: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt32BE(id, 0);
  return b;
}

/**
 * One agent turn of `frames` datagrams whose audio arrives in real time except for `stalls`: at
 * each [atFrame, ms], nothing arrives for `ms`, then what was due arrives at once (a stalled event
 * loop, frames delivered in a burst). Returns when each datagram arrived and the device.
 */
function bursty(frames: number, stalls: Array<[number, number]>, options: ConstructorParameters<typeof DownlinkPacer>[0] = {}) {
  const clock = new FakeClock();
  const pacer = new DownlinkPacer({ ...options, timers: clock.timers });
  const dev = new Device(clock);
  const arrivals: number[] = [];
  for (let k = 0; k < frames; k++) {
    let at = 1000 + k * FRAME;
    // Frames due inside a stall arrive when it ends.
    for (const [from, ms] of stalls) {
      const start = 1000 + from * FRAME;
      if (at >= start && at < start + ms) at = start + ms;
    }
    arrivals.push(at);
  }
  for (let k = 0; k < frames; k++) {
    clock.advance(arrivals[k]!);
    pacer.enqueue(dev, datagram(k));
  }
  pacer.endTurn(dev);
  clock.advance(arrivals[frames - 1]! + 5000);
  return { arrivals, dev, pacer };
}

/** Datagrams held for the turn's head start (arrived before the first one left). */
function afterHeadStart(arrivals: number[], dev: Device): number[] {
  const first = dev.sentAt[0]!;
  return arrivals.map((a, k) => (a > first ? dev.sentAt[k]! - a : NaN)).filter((x) => !Number.isNaN(x));
}

describe('DownlinkPacer', () => {
  it('paces a steady turn at real time with its 2-frame lead, tts start first and tts stop after the last packet has played', () => {
    const { arrivals, dev } = bursty(50, []);
    expect(dev.ids).toEqual(arrivals.map((_, k) => k));
    expect(dev.starts).toHaveLength(1);
    expect(dev.sentAt[0]! - dev.starts[0]!).toBeGreaterThanOrEqual(150);
    // Never more than lead + 1 datagrams ahead of real time since the first one left.
    for (let i = 0; i < dev.sentAt.length; i++) {
      const elapsed = dev.sentAt[i]! - dev.sentAt[0]!;
      expect(i).toBeLessThanOrEqual(Math.floor(elapsed / FRAME) + 2);
    }
    const held = afterHeadStart(arrivals, dev);
    expect(Math.max(...held)).toBeLessThanOrEqual(2 * FRAME + 10);
    const play = dev.playback();
    expect(play.underruns).toBe(0);
    expect(dev.stops).toHaveLength(1);
    expect(dev.stops[0]!).toBeGreaterThanOrEqual(play.endsAt + 100);
  });

  it('with bursty agent audio holds no datagram longer than its 2-frame lead + 10 ms (the lead does not take on the largest gap)', () => {
    // Stalls in a 9 s turn (250 to 400 ms: a busy event loop at 10 sessions): after each, what was
    // due arrives at once. Paced against the device's playhead (which restarts after an underrun),
    // every later datagram was held for the largest gap again: 30 ms + (400 - 180) ms here.
    const stalls: Array<[number, number]> = [[10, 250], [30, 400], [50, 300], [70, 250], [90, 400], [110, 300]];
    const { arrivals, dev } = bursty(150, stalls);
    expect(dev.ids).toEqual(arrivals.map((_, k) => k));
    const held = afterHeadStart(arrivals, dev);
    expect(held.length).toBeGreaterThan(140);
    expect(Math.max(...held)).toBeLessThanOrEqual(2 * FRAME + 10);
    const play = dev.playback();
    // The device runs dry in the first stalls only: afterwards it holds what it was sent early.
    expect(play.underruns).toBeLessThanOrEqual(2);
    expect(play.maxQueued).toBeLessThanOrEqual(20);
    expect(dev.drops).toBe(0);
  });

  it('a long stall is caught up within the device queue bound, never beyond it', () => {
    const { arrivals, dev } = bursty(80, [[20, 3000]], { maxAheadFrames: 20 });
    expect(dev.ids).toEqual(arrivals.map((_, k) => k));
    const play = dev.playback();
    expect(play.maxQueued).toBeLessThanOrEqual(20);
    expect(play.maxQueued).toBeGreaterThan(3);
  });

  it('audio announced late (the preroll burst at a turn start) leaves sooner, so the rest of the turn is not held for it', () => {
    for (const announce of [false, true]) {
      const clock = new FakeClock();
      const pacer = new DownlinkPacer({ timers: clock.timers });
      const dev = new Device(clock);
      const arrivals: number[] = [];
      clock.advance(1000);
      // 300 ms of the agent's first words arrive at once (held until its 'speaking' state came),
      // then the rest of the turn in real time.
      if (announce) pacer.catchUp(dev, 300);
      for (let k = 0; k < 6; k++) {
        pacer.enqueue(dev, datagram(k));
        arrivals.push(1000);
      }
      for (let k = 6; k < 60; k++) {
        clock.advance(1000 + (k - 5) * FRAME);
        pacer.enqueue(dev, datagram(k));
        arrivals.push(clock.t);
      }
      pacer.endTurn(dev);
      clock.advance(10_000);
      expect(dev.ids).toEqual(arrivals.map((_, k) => k));
      expect(dev.sentAt[0]! - dev.starts[0]!).toBeGreaterThanOrEqual(150);
      const held = afterHeadStart(arrivals, dev);
      if (announce) {
        expect(Math.max(...held)).toBeLessThanOrEqual(2 * FRAME + 10);
        expect(dev.playback().maxQueued).toBeLessThanOrEqual(20);
      } else {
        // Unannounced, the burst looks early and is paced: every later datagram waits for it.
        expect(Math.min(...held.slice(5))).toBeGreaterThan(2 * FRAME + 10);
      }
    }
  });

  it('a new turn starts its own clock (tts start, head start) after the previous one stopped', () => {
    const clock = new FakeClock();
    const pacer = new DownlinkPacer({ timers: clock.timers });
    const dev = new Device(clock);
    for (const turnAt of [1000, 10_000]) {
      for (let k = 0; k < 10; k++) {
        clock.advance(turnAt + k * FRAME);
        pacer.enqueue(dev, datagram(k));
      }
      pacer.endTurn(dev);
      clock.advance(turnAt + 5000);
    }
    expect(dev.starts).toHaveLength(2);
    expect(dev.stops).toHaveLength(2);
    expect(dev.sentAt[10]! - dev.starts[1]!).toBeGreaterThanOrEqual(150);
    // The second turn is paced again from its own start: 3 datagrams at once, then one per frame.
    expect(dev.sentAt.slice(10, 13).every((t) => t === dev.sentAt[10])).toBe(true);
    expect(dev.sentAt[13]! - dev.sentAt[10]!).toBeGreaterThanOrEqual(FRAME - 5);
  });

  it('clear (barge-in) sends tts stop at once and nothing that was queued, however long the clock runs', () => {
    const clock = new FakeClock();
    const pacer = new DownlinkPacer({ timers: clock.timers });
    const dev = new Device(clock);
    // A 3 s turn whose audio is all there (held by pacing, not by the agent).
    clock.advance(1000);
    for (let k = 0; k < 50; k++) pacer.enqueue(dev, datagram(k));
    clock.advance(1600);
    const sentBefore = dev.sentAt.length;
    expect(sentBefore).toBeGreaterThan(0);
    expect(pacer.backlog(dev)).toBeGreaterThan(0);
    pacer.clear(dev);
    expect(dev.stops).toEqual([1600]);
    clock.advance(10_000);
    expect(dev.sentAt).toHaveLength(sentBefore);
    expect(pacer.backlog(dev)).toBe(0);
    expect(pacer.isSpeaking(dev)).toBe(false);
  });
});
