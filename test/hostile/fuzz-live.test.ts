// CI-length live fuzzing (60 s): the same module as `npm run fuzz:live` (test/hostile/fuzz.mjs), a fixed
// seed so a finding reproduces with `npm run fuzz:live -- --minutes 1 --seed 24301`.
import { expect, it } from 'vitest';
import { runFuzz } from './fuzz.mjs';

it('live fuzzing for 60 s: no crash, no canary loss, no leftovers, no must-stay-zero counter moves', async () => {
  const summary = await runFuzz({ minutes: 1, seed: 24301, workers: 3 });
  console.log(summary.line);
  expect(summary.cases, 'cases run').toBeGreaterThan(200);
  expect({ crashes: summary.crashes, canaryLoss: summary.canaryLoss, leftovers: summary.leftovers, errors: summary.errors, details: summary.details })
    .toEqual({ crashes: 0, canaryLoss: 0, leftovers: 0, errors: 0, details: [] });
}, 180_000);
