// Per-IP token bucket for new connections: `perMinute` tokens, refilled continuously. Checked at TCP
// accept, before a byte is parsed, so a flood from one address costs one map lookup per socket.
// IPv4-mapped IPv6 addresses count as their IPv4 address. Memory is bounded: idle buckets (full
// again) are swept, and beyond `maxTrackedAddresses` the oldest entries are evicted first.

interface Bucket {
  tokens: number;
  last: number;
}

export interface ConnectRateLimiterOptions {
  perMinute: number;
  /** Monotonic milliseconds. */
  now: () => number;
  maxTrackedAddresses?: number;
}

export class ConnectRateLimiter {
  private readonly buckets = new Map<string, Bucket>();
  private readonly capacity: number;
  private readonly refillPerMs: number;
  private readonly now: () => number;
  private readonly maxTracked: number;

  constructor(options: ConnectRateLimiterOptions) {
    this.capacity = options.perMinute;
    this.refillPerMs = options.perMinute / 60_000;
    this.now = options.now;
    this.maxTracked = options.maxTrackedAddresses ?? 100_000;
  }

  /** Takes one token for `address`; false when the address is over its rate. */
  tryConsume(address: string): boolean {
    const now = this.now();
    let bucket = this.buckets.get(address);
    if (bucket === undefined) {
      if (this.buckets.size >= this.maxTracked) this.evict();
      bucket = { tokens: this.capacity, last: now };
      this.buckets.set(address, bucket);
    } else {
      bucket.tokens = Math.min(this.capacity, bucket.tokens + (now - bucket.last) * this.refillPerMs);
      bucket.last = now;
    }
    if (bucket.tokens < 1) return false;
    bucket.tokens -= 1;
    return true;
  }

  /** Drops buckets that have refilled completely (they behave exactly like absent ones). */
  sweep(): void {
    const now = this.now();
    for (const [address, bucket] of this.buckets) {
      if (bucket.tokens + (now - bucket.last) * this.refillPerMs >= this.capacity) this.buckets.delete(address);
    }
  }

  get trackedAddresses(): number {
    return this.buckets.size;
  }

  private evict(): void {
    this.sweep();
    // Still full: drop the oldest-inserted entries (Map iteration order) to make room.
    for (const address of this.buckets.keys()) {
      if (this.buckets.size < this.maxTracked) break;
      this.buckets.delete(address);
    }
  }
}
