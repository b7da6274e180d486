// Token buckets: one per session or connection (TokenBucket), or one per key such as a source
// address (KeyedRateLimiter). Every limit a hostile device meets is one of these, so they all behave
// alike: `capacity` tokens at most (the burst), refilled continuously at `perSecond`.

export class TokenBucket {
  #tokens: number;
  #last: number;
  readonly #capacity: number;
  readonly #perMs: number;

  /** `now` is in monotonic milliseconds (performance.now() or an injected clock). */
  constructor(perSecond: number, capacity: number, now: number) {
    this.#capacity = capacity;
    this.#perMs = perSecond / 1000;
    this.#tokens = capacity;
    this.#last = now;
  }

  /** Takes one token; false when the bucket is empty (the caller drops and counts). */
  take(now: number): boolean {
    this.#tokens = Math.min(this.#capacity, this.#tokens + (now - this.#last) * this.#perMs);
    this.#last = now;
    if (this.#tokens < 1) return false;
    this.#tokens -= 1;
    return true;
  }

  /** Full again as of `now`: behaves exactly like a new bucket, so keyed maps may forget it. */
  isFull(now: number): boolean {
    return this.#tokens + (now - this.#last) * this.#perMs >= this.#capacity;
  }
}

export interface KeyedRateLimiterOptions {
  perMinute: number;
  /** Monotonic milliseconds. */
  now: () => number;
  /** Memory bound: beyond it, full buckets are swept and then the oldest keys evicted. */
  maxTrackedKeys?: number;
}

/**
 * A token bucket per key (a source address or its /64), `perMinute` tokens of burst refilled over a
 * minute. A flood from one address costs one map lookup per event; memory stays bounded.
 */
export class KeyedRateLimiter {
  readonly #buckets = new Map<string, TokenBucket>();
  readonly #perMinute: number;
  readonly #now: () => number;
  readonly #maxTracked: number;
  #lastSweep: number;

  constructor(options: KeyedRateLimiterOptions) {
    this.#perMinute = options.perMinute;
    this.#now = options.now;
    this.#maxTracked = options.maxTrackedKeys ?? 100_000;
    this.#lastSweep = options.now();
  }

  /** Takes one token for `key`; false when the key is over its rate. */
  tryConsume(key: string): boolean {
    const now = this.#now();
    // Full buckets are forgotten once a minute, whoever uses the limiter (no timer of its own).
    if (now - this.#lastSweep >= 60_000) this.sweep();
    let bucket = this.#buckets.get(key);
    if (bucket === undefined) {
      if (this.#buckets.size >= this.#maxTracked) this.#evict();
      bucket = new TokenBucket(this.#perMinute / 60, this.#perMinute, now);
      this.#buckets.set(key, bucket);
    }
    return bucket.take(now);
  }

  /** Drops buckets that have refilled completely (they behave exactly like absent ones). */
  sweep(): void {
    const now = this.#now();
    this.#lastSweep = now;
    for (const [key, bucket] of this.#buckets) if (bucket.isFull(now)) this.#buckets.delete(key);
  }

  get trackedKeys(): number {
    return this.#buckets.size;
  }

  #evict(): void {
    this.sweep();
    // Still full: drop the oldest-inserted entries (Map iteration order) to make room.
    for (const key of this.#buckets.keys()) {
      if (this.#buckets.size < this.#maxTracked) break;
      this.#buckets.delete(key);
    }
  }
}
