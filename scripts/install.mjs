#!/usr/bin/env node
// `npm install` hook. With a prebuilt binary for this platform (prebuilds/, loaded by node-gyp-build)
// there is nothing to do and no compiler is needed. Otherwise build from source with cmake-js.
// (node-gyp-build's own install command always ends in `node-gyp rebuild`, which has no binding.gyp
// to build here; see binding.gyp.md.)
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { arch, platform } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { LIBOPUS } from './fetch-libopus.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(join(root, 'package.json'));

if (process.env.XIAOZHI_BUILD_FROM_SOURCE !== '1') {
  try {
    const found = require('node-gyp-build').path(root);
    // Loading proves the binary fits this libc/CPU, not just that a file exists.
    require(found);
    // The benchmark-only addon ships next to it (prebuilds/<platform>-<arch>/bench/, see
    // scripts/prebuild.mjs). Without it the gateway works and only `bench pipeline` cannot run,
    // so a missing one is said, never a reason to compile.
    const bench = join(dirname(found), 'bench', 'xiaozhi_bench.node');
    try {
      require(bench);
    } catch {
      process.stderr.write(`xiaozhi-gateway: the benchmark addon ${bench} is missing or does not load; \`bench pipeline\` needs \`node scripts/build-native.mjs\`\n`);
    }
    process.exit(0);
  } catch {
    // no usable binary: build below
  }
}

process.stderr.write(`xiaozhi-gateway: no prebuilt binary usable on ${platform()}-${arch()}; building the native addon from source (cmake-js, C++17, libopus ${LIBOPUS.version} from the npm registry)\n`);
const r = spawnSync(process.execPath, [join(root, 'scripts', 'build-native.mjs')], { stdio: 'inherit', cwd: root });
if (r.status !== 0) {
  process.stderr.write(
    'xiaozhi-gateway: building from source failed. It needs cmake >= 3.15, a C++17 compiler, and the Node.js\n' +
      'headers of this Node (include/node, with openssl/). See binding.gyp.md in the package.\n',
  );
  process.exit(r.status ?? 1);
}
