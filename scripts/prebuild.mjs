#!/usr/bin/env node
// Writes prebuilds/<platform>-<arch>/*.node with prebuildify (Node-API: one binary serves every Node
// version >= 20), building through scripts/node-gyp-shim.mjs (cmake-js) instead of node-gyp.
// node-gyp-build loads the result at run time; `npm pack` ships it.
//
// `--arch arm64` on another CPU writes prebuilds/linux-arm64/ instead: a cross build with Debian's
// aarch64 toolchain (scripts/build-native.mjs --arch arm64, cmake/aarch64-linux-gnu.cmake) into
// build-arm64/, stripped and named exactly as prebuildify names its output. prebuildify itself is not
// used for it: it always collects build/Release, which is this machine's own addon.
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { arch } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(join(root, 'package.json'));

function fail(message) {
  process.stderr.write(`prebuild: ${message}\n`);
  process.exit(1);
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
  process.stderr.write(`prebuild: wrote ${dest}\n`);
}

function nativePrebuild() {
  const prebuildify = require('prebuildify');

  // The shim is executable (shebang): prebuildify spawns nodeGyp without a shell on POSIX.
  const shim = join(root, 'scripts', 'node-gyp-shim.mjs');
  prebuildify(
    { cwd: root, napi: true, strip: true, tagLibc: true, nodeGyp: shim, targets: [] },
    (err) => {
      if (err) {
        process.stderr.write(`prebuild: ${err.message}\n`);
        process.exit(1);
      }
      process.stderr.write(`prebuild: wrote ${join(root, 'prebuilds')}\n`);
    },
  );
}
