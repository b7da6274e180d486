#!/usr/bin/env node
// Brings the libopus source tree the addon compiles, from the npm registry, pinned and verified.
//
// Why the registry: libopus is never committed to this repository, and the only hosts builds may
// reach are package registries. The audify@1.10.1 tarball carries the complete upstream libopus 1.5.2
// source tree (vendor/opus, with its CMake and automake source lists; every file identical to the
// upstream v1.5.2 tag apart from CRLF line endings, no DNN weights). We take only that directory;
// none of the package's own code is used and its install scripts never run (`npm pack` of a registry
// spec only downloads the tarball).
//
// Line endings: the package ships the tree with CRLF. We turn every text file back into LF on
// extraction, which makes each file byte-identical to upstream's v1.5.2 tag (compared blob by blob
// when this pin was chosen), so what we compile, diff or patch is upstream's release itself.
//
// Offline builds: set XIAOZHI_LIBOPUS_TARBALL to a local copy of the same tarball; it is verified
// against the same integrity hash. npm's own cache also makes a second `npm pack` offline.
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export const LIBOPUS = Object.freeze({
  version: '1.5.2',
  npmSpec: 'audify@1.10.1',
  tarballName: 'audify-1.10.1.tgz',
  integrity:
    'sha512-DXq0YxyD4pk7EhIyOqFRaEfM7eia55cuYuLE+mAAfnx/HsWOCvfrDQA4MgctYxXJ29a4weDB07etncPMzJTGYA==',
  pathInTarball: 'package/vendor/opus',
  // The tree has no package_version file; the libtool version in configure.ac is the release's
  // own stamp (1.5.1 is 10:0:10, 1.5.2 is 10:1:10). The integrity hash is what pins the release;
  // this only catches a hash bumped to a package that carries another libopus.
  libtoolVersion: { OPUS_LT_CURRENT: '10', OPUS_LT_REVISION: '1', OPUS_LT_AGE: '10' },
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

/** CRLF -> LF in every text file under `dir` (a file with a NUL byte is binary and left alone). */
function normaliseLineEndings(dir) {
  let changed = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const file = join(dir, entry.name);
    if (entry.isDirectory()) {
      changed += normaliseLineEndings(file);
      continue;
    }
    if (!entry.isFile()) continue;
    const bytes = readFileSync(file);
    if (bytes.includes(0) || !bytes.includes(0x0d)) continue;
    const text = bytes.toString('latin1');  // byte-preserving: only \r\n pairs change
    const lf = text.replace(/\r\n/g, '\n');
    if (lf !== text) {
      writeFileSync(file, Buffer.from(lf, 'latin1'));
      changed++;
    }
  }
  return changed;
}

function checkVersion(tree) {
  const configure = readFileSync(join(tree, 'configure.ac'), 'utf8');
  for (const [name, want] of Object.entries(LIBOPUS.libtoolVersion)) {
    const got = new RegExp(`^${name}=(\\d+)`, 'm').exec(configure)?.[1];
    if (got !== want) {
      fail(`unexpected libopus in ${LIBOPUS.npmSpec}: configure.ac has ${name}=${got}, libopus ${LIBOPUS.version} has ${want}`);
    }
  }
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
    const relined = normaliseLineEndings(tree);
    checkVersion(tree);
    rmSync(libopusDir, { recursive: true, force: true });
    mkdirSync(dirname(libopusDir), { recursive: true });
    renameSync(tree, libopusDir);
    writeFileSync(marker, LIBOPUS.integrity + '\n');
    if (!quiet) process.stderr.write(`fetch-libopus: libopus ${LIBOPUS.version} verified and unpacked to ${libopusDir} (${relined} files CRLF -> LF)\n`);
    return libopusDir;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const dir = ensureLibopus();
  if (process.argv.includes('--print-dir')) process.stdout.write(dir + '\n');
}
