// A log budget per device connection: a misbehaving device must not be able to flood the log. Up to
// `perMinute` lines pass in each minute; the rest are counted, and the first line of the next window
// (or close()) says how many were suppressed.
import type { Logger } from 'pino';

export class LogBudget {
  readonly #logger: Logger;
  readonly #perMinute: number;
  readonly #now: () => number;
  #windowStart: number;
  #used = 0;
  #suppressed = 0;

  constructor(logger: Logger, perMinute: number, now: () => number) {
    this.#logger = logger;
    this.#perMinute = perMinute;
    this.#now = now;
    this.#windowStart = now();
  }

  warn(fields: Record<string, unknown>, message: string): void {
    this.#line('warn', fields, message);
  }

  info(fields: Record<string, unknown>, message: string): void {
    this.#line('info', fields, message);
  }

  /** Lines suppressed so far in the current window (tests, metrics). */
  get suppressed(): number {
    return this.#suppressed;
  }

  /** Says how many lines the current window suppressed, if any (connection end). */
  close(): void {
    this.#summarize();
  }

  #line(level: 'warn' | 'info', fields: Record<string, unknown>, message: string): void {
    const now = this.#now();
    if (now - this.#windowStart >= 60_000) {
      this.#summarize();
      this.#windowStart = now;
      this.#used = 0;
    }
    if (this.#used >= this.#perMinute) {
      this.#suppressed++;
      return;
    }
    this.#used++;
    this.#logger[level](fields, message);
  }

  #summarize(): void {
    if (this.#suppressed === 0) return;
    this.#logger.warn({ suppressed: this.#suppressed, perMinute: this.#perMinute }, 'log lines suppressed for this connection (over its log budget)');
    this.#suppressed = 0;
  }
}
