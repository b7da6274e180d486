import { defineConfig } from 'vitest/config';

// glibc gives each thread that allocates its own malloc arena; the LiveKit FFI's threads (tokio,
// WebRTC) then grow RSS that is never returned. Two arenas, as in production (README). Set here,
// before the test workers are forked, because glibc reads it only at process start.
process.env.MALLOC_ARENA_MAX ??= '2';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Native code and real servers: separate processes, generous timeouts, no timing assertions.
    pool: 'forks',
    // One file at a time: the load, e2e and native tiers each use both cores, and timing-sensitive
    // protocol checks (pacing, tts ordering) must not compete with another tier for the CPU.
    fileParallelism: false,
    // @livekit/rtc-node logs every room connect at debug level (on stdout) unless NODE_ENV is
    // 'production' when it loads: the LiveKit tiers' own agents and rooms run in the test process.
    env: { NODE_ENV: 'production' },
    testTimeout: 120_000,
    hookTimeout: 300_000,
    reporters: ['default'],
  },
});
