// Installs the Debian packages a test tier needs: with apt-get when we are root (CI), otherwise the
// error names the command to run. One implementation for test-setup, the arm64 root and the native
// tier.
//
// Used as a module (aptInstall throws) or as a command, which exits 1 with the reason on stderr:
//   node scripts/apt.mjs "<what needs them>" package...
import { spawnSync } from 'node:child_process';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

// Another apt run on the machine (unattended upgrades, a second tier's setup) holds the dpkg lock
// for a while; waiting for it is what a person would do, failing at once is not.
const LOCK_WAIT = ['-o', 'DPkg::Lock::Timeout=300'];

export function missingPackages(packages) {
  return packages.filter((p) => spawnSync('dpkg', ['-s', p], { stdio: 'ignore' }).status !== 0);
}

export function aptInstall(packages, why, { recommends = true, log = (m) => process.stderr.write(`apt: ${m}\n`) } = {}) {
  const missing = missingPackages(packages);
  if (missing.length === 0) return;
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  const hasApt = spawnSync('sh', ['-c', 'command -v apt-get'], { stdio: 'ignore' }).status === 0;
  if (!isRoot || !hasApt) {
    throw new Error(`${why} needs the Debian packages ${missing.join(' ')}; install them: sudo apt-get install -y ${missing.join(' ')}`);
  }
  log(`installing ${missing.join(' ')} (${why}) with apt-get`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const apt = (args) => spawnSync('apt-get', [...LOCK_WAIT, ...args], { stdio: ['ignore', 'inherit', 'inherit'], env }).status;
  // A mirror that answers badly once (a partial index, a dropped connection) usually answers the
  // second time; the failure after that is reported.
  let status = apt(['update', '-qq']);
  if (status !== 0) status = apt(['update', '-qq']);
  if (status !== 0) throw new Error(`apt-get update failed (exit ${status}) while installing ${missing.join(' ')} for ${why}`);
  const install = ['install', '-y', '-qq', ...(recommends ? [] : ['--no-install-recommends']), ...missing];
  status = apt(install);
  if (status !== 0) status = apt(install);
  if (status !== 0) throw new Error(`apt-get install ${missing.join(' ')} failed (exit ${status}) for ${why}`);
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const [why, ...packages] = process.argv.slice(2);
  if (!why || packages.length === 0) {
    process.stderr.write('usage: node scripts/apt.mjs "<what needs them>" package...\n');
    process.exit(2);
  }
  try {
    aptInstall(packages, why);
  } catch (e) {
    process.stderr.write(`apt: FAILED: ${e.message}\n`);
    process.exit(1);
  }
}
