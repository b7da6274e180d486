// The benchmark-only native addon, xiaozhi_bench.node (native/bench: the tight loop). It is a second
// addon so the product addon ships nothing that only benchmarks use. The same cmake-js run builds it
// into build/Release/bench/; `npm run build:prebuilds` copies it to prebuilds/<platform>-<arch>/bench/.
// Looked up in node-gyp-build's order (a source build first, then the prebuilt binary), under the
// same directory as the product addon (XIAOZHI_GATEWAY_PREBUILD moves both).
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { arch, platform } from 'node:os';
import { join } from 'node:path';
import { addonSearchDir, packageRoot, runtimeDescription } from '../src/native/addon.js';
import { codedError } from '../src/native/errors.js';

export interface BenchAddon {
  /** The pipeline's per-frame stages back to back on one thread: see native/bench/tight_loop.h. */
  runTightLoop(
    key: Uint8Array,
    nonce: Uint8Array,
    datagrams: Uint8Array[],
    pcm: Float32Array,
    options: Record<string, number>,
  ): { totalNs: number; framePairNs: Float64Array; uplinkFramesOut: number; downlinkDatagramsOut: number };
}

export const BENCH_ADDON_FILE = 'xiaozhi_bench.node';

/** Where the bench addon may be, in the order it is looked for. */
export function benchAddonCandidates(searchDir = addonSearchDir()): string[] {
  return [
    join(searchDir, 'build', 'Release', 'bench', BENCH_ADDON_FILE),
    join(searchDir, 'prebuilds', `${platform()}-${arch()}`, 'bench', BENCH_ADDON_FILE),
  ];
}

let loaded: BenchAddon | undefined;

/** Loads xiaozhi_bench.node on first use; a missing binary is an Error that says how to build it. */
export function benchNative(): BenchAddon {
  if (loaded) return loaded;
  const candidates = benchAddonCandidates();
  const file = candidates.find((f) => existsSync(f));
  if (!file) {
    throw codedError(
      'ERR_ADDON_NOT_BUILT',
      `xiaozhi-gateway: the benchmark addon (${BENCH_ADDON_FILE}) is not built for ${runtimeDescription()} ` +
        `(looked in: ${candidates.join(', ')}).\n  Build it (with the product addon) from source: ` +
        `node ${join(packageRoot, 'scripts', 'build-native.mjs')}`,
    );
  }
  loaded = createRequire(import.meta.url)(file) as BenchAddon;
  return loaded;
}
