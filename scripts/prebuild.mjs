#!/usr/bin/env node
// Writes prebuilds/<platform>-<arch>/*.node with prebuildify (Node-API: one binary serves every Node
// version >= 20), building through scripts/node-gyp-shim.mjs (cmake-js) instead of node-gyp.
// node-gyp-build loads the result at run time; `npm pack` ships it.
// The same build makes the benchmark-only addon (build/Release/bench/xiaozhi_bench.node); it is
// copied, stripped like the product addon, to prebuilds/<platform>-<arch>/bench/, where
// bench/native.ts looks for it. A subdirectory, because node-gyp-build would take any .node file
// next to the product addon as a candidate for it.
//
// `--arch arm64` on another CPU writes prebuilds/linux-arm64/ instead: a cross build with Debian's
// aarch64 toolchain (scripts/build-native.mjs --arch arm64, cmake/aarch64-linux-gnu.cmake) into
// build-arm64/, stripped and named exactly as prebuildify names its output. prebuildify itself is not
// used for it: it always collects build/Release, which is this machine's own addon.
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { arch, platform } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(join(root, 'package.json'));

function fail(message) {
  process.stderr.write(`prebuild: ${message}\n`);
  process.exit(1);
}

/** Copies a built bench addon to <dir>/bench/xiaozhi_bench.node and strips it with `strip`. */
function copyBenchAddon(built, dir, strip) {
  if (!existsSync(built)) fail(`${built} was not built`);
  const benchDir = join(dir, 'bench');
  mkdirSync(benchDir, { recursive: true });
  const target = join(benchDir, 'xiaozhi_bench.node');
  copyFileSync(built, target);
  if (strip) {
    const r = spawnSync(strip[0], [...strip.slice(1), target], { stdio: 'inherit' });
    if (r.status !== 0) fail(`${strip[0]} ${target} exited with ${r.status ?? r.error?.message ?? r.signal}`);
  }
}

const args = process.argv.slice(2);
const wanted = args.includes('--arch') ? args[args.indexOf('--arch') + 1] : arch();
if (wanted !== arch()) {
  if (wanted !== 'arm64') fail(`--arch ${wanted}: only arm64 can be cross-compiled (from ${arch()})`);
  crossArm64();
} else {
  nativePrebuild();
}

function crossArm64() {
  const build = spawnSync(process.execPath, [join(root, 'scripts', 'build-native.mjs'), '--arch', 'arm64'], {
    stdio: 'inherit',
  });
  if (build.status !== 0) fail(`cross build failed (exit ${build.status ?? build.signal})`);
  const { name } = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
  const dir = join(root, 'prebuilds', 'linux-arm64');
  // prebuildify's name for a Node-API build tagged with its libc: <package>.glibc.node
  const dest = join(dir, `${name.replace(/\//g, '+')}.glibc.node`);
  mkdirSync(dir, { recursive: true });
  copyFileSync(join(root, 'build-arm64', 'Release', 'xiaozhi_native.node'), dest);
  const strip = spawnSync('aarch64-linux-gnu-strip', ['--strip-all', dest], { stdio: 'inherit' });
  if (strip.status !== 0) fail(`aarch64-linux-gnu-strip failed (exit ${strip.status ?? strip.error?.message})`);
  copyBenchAddon(join(root, 'build-arm64', 'Release', 'bench', 'xiaozhi_bench.node'), dir, ['aarch64-linux-gnu-strip', '--strip-all']);
  process.stderr.write(`prebuild: wrote ${dest} and its bench addon\n`);
}

function nativePrebuild() {
  const prebuildify = require('prebuildify');
  const dir = join(root, 'prebuilds', `${platform()}-${arch()}`);
  const strip = platform() === 'darwin' ? ['strip', '-Sx'] : platform() === 'linux' ? ['strip', '--strip-all'] : null;

  // The shim is executable (shebang): prebuildify spawns nodeGyp without a shell on POSIX.
  const shim = join(root, 'scripts', 'node-gyp-shim.mjs');
  prebuildify(
    { cwd: root, napi: true, strip: true, tagLibc: true, nodeGyp: shim, targets: [] },
    (err) => {
      if (err) fail(err.message);
      copyBenchAddon(join(root, 'build', 'Release', 'bench', 'xiaozhi_bench.node'), dir, strip);
      process.stderr.write(`prebuild: wrote ${join(root, 'prebuilds')}\n`);
    },
  );
}
