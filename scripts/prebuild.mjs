#!/usr/bin/env node
// Writes prebuilds/<platform>-<arch>/*.node with prebuildify (Node-API: one binary serves every Node
// version >= 20), building through scripts/node-gyp-shim.mjs (cmake-js) instead of node-gyp.
// node-gyp-build loads the result at run time; `npm pack` ships it.
// The same build makes the benchmark-only addon (build/Release/bench/xiaozhi_bench.node); it is
// copied, stripped like the product addon, to prebuilds/<platform>-<arch>/bench/, where
// bench/native.ts looks for it. A subdirectory, because node-gyp-build would take any .node file
// next to the product addon as a candidate for it.
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { arch, platform } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(join(root, 'package.json'));
const prebuildify = require('prebuildify');

function fail(message) {
  process.stderr.write(`prebuild: ${message}\n`);
  process.exit(1);
}

function copyBenchAddon() {
  const built = join(root, 'build', 'Release', 'bench', 'xiaozhi_bench.node');
  if (!existsSync(built)) fail(`${built} was not built`);
  const dir = join(root, 'prebuilds', `${platform()}-${arch()}`, 'bench');
  mkdirSync(dir, { recursive: true });
  const target = join(dir, 'xiaozhi_bench.node');
  copyFileSync(built, target);
  if (platform() === 'linux' || platform() === 'darwin') {
    const r = spawnSync('strip', platform() === 'darwin' ? [target, '-Sx'] : [target, '--strip-all'], { stdio: 'inherit' });
    if (r.status !== 0) fail(`strip ${target} exited with ${r.status ?? r.signal}`);
  }
}

// The shim is executable (shebang): prebuildify spawns nodeGyp without a shell on POSIX.
const shim = join(root, "scripts", "node-gyp-shim.mjs");
prebuildify(
  { cwd: root, napi: true, strip: true, tagLibc: true, nodeGyp: shim, targets: [] },
  (err) => {
    if (err) fail(err.message);
    copyBenchAddon();
    process.stderr.write(`prebuild: wrote ${join(root, 'prebuilds')}\n`);
  },
);
