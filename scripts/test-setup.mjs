#!/usr/bin/env node
// Prepares what `npm test` needs on a fresh machine, loudly: the native addon, and speech fixtures
// rendered by espeak-ng and converted by sox (Debian packages, installed here when missing and we
// are root, as on CI). Nothing is skipped silently: a missing prerequisite fails with the reason.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { aptInstall as aptInstallOrThrow } from './apt.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const fixtures = join(root, 'test', 'fixtures', 'generated');

function log(msg) {
  process.stderr.write(`test-setup: ${msg}\n`);
}

function fail(msg) {
  process.stderr.write(`test-setup: FAILED: ${msg}\n`);
  process.exit(1);
}

function have(cmd) {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

function aptInstall(packages, why) {
  try {
    aptInstallOrThrow(packages, why, { log });
  } catch (e) {
    fail(e.message);
  }
}

function ensureAddon() {
  const built = join(root, 'build', 'Release', 'xiaozhi_native.node');
  if (existsSync(built)) return;
  log('native addon not built yet: building from source (npm run build:native)');
  const r = spawnSync(process.execPath, [join(root, 'scripts', 'build-native.mjs')], { stdio: 'inherit', cwd: root });
  if (r.status !== 0) fail('native build failed (see above)');
}

// The phrases mimic what the gateway carries: short assistant answers (TTS) and user questions.
const SPEECH = [
  'Hello! I am your voice assistant. The weather today is sunny with a light breeze, and the temperature will reach twenty three degrees.',
  'Please turn on the living room lights and set an alarm for seven thirty tomorrow morning.',
];

function ensureSpeech() {
  mkdirSync(fixtures, { recursive: true });
  const wav = join(fixtures, 'speech.wav');
  const outputs = [8000, 16000, 24000, 48000].map((rate) => [rate, join(fixtures, `speech-${rate}.s16`)]);
  if (outputs.every(([, f]) => existsSync(f) && statSync(f).size > 0)) return;
  aptInstall(['espeak-ng', 'sox'], 'the speech fixtures (espeak-ng renders speech, sox converts it)');
  if (!have('espeak-ng') || !have('sox')) fail('espeak-ng or sox is still not on PATH after installing');
  execFileSync('espeak-ng', ['-v', 'en-us', '-s', '160', '-w', wav, SPEECH.join(' ')]);
  for (const [rate, file] of outputs) {
    // sox's own high-quality resampler makes the fixtures independent of the code under test.
    execFileSync('sox', [wav, '-r', String(rate), '-c', '1', '-b', '16', '-e', 'signed-integer', '-t', 'raw', file, 'norm', '-3']);
  }
  log(`speech fixtures written to ${fixtures}`);
}

// The Redis and deployment tests start their own redis-server and haproxy on loopback.
function ensureClusterServers() {
  aptInstall(['redis-server', 'haproxy'], 'the Redis cluster and deployment tests (test/redis*.test.ts, test/deployment.test.ts)');
  for (const cmd of ['redis-server', 'haproxy']) {
    if (!have(cmd) && !existsSync(`/usr/sbin/${cmd}`)) fail(`${cmd} is still not on PATH after installing`);
  }
}

ensureAddon();
ensureSpeech();
ensureClusterServers();
