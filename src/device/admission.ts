// Admission control: refuse new sessions instead of collapsing (LiveKit SIP's max_cpu_utilization
// is the model). Sessions already admitted keep full quality; a new hello arriving while the
// machine's CPU or this process's event-loop delay is past its threshold, or while the session cap
// is reached, is answered with "gateway busy" (an alert and a goodbye) and counted by reason.
//
// Readings are taken once a second, not per hello: a hello storm costs nothing extra. The decision
// uses the mean of the last three readings, so one busy second (a GC, a burst of connects) does not
// turn devices away, while a machine that stays loaded does within about three seconds.
import { cpus } from 'node:os';
import { monitorEventLoopDelay, type IntervalHistogram } from 'node:perf_hooks';

export type RefusalReason = 'cpu' | 'event_loop' | 'sessions';

/** Readings averaged for a decision (one per second). */
const SMOOTHING_WINDOWS = 3;

export interface AdmissionLimits {
  /** Machine CPU utilisation (0..1) at or above which new sessions are refused; 1 = no limit. */
  maxCpu: number;
  /** Event-loop delay p99 (ms) of this process at or above which new sessions are refused; 0 = no limit. */
  maxEventLoopLagMs: number;
  /** Sessions at once in this process; 0 = no cap. */
  maxSessions: number;
}

/** What the controller reads; injectable so tests decide the readings. */
export interface AdmissionSensors {
  /** Machine CPU utilisation over the last window (0..1). */
  cpu(): number;
  /** Event-loop delay p99 over the last window, in ms. */
  eventLoopLagMs(): number;
  /** Starts a new window (called after each reading). */
  nextWindow(): void;
  close(): void;
}

export interface AdmissionState {
  cpu: number;
  eventLoopLagMs: number;
  busy: RefusalReason | null;
}

export class AdmissionControl {
  readonly limits: AdmissionLimits;
  readonly refused: Record<RefusalReason, number> = { cpu: 0, event_loop: 0, sessions: 0 };
  #state: AdmissionState = { cpu: 0, eventLoopLagMs: 0, busy: null };
  readonly #recent: Array<{ cpu: number; lag: number }> = [];
  readonly #sensors: AdmissionSensors;
  #timer: ReturnType<typeof setInterval> | null;

  constructor(limits: AdmissionLimits, options: { sensors?: AdmissionSensors; intervalMs?: number } = {}) {
    this.limits = limits;
    this.#sensors = options.sensors ?? processSensors();
    this.#timer = setInterval(() => this.sample(), options.intervalMs ?? 1000);
    this.#timer.unref();
  }

  /** Takes a reading now and decides on the mean of the last three (the timer does this every interval; tests call it directly). */
  sample(): AdmissionState {
    this.#recent.push({ cpu: this.#sensors.cpu(), lag: this.#sensors.eventLoopLagMs() });
    this.#sensors.nextWindow();
    if (this.#recent.length > SMOOTHING_WINDOWS) this.#recent.shift();
    const cpu = this.#recent.reduce((t, r) => t + r.cpu, 0) / this.#recent.length;
    const lag = this.#recent.reduce((t, r) => t + r.lag, 0) / this.#recent.length;
    const l = this.limits;
    const busy: RefusalReason | null = l.maxCpu < 1 && cpu >= l.maxCpu ? 'cpu' : l.maxEventLoopLagMs > 0 && lag >= l.maxEventLoopLagMs ? 'event_loop' : null;
    this.#state = { cpu, eventLoopLagMs: lag, busy };
    return this.#state;
  }

  get state(): AdmissionState {
    return this.#state;
  }

  /** Whether a new session may open now, given how many are open; counts a refusal by its reason. */
  admit(openSessions: number): { ok: true } | { ok: false; reason: RefusalReason } {
    const reason: RefusalReason | null = this.limits.maxSessions > 0 && openSessions >= this.limits.maxSessions ? 'sessions' : this.#state.busy;
    if (reason === null) return { ok: true };
    this.refused[reason]++;
    return { ok: false, reason };
  }

  close(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    this.#sensors.close();
  }
}

/** Machine CPU from the kernel's per-core times, event-loop delay from perf_hooks. */
export function processSensors(): AdmissionSensors {
  const totals = () => cpus().reduce((t, c) => {
    const all = c.times.user + c.times.nice + c.times.sys + c.times.irq + c.times.idle;
    return { busy: t.busy + all - c.times.idle, all: t.all + all };
  }, { busy: 0, all: 0 });
  let last = totals();
  let lastRead = last;
  const delay: IntervalHistogram = monitorEventLoopDelay({ resolution: 10 });
  delay.enable();
  return {
    cpu() {
      const now = totals();
      lastRead = now;
      const all = now.all - last.all;
      return all > 0 ? (now.busy - last.busy) / all : 0;
    },
    eventLoopLagMs() {
      // The histogram includes the sampling resolution itself: subtract it, as prom-client does not.
      return delay.count > 0 ? Math.max(0, delay.percentile(99) / 1e6 - 10) : 0;
    },
    nextWindow() {
      last = lastRead;
      delay.reset();
    },
    close() {
      delay.disable();
    },
  };
}
