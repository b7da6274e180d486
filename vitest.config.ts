import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Native code and real servers: separate processes, generous timeouts, no timing assertions.
    pool: 'forks',
    // One file at a time: the load, e2e and native tiers each use both cores, and timing-sensitive
    // protocol checks (pacing, tts ordering) must not compete with another tier for the CPU.
    fileParallelism: false,
    testTimeout: 120_000,
    hookTimeout: 300_000,
    reporters: ['default'],
  },
});
