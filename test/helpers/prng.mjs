// Deterministic pseudo-random numbers for tests (sfc32 seeded through splitmix32): the same seed
// gives the same sequence on every machine, so a failure always reproduces. Plain JS (types in
// prng.d.mts) so both the vitest files and scripts/fuzz-live.mjs (plain Node) load this one copy.

function splitmix32(seed) {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return (z ^ (z >>> 16)) >>> 0;
  };
}

/** @param {number} seed */
export function rng(seed) {
  const init = splitmix32(seed);
  let a = init(), b = init(), c = init(), d = init();
  const u32 = () => {
    const t = (((a + b) >>> 0) + d) >>> 0;
    d = (d + 1) >>> 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) >>> 0;
    c = ((c << 21) | (c >>> 11)) >>> 0;
    c = (c + t) >>> 0;
    return t;
  };
  for (let i = 0; i < 12; i++) u32();
  const float = () => u32() / 4294967296;
  return {
    u32,
    float,
    int: (min, max) => min + Math.floor(float() * (max - min + 1)),
    range: (min, max) => min + float() * (max - min),
    pick: (arr) => arr[Math.floor(float() * arr.length)],
    bytes(n) {
      const out = new Uint8Array(n);
      for (let i = 0; i < n; i++) out[i] = u32() & 0xff;
      return out;
    },
    fill(view) {
      const bytes = new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
      const words = Math.floor(bytes.length / 4);
      for (let i = 0; i < words; i++) {
        const v = u32();
        bytes[4 * i] = v & 0xff;
        bytes[4 * i + 1] = (v >>> 8) & 0xff;
        bytes[4 * i + 2] = (v >>> 16) & 0xff;
        bytes[4 * i + 3] = v >>> 24;
      }
      for (let i = words * 4; i < bytes.length; i++) bytes[i] = u32() & 0xff;
      return view;
    },
  };
}
