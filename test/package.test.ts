// The npm tarball installs and works without a compiler: prebuild in an isolated copy of the
// package, `npm pack`, install the tarball into a fresh project with lifecycle scripts disabled and
// no build/ directory anywhere, then load and use the addon from there.
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const work = mkdtempSync(join(tmpdir(), 'xiaozhi-pack-'));
const pkgDir = join(work, 'pkg');
const appDir = join(work, 'app');
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';

function run(cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = {}): string {
  return execFileSync(cmd, args, { cwd, env: { ...process.env, ...env }, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 600_000 });
}

let tarball = '';

beforeAll(() => {
  // An isolated copy, so building here never disturbs build/ of the checkout other tests load.
  mkdirSync(pkgDir);
  for (const entry of ['package.json', 'CMakeLists.txt', 'cmake', 'native', 'scripts', 'dist', 'binding.gyp.md', 'README.md', 'CHANGELOG.md', 'LICENSE']) {
    if (existsSync(join(root, entry))) cpSync(join(root, entry), join(pkgDir, entry), { recursive: true });
  }
  symlinkSync(join(root, 'node_modules'), join(pkgDir, 'node_modules'), 'dir');
  // Reuse the verified libopus tree of the checkout (fetched by the build) instead of a second download.
  const env = { XIAOZHI_LIBOPUS_DIR: join(root, 'deps', 'libopus-1.5.2') };
  run(process.execPath, ['scripts/prebuild.mjs'], pkgDir, env);
  rmSync(join(pkgDir, 'build'), { recursive: true, force: true });
  const out = run(npm, ['pack', '--ignore-scripts', '--json', '--pack-destination', work], pkgDir);
  tarball = join(work, (JSON.parse(out) as Array<{ filename: string }>)[0]!.filename);

  mkdirSync(appDir);
  writeFileSync(join(appDir, 'package.json'), JSON.stringify({ name: 'app', private: true, type: 'module' }));
  run(npm, ['install', '--ignore-scripts', '--no-audit', '--no-fund', '--prefer-offline', tarball], appDir);
}, 900_000);

afterAll(() => {
  rmSync(work, { recursive: true, force: true });
});

describe('npm tarball', () => {
  it('ships the prebuilt binary and compiled JS, not libopus sources or build output', () => {
    const listing = JSON.parse(run(npm, ['pack', '--dry-run', '--ignore-scripts', '--json'], pkgDir)) as Array<{ files: Array<{ path: string }> }>;
    const files = listing[0]!.files.map((f) => f.path);
    expect(files).toContain('prebuilds/linux-x64/xiaozhi-gateway.glibc.node');
    expect(files).toContain('dist/src/index.js');
    expect(files.some((f) => f.startsWith('build/'))).toBe(false);
    expect(files.some((f) => f.startsWith('deps/'))).toBe(false);
    expect(files.some((f) => /(^|\/)(celt|silk)\/.*\.c$/.test(f))).toBe(false);
  });

  it('installs without a build/ directory and loads the prebuilt addon', () => {
    const installed = join(appDir, 'node_modules', 'xiaozhi-gateway');
    expect(existsSync(join(installed, 'build'))).toBe(false);
    expect(readdirSync(join(installed, 'prebuilds', 'linux-x64'))).toEqual(['xiaozhi-gateway.glibc.node']);
    const script = `
      import { createRequire } from 'node:module';
      import { createCipheriv } from 'node:crypto';
      import * as x from 'xiaozhi-gateway';
      const require = createRequire(import.meta.url);
      const loaded = require('node-gyp-build').path(${JSON.stringify(join(appDir, 'node_modules', 'xiaozhi-gateway'))});
      const enc = new x.OpusEncoder({ sampleRate: 24000, channels: 1, application: 'voip' });
      const pcm = new Int16Array(1440).map((_, i) => Math.round(8000 * Math.sin(i / 5)));
      const pkt = enc.encode(pcm);
      const dec = new x.OpusDecoder({ sampleRate: 24000, channels: 1 });
      const out = dec.decode(pkt);
      const key = new Uint8Array(16).fill(3), iv = new Uint8Array(16).fill(9), data = new Uint8Array(100).fill(1);
      const same = Buffer.from(new x.AesCtr(key).crypt(iv, data)).equals(createCipheriv('aes-128-ctr', key, iv).update(data));
      console.log(JSON.stringify({ loaded, version: x.opusVersion(), packet: pkt.length, decoded: out.length, same,
        s16: Array.from(x.f32ToS16(new Float32Array([1, -1, 0.5]))) }));
    `;
    const result = JSON.parse(run(process.execPath, ['--input-type=module', '-e', script], appDir).trim()) as Record<string, unknown>;
    expect(result.loaded).toMatch(/prebuilds\/linux-x64\/xiaozhi-gateway\.glibc\.node$/);
    expect(result.version).toBe('libopus 1.5.2');
    expect(result.packet).toBeGreaterThan(2);
    expect(result.decoded).toBe(1440);
    expect(result.same).toBe(true);
    expect(result.s16).toEqual([32767, -32768, 16384]);
  });

  it('runs the CLI from the installed package', () => {
    const out = run(process.execPath, [join(appDir, 'node_modules', 'xiaozhi-gateway', 'dist', 'src', 'cli.js'), 'info'], appDir);
    expect(JSON.parse(out).opusVersion).toBe('libopus 1.5.2');
  });
});
