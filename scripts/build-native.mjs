#!/usr/bin/env node
// Builds the native addon from source with cmake-js, offline apart from the pinned libopus tarball:
//   1. libopus source from the npm registry, verified by integrity hash (fetch-libopus.mjs)
//   2. Node-API headers from cmake-js's node-api-headers package; OpenSSL headers from the local
//      Node install (npm's nodedir, else <prefix of the running node>/include/node)
//   3. cmake-js build -> build/Release/xiaozhi_native.node (where node-gyp-build looks)
// Used by `npm install` (when no prebuilt binary fits), `npm run build:native` and the prebuild shim.
// Flags: --rebuild (clean first), --debug, --asan (debug build with AddressSanitizer+UBSan),
// --arch arm64 (on another CPU: cross-compile with Debian's aarch64 toolchain into build-arm64/,
// cmake/aarch64-linux-gnu.cmake; scripts/prebuild.mjs uses it for prebuilds/linux-arm64).
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { arch, availableParallelism } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ensureLibopus } from './fetch-libopus.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(join(root, 'package.json'));

function fail(message) {
  process.stderr.write(`build-native: ${message}\n`);
  process.exit(1);
}

export function nodeIncludeDir() {
  const candidates = [];
  const nodedir = process.env.npm_config_nodedir || process.env.NODEDIR;
  if (nodedir) candidates.push(join(nodedir, 'include', 'node'));
  candidates.push(resolve(dirname(process.execPath), '..', 'include', 'node'));
  for (const dir of candidates) if (existsSync(join(dir, 'openssl', 'evp.h'))) return dir;
  fail(
    `Node.js headers with OpenSSL not found (looked in: ${candidates.join(', ')}).\n` +
      '  The addon uses the OpenSSL built into Node and needs its headers, which ship with every official\n' +
      '  Node.js install (include/node/openssl). Fix: set npm_config_nodedir to your Node.js install prefix.',
  );
}

function resolveTool(pkg, what) {
  try {
    return require.resolve(pkg);
  } catch {
    fail(`${what} is not installed. Building from source needs the dev dependencies: run \`npm install\` in ${root}.`);
  }
}

const args = process.argv.slice(2);
const archArg = args.includes('--arch') ? args[args.indexOf('--arch') + 1] : undefined;
if (archArg !== undefined && archArg !== 'arm64' && archArg !== arch()) {
  fail(`--arch ${archArg}: only arm64 can be cross-compiled (from ${arch()}), or this machine's own arch`);
}
const cross = archArg === 'arm64' && arch() !== 'arm64';
// A cross build has its own build directory: build/ stays this machine's addon (node-gyp-build loads it).
const buildDir = join(root, cross ? 'build-arm64' : 'build');
const configured = ['build.ninja', 'Makefile'].some((f) => existsSync(join(buildDir, f)));
const asan = args.includes('--asan');
const debug = asan || args.includes('--debug');

const libopusDir = ensureLibopus({ quiet: true });
// `cmake-js build` reuses the cache; a build directory configured for another libopus tree (an
// older pin) must be configured afresh, or it keeps compiling the old sources.
const cache = join(buildDir, 'CMakeCache.txt');
const sameLibopus =
  existsSync(cache) && /^XZ_LIBOPUS_DIR:\w+=(.*)$/m.exec(readFileSync(cache, 'utf8'))?.[1] === libopusDir;
const rebuild = args.includes('--rebuild') || !configured || !sameLibopus;
const cmakeJs = join(dirname(resolveTool('cmake-js/package.json', 'cmake-js')), 'bin', 'cmake-js');
const addonApiDir = resolve(root, require(resolveTool('node-addon-api', 'node-addon-api')).include_dir);

const cmakeArgs = [
  cmakeJs,
  rebuild ? 'rebuild' : 'build',
  '--directory', root,
  '--out', buildDir,
  '--config', debug ? 'Debug' : 'Release',
  '--parallel', String(Math.max(1, availableParallelism())),
  `--CDXZ_LIBOPUS_DIR=${libopusDir}`,
  `--CDXZ_NODE_INCLUDE_DIR=${nodeIncludeDir()}`,
  `--CDXZ_NODE_ADDON_API_DIR=${addonApiDir}`,
];
if (cross) cmakeArgs.push(`--CDCMAKE_TOOLCHAIN_FILE=${join(root, 'cmake', 'aarch64-linux-gnu.cmake')}`);
if (asan) {
  const flags = '-fsanitize=address,undefined -fno-omit-frame-pointer';
  cmakeArgs.push(`--CDCMAKE_C_FLAGS=${flags}`, `--CDCMAKE_CXX_FLAGS=${flags}`, `--CDCMAKE_SHARED_LINKER_FLAGS=${flags}`);
}
const result = spawnSync(process.execPath, cmakeArgs, { cwd: root, stdio: 'inherit' });
if (result.status !== 0) fail(`cmake-js exited with ${result.status ?? result.signal}`);
