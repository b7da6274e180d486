#!/usr/bin/env node
// A Debian arm64 root for the arm64 test tier, built with debootstrap from Debian's own packages and
// kept in a cache directory outside the repository (reused when present):
//   - the runtime of the arm64 binaries under qemu-user: `qemu-aarch64 -L <root> <binary>` (glibc,
//     libstdc++, libssl3, and Debian's nodejs for the JS check of the prebuilt addon);
//   - the target libraries the cross-compiled GoogleTest suite links against (libgtest-dev,
//     libssl-dev), found through cmake/aarch64-linux-gnu.cmake with XZ_ARM64_ROOT=<root>.
//
// Why no debootstrap second stage: the second stage runs dpkg and every maintainer script inside the
// root, which needs the kernel to run arm64 executables transparently (binfmt_misc + qemu). In
// containers (this sandbox, CI) binfmt_misc is usually not mounted and mounting it changes the host
// kernel's state. So the first stage (`--foreign`: resolves and downloads every package, with its
// dependencies, and verifies them against the signed Release file) is followed by extracting all the
// downloaded .debs, as mmdebstrap's `extract` variant does. Maintainer scripts do not run; nothing
// the tests use needs them (Debian's ld.so searches /usr/lib/aarch64-linux-gnu without a cache).
//
// Usage: node scripts/arm64-root.mjs [--rebuild] [--tools]     prints the root's path on stdout
//   --tools also installs (as root, with apt-get) the host side of the arm64 tier: Debian's aarch64
//   cross compilers, qemu-user, cmake and ninja.
//   XIAOZHI_ARM64_ROOT      where the root lives (default ~/.cache/xiaozhi-gateway/arm64-root)
//   XIAOZHI_DEBIAN_MIRROR   Debian mirror (default http://deb.debian.org/debian)
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { aptInstall } from './apt.mjs';

export const SUITE = 'bookworm';
// Everything the arm64 tier runs or links; debootstrap adds the dependencies (libc6, libgcc-s1, ...).
export const PACKAGES = ['nodejs', 'libstdc++6', 'libssl3', 'libssl-dev', 'libgtest-dev'];
// Bumped when PACKAGES or the way the root is made changes, so an older cached root is rebuilt.
const STAMP_VERSION = `1 ${SUITE} ${PACKAGES.join(',')}`;

// Host packages of the arm64 tier (test/arm64.test.ts). qemu-user without its recommended
// qemu-user-binfmt: binaries are started through qemu-aarch64 explicitly.
export const HOST_TOOLS = ['gcc-aarch64-linux-gnu', 'g++-aarch64-linux-gnu', 'qemu-user', 'cmake', 'ninja-build'];

export function arm64RootDir() {
  if (process.env.XIAOZHI_ARM64_ROOT) return resolve(process.env.XIAOZHI_ARM64_ROOT);
  const cache = process.env.XDG_CACHE_HOME || join(homedir(), '.cache');
  return join(cache, 'xiaozhi-gateway', 'arm64-root');
}

function log(msg) {
  process.stderr.write(`arm64-root: ${msg}\n`);
}

function run(cmd, args, what) {
  const r = spawnSync(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 });
  if (r.error || r.status !== 0) {
    const out = `${r.stdout ?? ''}${r.stderr ?? ''}`.trim().split('\n').slice(-30).join('\n');
    throw new Error(`${what} failed (${cmd} ${args.join(' ')}: ${r.error?.message ?? `exit ${r.status}`})\n${out}`);
  }
  return r.stdout;
}

// Host tools: debootstrap (first stage), dpkg-deb + tar (extraction), the cross compilers and qemu.
export function ensureHostPackages(packages, why) {
  aptInstall(packages, why, { recommends: false, log });
}

export function rootIsReady(dir = arm64RootDir()) {
  const stamp = join(dir, '.xiaozhi-arm64-root');
  return existsSync(stamp) && readFileSync(stamp, 'utf8').split('\n')[0] === STAMP_VERSION;
}

// Returns the root directory, building it first when it is missing or stale.
export function ensureArm64Root({ rebuild = false } = {}) {
  const dir = arm64RootDir();
  if (!rebuild && rootIsReady(dir)) return dir;
  // The keyring lets debootstrap verify the signed Release file (present on Debian, not on Ubuntu).
  ensureHostPackages(['debootstrap', 'debian-archive-keyring'], 'the Debian arm64 root');
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) {
    // debootstrap refuses to run unprivileged (it creates device nodes and chowns files).
    throw new Error('building the Debian arm64 root needs root privileges (debootstrap); run as root or set XIAOZHI_ARM64_ROOT to a prepared root');
  }
  const mirror = process.env.XIAOZHI_DEBIAN_MIRROR || 'http://deb.debian.org/debian';
  const started = Date.now();
  // Built next to the final place and renamed at the end: an interrupted build never looks ready.
  const work = `${dir}.partial`;
  rmSync(work, { recursive: true, force: true });
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dirname(dir), { recursive: true });
  log(`debootstrap --foreign ${SUITE} arm64 (${PACKAGES.join(', ')}) from ${mirror} into ${work}`);
  run(
    'debootstrap',
    ['--foreign', '--arch=arm64', '--variant=minbase', `--include=${PACKAGES.join(',')}`, SUITE, work, mirror],
    'debootstrap (first stage)',
  );
  const firstStage = (Date.now() - started) / 1000;
  const archives = join(work, 'var', 'cache', 'apt', 'archives');
  const debs = readdirSync(archives).filter((f) => f.endsWith('.deb'));
  for (const deb of debs) {
    // --keep-directory-symlink: bookworm's root is merged-/usr (/lib -> usr/lib), and packages still
    // ship files under /lib; tar must write through the symlink, not replace it.
    run('sh', ['-c', 'dpkg-deb --fsys-tarfile "$1" | tar -x --keep-directory-symlink -C "$2"', 'extract', join(archives, deb), work], `extracting ${deb}`);
  }
  for (const deb of debs) rmSync(join(archives, deb));
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  writeFileSync(
    join(work, '.xiaozhi-arm64-root'),
    `${STAMP_VERSION}\nbuilt ${new Date().toISOString()} from ${mirror}: ${debs.length} packages, ` +
      `debootstrap first stage ${firstStage.toFixed(1)} s, total ${seconds} s\n`,
  );
  renameSync(work, dir);
  log(`${debs.length} packages extracted into ${dir} in ${seconds} s (debootstrap first stage ${firstStage.toFixed(1)} s)`);
  return dir;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    if (process.argv.includes('--tools')) ensureHostPackages(HOST_TOOLS, 'the arm64 tier (cross compilers, qemu-user)');
    process.stdout.write(`${ensureArm64Root({ rebuild: process.argv.includes('--rebuild') })}\n`);
  } catch (err) {
    process.stderr.write(`arm64-root: FAILED: ${err.message}\n`);
    process.exit(1);
  }
}
