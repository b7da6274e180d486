// One timer for all simulated devices: events sit in a binary heap and a single Node timer is armed
// for the earliest one; every event due within `slackMs` runs in the same wake-up. The clock is
// injectable so tests drive time by hand.
import { performance } from 'node:perf_hooks';

export interface Clock {
  /** Milliseconds, monotonic. */
  now(): number;
}

export const realClock: Clock = { now: () => performance.now() };

/** A clock tests move by hand (through Scheduler.advanceTo). */
export class ManualClock implements Clock {
  time: number;
  constructor(start = 0) {
    this.time = start;
  }
  now(): number {
    return this.time;
  }
}

export interface TimerHandle {
  readonly time: number;
  cancelled: boolean;
}

interface Entry extends TimerHandle {
  seq: number;
  fn: () => void;
}

export interface SchedulerOptions {
  clock?: Clock;
  /** Events due within this many ms of now run together (default 1). */
  slackMs?: number;
  /** false: never arm a Node timer (tests call advanceTo). Default: true unless clock is a ManualClock. */
  realTimers?: boolean;
}

export class Scheduler {
  readonly clock: Clock;
  readonly slackMs: number;
  readonly realTimers: boolean;
  #heap: Entry[] = [];
  #seq = 0;
  #timer: NodeJS.Timeout | null = null;
  #armedFor = Infinity;
  #running = false;
  #closed = false;
  /** Wake-ups and events run, for the simulator's own overhead report. */
  wakeups = 0;
  eventsRun = 0;
  /** Worst lateness of an event (ms), a measure of the simulator's own event-loop load. */
  maxLatenessMs = 0;
  onError: (err: unknown) => void = (err) => {
    throw err;
  };

  constructor(options: SchedulerOptions = {}) {
    this.clock = options.clock ?? realClock;
    this.slackMs = options.slackMs ?? 1;
    this.realTimers = options.realTimers ?? !(this.clock instanceof ManualClock);
  }

  now(): number {
    return this.clock.now();
  }

  at(time: number, fn: () => void): TimerHandle {
    const e: Entry = { time, seq: this.#seq++, fn, cancelled: false };
    this.#push(e);
    if (!this.#running) this.#arm();
    return e;
  }

  after(ms: number, fn: () => void): TimerHandle {
    return this.at(this.clock.now() + ms, fn);
  }

  cancel(h: TimerHandle | null | undefined): void {
    if (h) h.cancelled = true;
  }

  get pending(): number {
    return this.#heap.length;
  }

  /** Runs every event due at or before `now + slack`. */
  runDue(): void {
    if (this.#running) return;
    this.#running = true;
    this.wakeups++;
    try {
      let limit = this.clock.now() + this.slackMs;
      while (this.#heap.length > 0 && this.#heap[0]!.time <= limit) {
        const e = this.#pop()!;
        if (e.cancelled) continue;
        const late = this.clock.now() - e.time;
        if (late > this.maxLatenessMs) this.maxLatenessMs = late;
        this.eventsRun++;
        try {
          e.fn();
        } catch (err) {
          this.onError(err);
        }
        limit = this.clock.now() + this.slackMs;
      }
    } finally {
      this.#running = false;
    }
    this.#arm();
  }

  /** Manual time: runs events in time order, setting the clock to each event's time, up to `time`. */
  advanceTo(time: number): void {
    if (!(this.clock instanceof ManualClock)) throw new Error('advanceTo needs a ManualClock');
    const clock = this.clock;
    while (this.#heap.length > 0 && this.#heap[0]!.time <= time) {
      const e = this.#pop()!;
      if (e.cancelled) continue;
      if (e.time > clock.time) clock.time = e.time;
      this.eventsRun++;
      e.fn();
    }
    if (time > clock.time) clock.time = time;
  }

  close(): void {
    this.#closed = true;
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = null;
    this.#heap = [];
  }

  #arm(): void {
    if (!this.realTimers || this.#closed) return;
    while (this.#heap.length > 0 && this.#heap[0]!.cancelled) this.#pop();
    if (this.#heap.length === 0) {
      if (this.#timer) clearTimeout(this.#timer);
      this.#timer = null;
      this.#armedFor = Infinity;
      return;
    }
    const next = this.#heap[0]!.time;
    if (this.#timer && this.#armedFor <= next) return;
    if (this.#timer) clearTimeout(this.#timer);
    this.#armedFor = next;
    const delay = Math.max(0, next - this.clock.now());
    this.#timer = setTimeout(() => {
      this.#timer = null;
      this.#armedFor = Infinity;
      this.runDue();
    }, delay);
  }

  #less(a: Entry, b: Entry): boolean {
    return a.time < b.time || (a.time === b.time && a.seq < b.seq);
  }

  #push(e: Entry): void {
    const h = this.#heap;
    h.push(e);
    let i = h.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (!this.#less(h[i]!, h[p]!)) break;
      [h[i], h[p]] = [h[p]!, h[i]!];
      i = p;
    }
  }

  #pop(): Entry | undefined {
    const h = this.#heap;
    if (h.length === 0) return undefined;
    const top = h[0]!;
    const last = h.pop()!;
    if (h.length > 0) {
      h[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < h.length && this.#less(h[l]!, h[m]!)) m = l;
        if (r < h.length && this.#less(h[r]!, h[m]!)) m = r;
        if (m === i) break;
        [h[i], h[m]] = [h[m]!, h[i]!];
        i = m;
      }
    }
    return top;
  }
}
