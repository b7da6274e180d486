// Native correctness: builds and runs the GoogleTest suite over native/dsp (native/tests/*_test.cpp),
// then a short libFuzzer smoke run of each target in native/fuzz/ under ASan + UBSan.
//
// Prerequisites are Debian packages (cmake, ninja-build, g++, libgtest-dev, libssl-dev; clang and its
// libFuzzer runtime for the fuzzers). When one is missing and we are root (CI), it is installed with
// apt-get; otherwise the test fails with the command to run. Nothing is skipped silently.
//
// The same steps by hand:
//   node scripts/fetch-libopus.mjs
//   cmake -S . -B build-native-tests -G Ninja -DXZ_NATIVE_TESTS=ON -DXZ_LIBOPUS_DIR=$PWD/deps/libopus-1.5.2 \
//     -DXZ_NODE_INCLUDE_DIR=/usr/include/node -DCMAKE_BUILD_TYPE=Release
//   cmake --build build-native-tests && ./build-native-tests/xz_native_tests
// and for the fuzzers see FUZZ_SANITIZERS / buildFuzzers() below.
import { execFileSync, spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { failureLines, runGtest, suiteResult, tail, type GtestReport } from './helpers/gtest.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const testBuildDir = join(root, 'build-native-tests');
const fuzzBuildDir = join(root, 'build-fuzz');
const libopusDir = join(root, 'deps', 'libopus-1.5.2');

const MINUTE = 60_000;

function log(msg: string): void {
  process.stdout.write(`native.test: ${msg}\n`);
}

function have(cmd: string, args: string[] = ['--version']): boolean {
  const r = spawnSync(cmd, args, { stdio: 'ignore' });
  return r.error === undefined && r.status === 0;
}

// scripts/apt.mjs (shared with test-setup and the arm64 root): installs as root, or says what to run.
function aptInstall(packages: string[], why: string): void {
  if (packages.length === 0) return;
  const r = spawnSync(process.execPath, [join(root, 'scripts', 'apt.mjs'), why, ...packages], { stdio: ['ignore', 'inherit', 'pipe'], encoding: 'utf8' });
  if (r.status !== 0) throw new Error(r.stderr.trim() || `node scripts/apt.mjs exited ${r.status}`);
}

// Runs a build step; on failure the error carries the command and the end of its output.
function step(cmd: string, args: string[], timeoutMs: number, cwd = root): string {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8', timeout: timeoutMs, maxBuffer: 256 * 1024 * 1024 });
  if (r.error || r.status !== 0) {
    const why = r.error ? String(r.error.message) : `exit ${r.status}${r.signal ? ` (${r.signal})` : ''}`;
    throw new Error(`${cmd} ${args.join(' ')} failed: ${why}\n${tail(r.stdout)}\n${tail(r.stderr)}`);
  }
  return r.stdout;
}

function nodeIncludeDir(): string {
  const candidates = [join(dirname(dirname(process.execPath)), 'include', 'node'), '/usr/include/node'];
  const found = candidates.find((d) => existsSync(join(d, 'openssl', 'evp.h')));
  if (!found) {
    throw new Error(
      `Node.js headers with openssl/ not found (looked in ${candidates.join(', ')}); ` +
        'install the Node.js headers (Debian: apt-get install -y libnode-dev) or use an official Node.js build',
    );
  }
  return found;
}

function ensureLibopus(): void {
  step(process.execPath, [join(root, 'scripts', 'fetch-libopus.mjs')], 10 * MINUTE);
  if (!existsSync(join(libopusDir, 'include', 'opus.h'))) {
    throw new Error(`libopus source tree missing at ${libopusDir} after scripts/fetch-libopus.mjs`);
  }
}

function ensureGtestPrerequisites(): void {
  const missing: string[] = [];
  if (!have('cmake')) missing.push('cmake');
  if (!have('ninja')) missing.push('ninja-build');
  if (!have('c++')) missing.push('g++');
  if (!['/usr/include', '/usr/local/include'].some((d) => existsSync(join(d, 'gtest', 'gtest.h')))) {
    missing.push('libgtest-dev');
  }
  if (!['/usr/include', '/usr/local/include'].some((d) => existsSync(join(d, 'openssl', 'evp.h')))) {
    missing.push('libssl-dev');
  }
  aptInstall(missing, 'the native GoogleTest suite');
}

function cacheHas(dir: string, ...entries: string[]): boolean {
  const cache = join(dir, 'CMakeCache.txt');
  if (!existsSync(cache) || !existsSync(join(dir, 'build.ninja'))) return false;
  const text = readFileSync(cache, 'utf8');
  return entries.every((e) => text.includes(e));
}

// ---------------------------------------------------------------------------------------------------
// GoogleTest

// The suites of native/tests/{convert,packet,buffer_pool,aes_ctr,opus_codec}_test.cpp. Each must have
// run and passed; the overall exit code also covers every other suite in the binary.
const EXPECTED_SUITES = [
  'ConvertReference',
  'ConvertLevels',
  'F32ToS16',
  'F32ToS16Exhaustive',
  'S16ToF32',
  'PacketHeader',
  'ParseDatagram',
  'ReplayWindow',
  'DownlinkIvScheme',
  'BufferPool',
  'BufferPoolConcurrency',
  'PooledBuffer',
  'AesCtrOpenSsl',
  'AesCtrKnownAnswer',
  'AesCtr',
  'OpusInfo',
  'OpusFrameTable',
  'OpusEncoderConfigValidation',
  'OpusDecoderConfigValidation',
  'OpusEncoder',
  'OpusDecoder',
  'Rates/OpusRoundTrip',
  'OpusPacketInspection',
];

describe('native GoogleTest suite (native/tests)', () => {
  let run: SpawnSyncReturns<string>;
  let report: GtestReport | undefined;
  let reportError = '';

  beforeAll(() => {
    ensureGtestPrerequisites();
    ensureLibopus();
    // The libopus path is part of the check: a directory configured for an older pin is reconfigured.
    if (!cacheHas(testBuildDir, 'XZ_NATIVE_TESTS:BOOL=ON', 'CMAKE_GENERATOR:INTERNAL=Ninja', `=${libopusDir}\n`)) {
      log('configuring build-native-tests');
      step(
        'cmake',
        [
          '-S', root, '-B', testBuildDir, '-G', 'Ninja', '-DXZ_NATIVE_TESTS=ON', `-DXZ_LIBOPUS_DIR=${libopusDir}`,
          `-DXZ_NODE_INCLUDE_DIR=${nodeIncludeDir()}`, '-DCMAKE_BUILD_TYPE=Release',
        ],
        5 * MINUTE,
      );
    }
    log('building xz_native_tests');
    step('cmake', ['--build', testBuildDir], 40 * MINUTE);
    let seconds: number;
    ({ run, report, reportError, seconds } = runGtest(join(testBuildDir, 'xz_native_tests'), [], { cwd: root, timeoutMs: 20 * MINUTE, log, tmpPrefix: 'xz-gtest-' }));
    log(`xz_native_tests exit ${run.status ?? run.signal} after ${seconds.toFixed(1)} s`);
  }, 75 * MINUTE);

  it('builds and passes: gtest exits 0', () => {
    expect(run.error, String(run.error)).toBeUndefined();
    expect(run.status, `xz_native_tests failed:\n${failureLines(run)}\n${tail(run.stderr)}`).toBe(0);
    expect(report, `no JSON report: ${reportError}`).toBeDefined();
    expect(report!.failures).toBe(0);
    expect(report!.tests).toBeGreaterThan(100);
  });

  it.each(EXPECTED_SUITES)('suite %s ran and passed', (name) => {
    expect(report, `no JSON report: ${reportError}`).toBeDefined();
    const suite = report!.testsuites.find((s) => s.name === name);
    expect(suite, `suite ${name} is not in the binary (was its file compiled?)`).toBeDefined();
    const { ran, failures } = suiteResult(suite!);
    expect(ran, `suite ${name} ran no test`).toBeGreaterThan(0);
    expect(failures, failures.join('\n')).toEqual([]);
    expect(suite!.failures).toBe(0);
  });
});

// ---------------------------------------------------------------------------------------------------
// libFuzzer smoke run

const FUZZ_SANITIZERS = ['-fsanitize=address,undefined', '-fno-sanitize-recover=all', '-fno-omit-frame-pointer', '-g'];
const FUZZERS = ['packet_fuzz', 'opus_decode_fuzz'] as const;
const FUZZ_SECONDS = 20;

function ensureClangWithLibFuzzer(): void {
  if (!have('clang++')) aptInstall(['clang'], 'the libFuzzer targets (native/fuzz)');
  const probeDir = mkdtempSync(join(tmpdir(), 'xz-fuzz-probe-'));
  try {
    const src = join(probeDir, 'probe.cpp');
    writeFileSync(src, '#include <cstddef>\n#include <cstdint>\nextern "C" int LLVMFuzzerTestOneInput(const uint8_t*, size_t) { return 0; }\n');
    const probe = () =>
      spawnSync('clang++', ['-fsanitize=fuzzer,address,undefined', src, '-o', join(probeDir, 'probe')], {
        encoding: 'utf8',
      });
    let r = probe();
    if (r.status !== 0) {
      // Debian ships the libFuzzer runtime separately from clang (libclang-rt-<major>-dev).
      const major = /version (\d+)\./.exec(execFileSync('clang++', ['--version'], { encoding: 'utf8' }))?.[1];
      if (!major) throw new Error(`clang++ cannot link a libFuzzer target and its version is unknown:\n${r.stderr}`);
      aptInstall([`libclang-rt-${major}-dev`], 'the libFuzzer runtime for clang');
      r = probe();
      if (r.status !== 0) throw new Error(`clang++ still cannot link a libFuzzer target:\n${tail(r.stderr)}`);
    }
  } finally {
    rmSync(probeDir, { recursive: true, force: true });
  }
}

// native/dsp and libopus compiled with coverage instrumentation and ASan + UBSan through the project's
// own CMake (a separate build dir, clang), then each target linked with -fsanitize=fuzzer.
function buildFuzzers(): void {
  const cflags = ['-fsanitize=fuzzer-no-link', ...FUZZ_SANITIZERS].join(' ');
  if (!cacheHas(fuzzBuildDir, 'CMAKE_GENERATOR:INTERNAL=Ninja', `CMAKE_CXX_FLAGS:STRING=${cflags}\n`, 'clang++', `=${libopusDir}\n`)) {
    log('configuring build-fuzz (clang, ASan + UBSan + coverage)');
    rmSync(fuzzBuildDir, { recursive: true, force: true });
    step(
      'cmake',
      [
        '-S', root, '-B', fuzzBuildDir, '-G', 'Ninja', '-DCMAKE_BUILD_TYPE=RelWithDebInfo', '-DCMAKE_C_COMPILER=clang',
        '-DCMAKE_CXX_COMPILER=clang++', `-DCMAKE_C_FLAGS=${cflags}`, `-DCMAKE_CXX_FLAGS=${cflags}`,
        `-DXZ_LIBOPUS_DIR=${libopusDir}`, `-DXZ_NODE_INCLUDE_DIR=${nodeIncludeDir()}`,
      ],
      5 * MINUTE,
    );
  }
  log('building xz_dsp + xz_libopus for fuzzing');
  step('cmake', ['--build', fuzzBuildDir, '--target', 'xz_dsp', 'xz_libopus'], 40 * MINUTE);
  for (const name of FUZZERS) {
    step(
      'clang++',
      [
        '-std=c++17', '-O1', '-fsanitize=fuzzer', ...FUZZ_SANITIZERS, `-I${join(root, 'native')}`,
        join(root, 'native', 'fuzz', `${name}.cpp`), join(fuzzBuildDir, 'libxz_dsp.a'),
        join(fuzzBuildDir, 'libxz_libopus.a'), '-lcrypto', '-ldl', '-lm', '-o', join(fuzzBuildDir, name),
      ],
      10 * MINUTE,
    );
  }
}

describe('libFuzzer smoke run (native/fuzz)', () => {
  beforeAll(() => {
    ensureGtestPrerequisites(); // cmake, ninja, libssl-dev
    ensureClangWithLibFuzzer();
    ensureLibopus();
    buildFuzzers();
  }, 60 * MINUTE);

  it.each(FUZZERS)(
    `%s runs ${FUZZ_SECONDS} s under ASan + UBSan without a finding`,
    (name) => {
      const work = mkdtempSync(join(tmpdir(), `xz-${name}-`));
      const corpus = join(work, 'corpus');
      mkdirSync(corpus);
      try {
        const r = spawnSync(
          join(fuzzBuildDir, name),
          [
            `-max_total_time=${FUZZ_SECONDS}`, '-print_final_stats=1', '-max_len=4096', '-timeout=10',
            '-rss_limit_mb=2048', `-artifact_prefix=${work}/`, corpus,
          ],
          { cwd: work, encoding: 'utf8', timeout: (FUZZ_SECONDS + 100) * 1000, maxBuffer: 256 * 1024 * 1024 },
        );
        const output = `${r.stdout ?? ''}${r.stderr ?? ''}`;
        const executions = Number(/stat::number_of_executed_units:\s*(\d+)/.exec(output)?.[1] ?? 0);
        log(`${name}: ${executions} executions in ${FUZZ_SECONDS} s, exit ${r.status ?? r.signal}`);
        expect(r.error, String(r.error)).toBeUndefined();
        expect(r.status, `${name} found a problem:\n${tail(output, 80)}`).toBe(0);
        expect(executions).toBeGreaterThan(1000);
      } finally {
        rmSync(work, { recursive: true, force: true });
      }
    },
    (FUZZ_SECONDS + 120) * 1000,
  );
});
