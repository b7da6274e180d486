#!/usr/bin/env node
// Live fuzzing of a gateway child process (loopback only): `npm run fuzz:live -- --minutes M [--seed S] [--workers W]`.
// Needs dist/ (npm run build:ts) and the speech fixture (node scripts/test-setup.mjs).
// Prints one summary line; exits non-zero on any crash, canary loss, leftover or must-stay-zero counter move.
import { runFuzz } from '../test/hostile/fuzz.mjs';

const args = process.argv.slice(2);
const arg = (name, fallback) => {
  const i = args.indexOf(`--${name}`);
  if (i < 0) return fallback;
  const v = Number(args[i + 1]);
  if (!Number.isFinite(v) || v <= 0) {
    console.error(`--${name} needs a positive number, got ${args[i + 1]}`);
    process.exit(2);
  }
  return v;
};
const minutes = arg('minutes', 1);
const seed = arg('seed', Date.now() % 0x100000000);
const workers = arg('workers', 3);
console.log(`fuzz-live: ${minutes} min, seed ${seed}, ${workers} workers`);
const summary = await runFuzz({ minutes, seed, workers, log: (line) => console.log(`  ${line}`) });
for (const d of summary.details) console.log(`  finding: ${d}`);
console.log(summary.line);
process.exit(summary.ok ? 0 : 1);
