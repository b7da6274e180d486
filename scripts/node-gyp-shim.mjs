#!/usr/bin/env node
// prebuildify only knows how to drive node-gyp (`node-gyp rebuild --target=… --arch=… --release`).
// scripts/prebuild.mjs points it here instead (PREBUILD_NODE_GYP), and this shim performs the same
// job with cmake-js: a Release build into build/Release, where prebuildify collects the .node. The
// build is incremental (same configuration as `npm run build:native`), so `npm run build:prebuilds`
// right after a source build only copies.
// A Node-API addon is ABI-stable, so --target (the Node version) needs no action; a foreign --arch
// is refused because we do not cross-compile.
import { spawnSync } from 'node:child_process';
import { arch } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const args = process.argv.slice(2);
if (args[0] !== 'rebuild') {
  process.stderr.write(`node-gyp-shim: only 'rebuild' is supported, got: ${args.join(' ')}\n`);
  process.exit(2);
}
const wanted = args.find((a) => a.startsWith('--arch='))?.slice('--arch='.length);
if (wanted && wanted !== arch()) {
  process.stderr.write(`node-gyp-shim: cross-compiling to ${wanted} is not supported on ${arch()}; build on a ${wanted} machine\n`);
  process.exit(2);
}
const build = join(dirname(fileURLToPath(import.meta.url)), 'build-native.mjs');
const flags = args.includes('--debug') ? ['--debug'] : [];
const r = spawnSync(process.execPath, [build, ...flags], { stdio: 'inherit' });
process.exit(r.status ?? 1);
