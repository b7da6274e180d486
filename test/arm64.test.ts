// The arm64 tier: the native code cross-compiled for linux-arm64 with Debian's aarch64 toolchain and
// run under qemu-user in a Debian arm64 root (scripts/arm64-root.mjs, cached in
// ~/.cache/xiaozhi-gateway/arm64-root). Two parts:
//   1. the GoogleTest suite over native/dsp (NEON conversion kernel, libopus with its NEON kernels,
//      resampler, AES-CTR through the root's libcrypto, packets, pool), cross-compiled against the
//      root's libgtest and run by `qemu-aarch64 -L <root>`;
//   2. the prebuilt addon prebuilds/linux-arm64/xiaozhi-gateway.glibc.node (`npm run build:prebuilds
//      -- --arch arm64`) loaded by the root's own nodejs (Debian 12: Node 18) through the package's
//      loader, and checked by scripts/arm64-node-check.mjs.
// Prerequisites (cross compilers, qemu-user, debootstrap, cmake, ninja) are Debian packages installed
// with apt-get when missing and we are root (CI); otherwise the tier fails with the command to run.
// Nothing is skipped silently.
//
// qemu translates every instruction, so the whole suite (minutes natively, most of it the
// exhaustive 2^32-input conversion test, the resampler's acceptance matrix and the
// part-by-part Opus encoder) would take far longer than CI can spend. By default the tier leaves out
// SLOW_UNDER_QEMU below: what remains still exercises every component and the NEON paths, with the
// resampler's acceptance tests on the gateway's own rate pairs (16k->48k, 48k->16k, 48k->24k).
// `npm run test:arm64:full` (XIAOZHI_ARM64_FULL=1) runs every test.
//
// By hand:
//   R=$(node scripts/arm64-root.mjs --tools)
//   cmake -S . -B build-arm64-tests -G Ninja -DXZ_NATIVE_TESTS=ON -DCMAKE_TOOLCHAIN_FILE=$PWD/cmake/aarch64-linux-gnu.cmake \
//     -DXZ_ARM64_ROOT=$R -DXZ_LIBOPUS_DIR=$PWD/deps/libopus-1.5.2 -DXZ_NODE_INCLUDE_DIR=/usr/include/node -DCMAKE_BUILD_TYPE=Release
//   cmake --build build-arm64-tests && qemu-aarch64 -L $R build-arm64-tests/xz_native_tests
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { failureLines, runGtest, suiteResult, tail, type GtestReport } from './helpers/gtest.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const testBuildDir = join(root, 'build-arm64-tests');
const libopusDir = join(root, 'deps', 'libopus-1.5.2');
const toolchain = join(root, 'cmake', 'aarch64-linux-gnu.cmake');
const prebuilt = join(root, 'prebuilds', 'linux-arm64', 'xiaozhi-gateway.glibc.node');
const full = process.env.XIAOZHI_ARM64_FULL === '1';
// gtest negative filter patterns ('*' also matches '/' and '.').
const SLOW_UNDER_QEMU = [
  'F32ToS16Exhaustive.*',
  'FramePartsEncoder.*',
  'OpusDecoder.RandomGarbageEitherDecodesOrThrowsAndDecoderStaysUsable',
  'OpusPacketInspection.NeverRejectsAPacketTheDecoderAccepts',
  ...['8000_to_*', '24000_to_*', '44100_to_*', '16000_to_8000*', '16000_to_24000*', '48000_to_8000*', '48000_to_44100*']
    .map((pair) => `AcceptancePairs/*/${pair}`),
];

const MINUTE = 60_000;

function log(msg: string): void {
  process.stdout.write(`arm64.test: ${msg}\n`);
}

// Runs a step; on failure the error carries the command and the end of its output.
function step(cmd: string, args: string[], timeoutMs: number, env?: NodeJS.ProcessEnv): string {
  const r = spawnSync(cmd, args, {
    cwd: root, encoding: 'utf8', timeout: timeoutMs, maxBuffer: 256 * 1024 * 1024, env: env ?? process.env,
  });
  if (r.error || r.status !== 0) {
    const why = r.error ? String(r.error.message) : `exit ${r.status}${r.signal ? ` (${r.signal})` : ''}`;
    throw new Error(`arm64 tier cannot run: ${cmd} ${args.join(' ')} failed: ${why}\n${tail(r.stdout)}\n${tail(r.stderr)}`);
  }
  return r.stdout;
}

function timed<T>(what: string, fn: () => T): T {
  const started = Date.now();
  const result = fn();
  log(`${what}: ${((Date.now() - started) / 1000).toFixed(1)} s`);
  return result;
}

function nodeIncludeDir(): string {
  const candidates = [join(dirname(dirname(process.execPath)), 'include', 'node'), '/usr/include/node'];
  const found = candidates.find((d) => existsSync(join(d, 'openssl', 'evp.h')));
  if (!found) throw new Error(`arm64 tier cannot run: Node.js headers with openssl/ not found in ${candidates.join(', ')}`);
  return found;
}

// The root, and the host tools; built or installed on first use, reused afterwards.
let arm64Root = '';
function ensureEnvironment(): string {
  if (!arm64Root) {
    arm64Root = timed('Debian arm64 root + host tools', () =>
      step(process.execPath, [join(root, 'scripts', 'arm64-root.mjs'), '--tools'], 20 * MINUTE).trim(),
    );
    log(`root ${arm64Root}: ${tail(readFileSync(join(arm64Root, '.xiaozhi-arm64-root'), 'utf8'), 2).trim()}`);
  }
  return arm64Root;
}

function qemu(args: string[], timeoutMs: number, env?: NodeJS.ProcessEnv): SpawnSyncReturns<string> {
  return spawnSync('qemu-aarch64', ['-L', ensureEnvironment(), ...args], {
    cwd: root, encoding: 'utf8', timeout: timeoutMs, maxBuffer: 256 * 1024 * 1024, env: env ?? process.env,
  });
}

// e_machine of an ELF file: 183 is EM_AARCH64.
function elfMachine(file: string): number {
  const header = readFileSync(file).subarray(0, 20);
  expect(header.subarray(0, 4).toString('latin1')).toBe('\x7fELF');
  return header.readUInt16LE(18);
}

// Suites that exercise what differs on arm64: the NEON conversion kernel, libopus's NEON kernels
// (through encode/decode), AES-CTR through libcrypto looked up at run time.
const EXPECTED_SUITES = [
  'ConvertReference', 'ConvertLevels', 'F32ToS16', 'S16ToF32', 'PacketHeader', 'ParseDatagram', 'BufferPool',
  'AesCtrOpenSsl', 'AesCtrKnownAnswer', 'AesCtr', 'OpusInfo', 'OpusEncoder', 'OpusDecoder', 'Rates/OpusRoundTrip',
  'AcceptancePairs/PairTest',
  ...(full ? ['F32ToS16Exhaustive', 'FramePartsEncoder'] : []),
];

describe('arm64: native GoogleTest suite, cross-compiled, under qemu-user', () => {
  let run: SpawnSyncReturns<string>;
  let report: GtestReport | undefined;
  let reportError = '';

  beforeAll(() => {
    const arm64 = ensureEnvironment();
    step(process.execPath, [join(root, 'scripts', 'fetch-libopus.mjs')], 10 * MINUTE);
    const cache = join(testBuildDir, 'CMakeCache.txt');
    const configured =
      existsSync(cache) &&
      existsSync(join(testBuildDir, 'build.ninja')) &&
      [`=${libopusDir}\n`, `=${arm64}\n`, `=${toolchain}\n`, 'XZ_NATIVE_TESTS:BOOL=ON'].every((e) =>
        readFileSync(cache, 'utf8').includes(e),
      );
    if (!configured) {
      rmSync(testBuildDir, { recursive: true, force: true });
      timed('configure build-arm64-tests', () =>
        step('cmake', [
          '-S', root, '-B', testBuildDir, '-G', 'Ninja', '-DXZ_NATIVE_TESTS=ON', `-DCMAKE_TOOLCHAIN_FILE=${toolchain}`,
          `-DXZ_ARM64_ROOT=${arm64}`, `-DXZ_LIBOPUS_DIR=${libopusDir}`, `-DXZ_NODE_INCLUDE_DIR=${nodeIncludeDir()}`,
          '-DCMAKE_BUILD_TYPE=Release',
        ], 5 * MINUTE),
      );
    }
    timed('cross-compile xz_native_tests', () => step('cmake', ['--build', testBuildDir], 40 * MINUTE));
    const binary = join(testBuildDir, 'xz_native_tests');
    expect(elfMachine(binary), 'xz_native_tests is not an aarch64 executable').toBe(183);
    const args = ['-L', arm64, binary];
    if (!full) args.push(`--gtest_filter=-${SLOW_UNDER_QEMU.join(':')}`);
    ({ run, report, reportError } = timed(`xz_native_tests under qemu-aarch64${full ? ' (every test)' : ''}`, () =>
      runGtest('qemu-aarch64', args, { cwd: root, timeoutMs: (full ? 240 : 20) * MINUTE, log, tmpPrefix: 'xz-arm64-gtest-' }),
    ));
  }, 90 * MINUTE);

  it('passes: gtest exits 0 on arm64', () => {
    expect(run.error, String(run.error)).toBeUndefined();
    expect(run.status, `xz_native_tests failed under qemu-aarch64:\n${failureLines(run)}\n${tail(run.stderr)}`).toBe(0);
    expect(report, `no JSON report: ${reportError}`).toBeDefined();
    expect(report!.failures).toBe(0);
    expect(report!.tests).toBeGreaterThan(full ? 400 : 100);
  });

  it('ran the conversion tests over the NEON kernel (levels on arm64: scalar, neon)', () => {
    // ConvertLevels prints the levels every conversion test iterates over (native/tests/convert_test.cpp).
    expect(`${run.stdout}`).toContain('[ info     ] supported SIMD levels: scalar, neon; best: neon');
  });

  it.each(EXPECTED_SUITES)('suite %s ran and passed on arm64', (name) => {
    expect(report, `no JSON report: ${reportError}`).toBeDefined();
    const suite = report!.testsuites.find((s) => s.name === name);
    expect(suite, `suite ${name} is not in the binary`).toBeDefined();
    const { ran, failures } = suiteResult(suite!);
    expect(ran).toBeGreaterThan(0);
    expect(failures, failures.join('\n')).toEqual([]);
  });
});

interface NodeCheck {
  ok: boolean;
  node: string;
  arch: string;
  openssl: string;
  checks: string[];
  opusSimd: { compiled: string[]; cpu: string[]; active: string[] };
  speed: Record<string, { samples: number; scalarMs: number; neonMs: number; speedup: number }>;
}

describe('arm64: the prebuilt addon in Debian arm64 nodejs under qemu-user', () => {
  let result: NodeCheck | undefined;
  let failure = '';

  beforeAll(() => {
    const arm64 = ensureEnvironment();
    timed('npm run build:prebuilds -- --arch arm64', () =>
      step(process.execPath, [join(root, 'scripts', 'prebuild.mjs'), '--arch', 'arm64'], 40 * MINUTE),
    );
    expect(elfMachine(prebuilt), `${prebuilt} is not an aarch64 binary`).toBe(183);
    // node-gyp-build prefers build/Release (this machine's x86-64 addon), so it is pointed at a
    // directory that has only prebuilds/linux-arm64.
    const staging = mkdtempSync(join(tmpdir(), 'xz-arm64-prebuild-'));
    mkdirSync(join(staging, 'prebuilds', 'linux-arm64'), { recursive: true });
    copyFileSync(prebuilt, join(staging, 'prebuilds', 'linux-arm64', 'xiaozhi-gateway.glibc.node'));
    try {
      const r = timed('scripts/arm64-node-check.mjs under qemu-aarch64', () =>
        qemu([join(arm64, 'usr', 'bin', 'node'), join(root, 'scripts', 'arm64-node-check.mjs')], 15 * MINUTE, {
          ...process.env,
          XIAOZHI_GATEWAY_PREBUILD: staging,
        }),
      );
      if (r.status === 0) {
        result = JSON.parse(tail(r.stdout, 2).trim()) as NodeCheck;
      } else {
        failure = `exit ${r.status ?? r.signal} ${r.error ?? ''}\n${tail(r.stdout)}\n${tail(r.stderr)}`;
      }
    } finally {
      rmSync(staging, { recursive: true, force: true });
    }
    if (result) {
      log(`Node ${result.node} ${result.arch}, ${result.openssl}; libopus SIMD active: ${result.opusSimd.active.join(', ')}`);
      for (const [label, s] of Object.entries(result.speed)) {
        log(`f32ToS16 ${label} (${s.samples} samples) under qemu, indicative only: scalar ${s.scalarMs} ms, neon ${s.neonMs} ms, x${s.speedup}`);
      }
    }
  }, 60 * MINUTE);

  it('loads through node-gyp-build on arm64 and every check passes', () => {
    expect(result, `arm64-node-check.mjs failed: ${failure}`).toBeDefined();
    expect(result!.ok).toBe(true);
    expect(result!.arch).toBe('arm64');
    expect(result!.opusSimd.active).toEqual(['neon']);
    expect(result!.checks).toEqual([
      'runs on arm64',
      'conversion uses NEON',
      'libopus built with NEON kernels, active',
      'f32ToS16 NEON == scalar == reference (edges, ties, random, every length 0..64)',
      'AES-128-CTR == node:crypto',
      'packet encode/parse round trip',
      'Opus 16 kHz encode/decode round trip keeps a 440 Hz tone',
      'Resampler 48 kHz -> 16 kHz keeps a 1 kHz tone',
    ]);
  });
});
