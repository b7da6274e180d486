#!/usr/bin/env node
// Writes prebuilds/<platform>-<arch>/*.node with prebuildify (Node-API: one binary serves every Node
// version >= 20), building through scripts/node-gyp-shim.mjs (cmake-js) instead of node-gyp.
// node-gyp-build loads the result at run time; `npm pack` ships it.
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(join(root, 'package.json'));
const prebuildify = require('prebuildify');

// The shim is executable (shebang): prebuildify spawns nodeGyp without a shell on POSIX.
const shim = join(root, "scripts", "node-gyp-shim.mjs");
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
