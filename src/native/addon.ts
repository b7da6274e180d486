// Loads the native addon (prebuilt binary from prebuilds/, or build/Release after a source build)
// through node-gyp-build, and proves at load that its AES-128-CTR matches node:crypto byte for byte.
// Any failure is an Error with a code and a message that says what to do.
import { createCipheriv, randomBytes } from 'node:crypto';
import { createRequire } from 'node:module';
import { arch, platform } from 'node:os';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { codedError, type CodedError } from './errors.js';

/** The raw surface of xiaozhi_native.node. Only the typed wrappers in src/native use it. */
export interface NativeAddon {
  f32ToS16(input: Float32Array, output: Int16Array, level?: number): void;
  s16ToF32(input: Int16Array, output: Float32Array): void;
  supportedSimdLevels(): Array<{ id: number; name: string }>;
  NativeResampler: new (inputRate: number, outputRate: number) => {
    process<T extends Int16Array | Float32Array>(input: T): T;
    flush(asFloat?: boolean): Int16Array | Float32Array;
    reset(): void;
    close(): void;
    readonly delay: number;
  };
  NativeOpusEncoder: new (options: Record<string, number | boolean>) => {
    encode(pcm: Int16Array): Buffer;
    setComplexity(complexity: number): void;
    setBitrate(bitrate: number): void;
    reset(): void;
    close(): void;
  };
  NativeOpusDecoder: new (sampleRate: number, channels: number) => {
    decode(packet: Uint8Array | null, fec: boolean, frameSize: number): Int16Array;
    reset(): void;
    close(): void;
    readonly lastFrameSize: number;
  };
  NativeAesCtr: new (key: Uint8Array) => {
    crypt(iv: Uint8Array, data: Uint8Array, output: Uint8Array): void;
    close(): void;
  };
  opensslVersion(): string;
  opensslUnavailableReason(): string;
  packetEncode(type: number, flags: number, ssrc: number, timestamp: number, sequence: number, payload: Uint8Array, out: Uint8Array): void;
  packetParse(datagram: Uint8Array, fields: Uint32Array): string;
  packetErrorMessage(code: string): string;
  NativeReplayWindow: new (maxJump: number) => {
    check(sequence: number): string;
    commit(sequence: number): void;
    reset(): void;
    readonly last: number;
  };
  NativeDownlinkIv: new (nonce: Uint8Array) => {
    next(payloadLength: number, timestampMs: number, out: Uint8Array): void;
  };
  buildInfo(): { opusVersion: string; opusSimd: string; simdLevel: string; buildType: string };
  opusBuildInfo(): { version: string; runtimeCpuDetection: boolean; simd: { compiled: string[]; cpu: string[]; active: string[] } };
  NativePipeline: new (
    options: Record<string, unknown>,
    dispatcher: (meta: Uint32Array, data: ArrayBuffer, count: number) => void,
  ) => NativePipelineHandle;
}

/** The addon's pipeline object (wrapped by AudioPipeline in pipeline.ts). */
export interface NativePipelineHandle {
  createUplink(key: Uint8Array, nonce: Uint8Array, options: Record<string, number>): number;
  createDownlink(key: Uint8Array, nonce: Uint8Array, options: Record<string, number | boolean>): number;
  /** 0 queued, 1 queued after dropping the oldest item, 2 unknown/closed stream, 3 datagram too large */
  push(id: number, data: Uint8Array | Int16Array | Float32Array, tag: number, probe?: boolean): number;
  flush(id: number, tag: number): number;
  abort(id: number, tag: number): boolean;
  closeStream(id: number): boolean;
  metrics(): ArrayBuffer;
  metricsLayout(): { counters: string[]; histograms: string[]; buckets: number; histogramOffset: number };
  setLadderLevel(level: number): void;
  close(): void;
  readonly tasksInFlight: number;
}

/** The package's root directory (holds package.json, prebuilds/ and build/), from src/ or dist/src/. */
export const packageRoot = findPackageRoot(dirname(fileURLToPath(import.meta.url)));

function findPackageRoot(start: string): string {
  for (let dir = start; ; dir = dirname(dir)) {
    try {
      if (JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')).name === 'xiaozhi-gateway') return dir;
    } catch {
      // no package.json here: keep walking up
    }
    if (dirname(dir) === dir) throw codedError('ERR_NATIVE_LOAD', `xiaozhi-gateway: package.json not found above ${start}`);
  }
}

/**
 * Where node-gyp-build looks for the binary: the package root, unless XIAOZHI_GATEWAY_PREBUILD (a
 * node-gyp-build convention: <PACKAGE_NAME>_PREBUILD) points it at another directory.
 */
export function addonSearchDir(): string {
  return process.env.XIAOZHI_GATEWAY_PREBUILD || packageRoot;
}

/** This runtime as node-gyp-build matches binaries, for error messages. */
export function runtimeDescription(): string {
  const libc = platform() === 'linux' ? (existsSync('/etc/alpine-release') ? ' musl' : ' glibc') : '';
  return `${platform()}-${arch()}${libc}, Node.js ${process.version} (ABI ${process.versions.modules}, Node-API ${process.versions.napi})`;
}

/** The message and code when no binary fits this runtime: what happened and the command that fixes it. */
export function addonNotBuiltError(root: string, searchDir: string, cause?: unknown): CodedError {
  const overridden = searchDir === root ? '' : ' (XIAOZHI_GATEWAY_PREBUILD)';
  return codedError(
    'ERR_ADDON_NOT_BUILT',
    `xiaozhi-gateway: the native addon is not built for ${runtimeDescription()}.\n` +
      `  Neither a prebuilt binary for this platform (${join(searchDir, 'prebuilds')}) nor a source build ` +
      `(${join(searchDir, 'build', 'Release')}) exists${overridden}: the package ships no binary for this platform, ` +
      'or its install script did not run (npm install --ignore-scripts, ignore-scripts in .npmrc, npm 11 install scripts not approved).\n' +
      '  Build it from source (needs cmake >= 3.15, a C++17 compiler, the Node.js headers that come with official\n' +
      '  Node.js installs, and the npm registry for the pinned libopus source):\n' +
      `    node ${join(root, 'scripts', 'build-native.mjs')}\n` +
      '  or, in the project that depends on it (unless ignore-scripts is set): npm rebuild xiaozhi-gateway',
    cause,
  );
}

/** Loads the addon from `searchDir` (prebuilds/ or build/Release) with node-gyp-build. */
export function loadAddonFrom(root: string, searchDir = root): NativeAddon {
  const require = createRequire(import.meta.url);
  const nodeGypBuild = require('node-gyp-build') as { (dir: string): unknown; path(dir: string): string };
  let file: string;
  try {
    file = nodeGypBuild.path(searchDir);
  } catch (err) {
    // node-gyp-build found nothing that matches this platform, arch, libc and ABI.
    throw addonNotBuiltError(root, searchDir, err);
  }
  try {
    return require(file) as NativeAddon;
  } catch (err) {
    throw codedError(
      'ERR_NATIVE_LOAD',
      `xiaozhi-gateway: the native addon ${file} does not load on ${runtimeDescription()}: ` +
        `${(err as Error).message}\n  Fix: rebuild it from source with \`node ${join(root, 'scripts', 'build-native.mjs')} --rebuild\` ` +
        '(needs cmake >= 3.15, a C++17 compiler and the Node.js headers).',
      err,
    );
  }
}

function load(): NativeAddon {
  const addon = loadAddonFrom(packageRoot, addonSearchDir());
  const reason = addon.opensslUnavailableReason();
  if (reason) throw codedError('ERR_OPENSSL_UNAVAILABLE', `xiaozhi-gateway: ${reason}`);
  selfTest(addon);
  return addon;
}

// Encrypts a multi-block buffer whose counter wraps through all 128 bits and compares with
// node:crypto. Catches a runtime whose exported OpenSSL behaves differently before any device does.
function selfTest(addon: NativeAddon): void {
  const key = randomBytes(16);
  const iv = Buffer.alloc(16, 0xff);
  iv[15] = 0xfe;
  const data = randomBytes(61);
  const ours = new Uint8Array(data.length);
  const aes = new addon.NativeAesCtr(key);
  try {
    aes.crypt(iv, data, ours);
  } finally {
    aes.close();
  }
  const reference = createCipheriv('aes-128-ctr', key, iv).update(data);
  if (!reference.equals(ours)) {
    throw codedError(
      'ERR_OPENSSL_SELFTEST',
      'xiaozhi-gateway: the native AES-128-CTR self-test does not match node:crypto; refusing to run with ' +
        `this runtime's OpenSSL (${addon.opensslVersion() || 'unknown'}).`,
    );
  }
}

export const native: NativeAddon = load();
