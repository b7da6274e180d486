// Types of prng.mjs.

export interface Rng {
  /** Uniform uint32. */
  u32(): number;
  /** Uniform float in [0, 1). */
  float(): number;
  /** Uniform integer in [min, max] (inclusive). */
  int(min: number, max: number): number;
  /** Uniform float in [min, max). */
  range(min: number, max: number): number;
  /** A uniformly chosen element of a non-empty array. */
  pick<T>(arr: readonly T[]): T;
  /** n random bytes. */
  bytes(n: number): Uint8Array;
  /** Fills a typed array's bytes with random bits. */
  fill<T extends ArrayBufferView>(view: T): T;
}

export function rng(seed: number): Rng;
