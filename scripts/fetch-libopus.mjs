#!/usr/bin/env node
// Brings the libopus source tree the addon compiles, from the npm registry, pinned and verified.
//
// Why the registry: libopus is never committed to this repository, and the only hosts builds may
// reach are package registries. The @discordjs/opus tarball carries the complete upstream libopus
// source (deps/opus, with its CMake and automake source lists). We take only that directory; none of
// the package's own code is used and its install scripts never run (`npm pack` of a registry spec
// only downloads the tarball).
//
// Offline builds: set XIAOZHI_LIBOPUS_TARBALL to a local copy of the same tarball; it is verified
// against the same integrity hash. npm's own cache also makes a second `npm pack` offline.
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const LIBOPUS = Object.freeze({
  version: '1.3.1',
  npmSpec: '@discordjs/opus@0.10.0',
  tarballName: 'discordjs-opus-0.10.0.tgz',
  integrity:
    'sha512-HHEnSNrSPmFEyndRdQBJN2YE6egyXS9JUnJWyP6jficK0Y+qKMEZXyYTgmzpjrxXP1exM/hKaNP7BRBUEWkU5w==',
  pathInTarball: 'package/deps/opus',
});

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
export const libopusDir = process.env.XIAOZHI_LIBOPUS_DIR
  ? resolve(process.env.XIAOZHI_LIBOPUS_DIR)
  : join(root, 'deps', `libopus-${LIBOPUS.version}`);
const marker = join(libopusDir, '.xiaozhi-integrity');

function sri(file) {
  return 'sha512-' + createHash('sha512').update(readFileSync(file)).digest('base64');
}

function fail(message) {
  process.stderr.write(`fetch-libopus: ${message}\n`);
  process.exit(1);
}

function obtainTarball(workDir) {
  const local = process.env.XIAOZHI_LIBOPUS_TARBALL;
  if (local) {
    if (!existsSync(local)) fail(`XIAOZHI_LIBOPUS_TARBALL=${local} does not exist`);
    return resolve(local);
  }
  const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
  try {
    execFileSync(npm, ['pack', LIBOPUS.npmSpec, '--pack-destination', workDir, '--prefer-offline', '--silent'], {
      stdio: ['ignore', 'ignore', 'pipe'],
      shell: process.platform === 'win32',
    });
  } catch (err) {
    fail(
      `could not download ${LIBOPUS.npmSpec} from the npm registry (${String(err.stderr || err.message).trim()}).\n` +
        `  Fix: check registry access, or set XIAOZHI_LIBOPUS_TARBALL to a local copy of ${LIBOPUS.tarballName}.`,
    );
  }
  return join(workDir, LIBOPUS.tarballName);
}

export function ensureLibopus({ quiet = false } = {}) {
  if (existsSync(marker) && readFileSync(marker, 'utf8').trim() === LIBOPUS.integrity) return libopusDir;
  const work = mkdtempSync(join(tmpdir(), 'xiaozhi-libopus-'));
  try {
    const tarball = obtainTarball(work);
    const actual = sri(tarball);
    if (actual !== LIBOPUS.integrity) {
      fail(
        `integrity mismatch for ${tarball}\n  expected ${LIBOPUS.integrity}\n  received ${actual}\n` +
          '  The tarball is not the pinned libopus source; refusing to build from it.',
      );
    }
    const unpack = join(work, 'unpack');
    mkdirSync(unpack);
    execFileSync('tar', ['-xzf', tarball, '-C', unpack, LIBOPUS.pathInTarball], { stdio: 'inherit' });
    const tree = join(unpack, LIBOPUS.pathInTarball);
    const versionFile = readFileSync(join(tree, 'package_version'), 'utf8');
    if (!versionFile.includes(`PACKAGE_VERSION="${LIBOPUS.version}"`)) {
      fail(`unexpected libopus version in ${LIBOPUS.npmSpec}: ${versionFile.trim()}`);
    }
    rmSync(libopusDir, { recursive: true, force: true });
    mkdirSync(dirname(libopusDir), { recursive: true });
    renameSync(tree, libopusDir);
    writeFileSync(marker, LIBOPUS.integrity + '\n');
    if (!quiet) process.stderr.write(`fetch-libopus: libopus ${LIBOPUS.version} verified and unpacked to ${libopusDir}\n`);
    return libopusDir;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const dir = ensureLibopus();
  if (process.argv.includes('--print-dir')) process.stdout.write(dir + '\n');
}
