// The addon inside worker_threads and at process exit. Workers load the COMPILED package (dist/,
// built in beforeAll) through its own name; the main thread runs the same task through src/. Both
// must agree byte for byte, and AES / conversion results are also checked against references.
import { execFileSync, spawn } from 'node:child_process';
import { createCipheriv } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { beforeAll, describe, expect, it } from 'vitest';
import * as gw from '../src/index.js';
import { speech } from './helpers/fixtures.js';
import { runTask, type NativeTaskInput, type NativeTaskOutput } from './helpers/native-task.mjs';
import { rng } from './helpers/prng.mjs';
import { bestLagCorrelation } from './helpers/signal.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const helpers = join(root, 'test', 'helpers');
const WORKER = pathToFileURL(join(helpers, 'native-worker.mjs'));
const EXIT_SCRIPT = join(helpers, 'native-exit.mjs');
const TERMINATE_SCRIPT = join(helpers, 'native-terminate.mjs');

function makeInput(seed: number): NativeTaskInput {
  const r = rng(seed);
  const pcm = speech(16000);
  const start = r.int(0, pcm.length - 16000 * 2) & ~1;
  const payloads = Array.from({ length: 40 }, () => r.bytes(r.int(0, 300)));
  const floats = new Float32Array(4099);
  for (let i = 0; i < floats.length; i++) floats[i] = r.range(-1.2, 1.2);
  floats[0] = NaN;
  floats[1] = 0.5 / 32768;
  floats[2] = 1.5 / 32768;
  return {
    pcm16k: pcm.slice(start, start + 16000 * 2),
    key: r.bytes(16),
    ivs: payloads.map(() => r.bytes(16)),
    payloads,
    floats,
    nonce: Uint8Array.from([1, 0, 0, 0, ...r.bytes(4), 0, 0, 0, 0, 0, 0, 0, 0]),
  };
}

function bytesEqual(a: ArrayBufferView, b: ArrayBufferView): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

function expectSameOutput(worker: NativeTaskOutput, main: NativeTaskOutput, label: string): void {
  expect(worker.packets.length, `${label}: packets`).toBe(main.packets.length);
  worker.packets.forEach((p, i) => expect(bytesEqual(p, main.packets[i]!), `${label}: opus packet ${i}`).toBe(true));
  expect(bytesEqual(worker.decoded, main.decoded), `${label}: decoded pcm`).toBe(true);
  worker.cipher.forEach((c, i) => expect(bytesEqual(c, main.cipher[i]!), `${label}: cipher ${i}`).toBe(true));
  expect(Object.keys(worker.s16).sort()).toEqual(Object.keys(main.s16).sort());
  for (const level of Object.keys(main.s16)) expect(bytesEqual(worker.s16[level]!, main.s16[level]!), `${label}: s16 ${level}`).toBe(true);
  expect(bytesEqual(worker.f32, main.f32), `${label}: f32`).toBe(true);
  expect(bytesEqual(worker.resampled, main.resampled), `${label}: resampled`).toBe(true);
  worker.headers.forEach((h, i) => expect(bytesEqual(h, main.headers[i]!), `${label}: header ${i}`).toBe(true));
}

interface WorkerRun {
  result: NativeTaskOutput;
  entry: string;
  exitCode: number;
}

function runWorker(input: NativeTaskInput): Promise<WorkerRun> {
  return new Promise((resolvePromise, reject) => {
    const w = new Worker(WORKER, { workerData: { mode: 'task', input } });
    let message: { result: NativeTaskOutput; entry: string } | undefined;
    w.on('message', (m) => (message = m));
    w.on('error', reject);
    w.on('exit', (exitCode) => {
      if (!message) reject(new Error(`worker exited with ${exitCode} before posting a result`));
      else resolvePromise({ ...message, exitCode });
    });
  });
}

function runChild(args: string[]): Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(process.execPath, args, { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '', stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code, signal) => resolvePromise({ code, signal, stdout, stderr }));
  });
}

let compiledEntry = '';

beforeAll(() => {
  // Compile src/ -> dist/ so the workers load the real, compiled package.
  const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
  execFileSync(process.execPath, [tsc, '-p', 'tsconfig.build.json'], { cwd: root, stdio: 'pipe' });
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { main: string };
  compiledEntry = join(root, pkg.main);
  expect(existsSync(compiledEntry), `${compiledEntry} after tsc`).toBe(true);
});

describe('worker_threads', () => {
  it('4 concurrent workers (compiled package) produce exactly the main thread\'s results and exit with code 0', async () => {
    const inputs = [1, 2, 3, 4].map((s) => makeInput(s));
    const runs = await Promise.all(inputs.map((input) => runWorker(input)));
    for (const [i, run] of runs.entries()) {
      expect(run.exitCode, `worker ${i} exit code`).toBe(0);
      expect(fileURLToPath(run.entry), 'workers load the compiled entry').toBe(compiledEntry);
      expectSameOutput(run.result, runTask(gw, inputs[i]!), `worker ${i}`);
    }
    // and the shared results are right, not just equal: independent references on the main thread
    for (const [i, run] of runs.entries()) {
      const input = inputs[i]!;
      input.payloads.forEach((p, k) => {
        const ref = createCipheriv('aes-128-ctr', input.key, input.ivs[k]!).update(p);
        expect(bytesEqual(run.result.cipher[k]!, ref), `worker ${i} cipher ${k} vs node:crypto`).toBe(true);
      });
      const ref = new Int16Array(input.floats.length);
      input.floats.forEach((x, k) => {
        const v = Number.isNaN(x) ? 0 : Math.min(32767, Math.max(-32768, x * 32768));
        const f = Math.floor(v), d = v - f;
        ref[k] = d < 0.5 ? f : d > 0.5 ? f + 1 : f % 2 === 0 ? f : f + 1;
      });
      for (const level of Object.keys(run.result.s16)) expect(bytesEqual(run.result.s16[level]!, ref), `worker ${i} ${level}`).toBe(true);
      const decoded = run.result.decoded.subarray(0, input.pcm16k.length);
      // 2 s speech excerpts measure 0.89-0.96 (test/opus.test.ts covers the codec itself)
      expect(bestLagCorrelation(input.pcm16k, decoded).correlation, `worker ${i} opus round trip`).toBeGreaterThan(0.85);
      expect(run.result.headers[0]![1]).toBe(input.nonce[1]! ^ 1);
    }
  });

  it('a second wave of workers after the first ones exited (addon reloaded into fresh environments)', async () => {
    const input = makeInput(5);
    const main = runTask(gw, input);
    const runs = await Promise.all([0, 1, 2, 3].map(() => runWorker(input)));
    for (const [i, run] of runs.entries()) {
      expect(run.exitCode).toBe(0);
      expectSameOutput(run.result, main, `wave 2 worker ${i}`);
    }
  });

  // terminate() runs in a child process: if the addon aborts the process (a C++ exception escaping
  // a Node-API callback while the worker's environment is being torn down), the test sees the exit
  // status and stderr instead of losing the test runner.
  it.each([
    ['while every worker is inside its encode/crypt/decode loop', 'busy'],
    ['right after spawn (the addon may still be loading)', 'early'],
  ])('terminate() %s does not crash; the main thread keeps working', async (_label, how) => {
    const r = await runChild([TERMINATE_SCRIPT, how, '10']);
    expect(r.signal, r.stderr).toBeNull();
    expect(r.code, `exit code ${r.code}, stderr: ${r.stderr}`).toBe(0);
    const out = JSON.parse(r.stdout) as { ok: boolean; codes: number[] };
    expect(out.ok).toBe(true);
    expect(out.codes.length).toBe(40);
    // terminate() resolves with exit code 1 for a worker stopped from outside (0 if it had not started)
    for (const c of out.codes) expect([0, 1]).toContain(c);
    if (how === 'busy') for (const c of out.codes) expect(c).toBe(1);
  });

  it('the main thread of this process keeps working after all the workers above', async () => {
    const input = makeInput(6);
    expectSameOutput(runTask(gw, input), runTask(gw, input), 'main thread');
    const again = await runWorker(input);
    expect(again.exitCode).toBe(0);
    expectSameOutput(again.result, runTask(gw, input), 'worker after the others');
  });
});

describe('process exit with live native objects', () => {
  it.each([
    ['process.exit(0) while objects are open', 'exit'],
    ['the event loop drains with objects still referenced', 'natural'],
    ['process.exit(0) while a worker thread is busy in the addon', 'worker'],
  ])('%s: exit code 0, nothing on stderr', async (_label, how) => {
    const r = await runChild([EXIT_SCRIPT, how]);
    expect(r.signal, r.stderr).toBeNull();
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toBe('ok\n');
    expect(r.stderr).toBe('');
  });

  it('a child that fails inside the addon is reported (the harness can see failures)', async () => {
    const r = await runChild(['--input-type=module', '-e', "import * as gw from 'xiaozhi-gateway'; new gw.AesCtr(new Uint8Array(3));"]);
    expect(r.code).not.toBe(0);
    expect(r.stderr).toMatch(/ERR_OUT_OF_RANGE|key: expected 16 bytes/);
  });
});
