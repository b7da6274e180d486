// No binary fits (another platform, or an install whose scripts did not run): the first import and
// every CLI call fail with one coded error that names the runtime and the command that builds the
// addon, never a bare module-not-found stack. Simulated by pointing node-gyp-build at an empty
// directory (its XIAOZHI_GATEWAY_PREBUILD override) or by calling the loader on one directly.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { arch, platform, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { loadAddonFrom, packageRoot } from '../src/native/addon.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const empty = mkdtempSync(join(tmpdir(), 'xiaozhi-noaddon-'));
const cli = join(root, 'dist', 'bin', 'xiaozhi-gateway.js');

afterAll(() => rmSync(empty, { recursive: true, force: true }));

function expectClearMessage(message: string): void {
  expect(message).toContain('the native addon is not built for');
  expect(message).toContain(`${platform()}-${arch()}`);
  expect(message).toContain(`Node.js ${process.version} (ABI ${process.versions.modules}, Node-API ${process.versions.napi})`);
  expect(message).toContain('cmake >= 3.15');
  expect(message).toContain('C++17 compiler');
  expect(message).toContain(`node ${join(packageRoot, 'scripts', 'build-native.mjs')}`);
  expect(message).not.toMatch(/Cannot find module|No native build was found/);
}

describe('missing native binary', () => {
  it('the loader throws ERR_ADDON_NOT_BUILT with the runtime and the build command', () => {
    let caught: (Error & { code?: string }) | undefined;
    try {
      loadAddonFrom(packageRoot, empty);
    } catch (err) {
      caught = err as Error & { code?: string };
    }
    expect(caught).toBeInstanceOf(Error);
    expect(caught!.code).toBe('ERR_ADDON_NOT_BUILT');
    expectClearMessage(caught!.message);
    // node-gyp-build's own words stay available for debugging.
    expect(String((caught!.cause as Error).message)).toContain('No native build was found');
  });

  it('importing the package rejects with the same coded error', () => {
    const script = `import('xiaozhi-gateway').then(() => console.log('loaded'), (e) => console.log(JSON.stringify({ code: e.code, message: e.message })));`;
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], {
      cwd: root,
      env: { ...process.env, XIAOZHI_GATEWAY_PREBUILD: empty },
      encoding: 'utf8',
    });
    const result = JSON.parse(out.trim()) as { code: string; message: string };
    expect(result.code).toBe('ERR_ADDON_NOT_BUILT');
    expectClearMessage(result.message);
  });

  it('a CLI call prints the message once, without a stack, and exits 1', () => {
    for (const args of [['info'], ['bench', '--quick', '--only', 'aes'], ['start', '--mqtt-port', '0']]) {
      const r = spawnSync(process.execPath, [cli, ...args], {
        env: { ...process.env, XIAOZHI_GATEWAY_PREBUILD: empty },
        encoding: 'utf8',
        timeout: 60_000,
      });
      expect(r.status, `${args.join(' ')}: ${r.stderr}`).toBe(1);
      expect(r.stderr.startsWith('xiaozhi-gateway: [ERR_ADDON_NOT_BUILT] the native addon is not built for')).toBe(true);
      expect(r.stderr.match(/not built for/g)).toHaveLength(1);
      expect(r.stderr).not.toMatch(/^\s+at /m);
      expectClearMessage(r.stderr);
    }
  });
});
