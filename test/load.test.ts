// Load: 100 simulated devices talk through the echo agent for 30 s against a gateway running in its
// own process (as deployed). Asserts zero lost frames and zero protocol violations on both sides;
// speed figures belong to the benchmarks and the simulator's summary, not to assertions here.
import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatSummary } from '../src/sim/report.js';
import { runSimulation } from '../src/sim/simulator.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
let gateway: ChildProcess;
let httpPort = 0;

beforeAll(async () => {
  // The compiled CLI (npm test runs build:ts first), so the gateway runs exactly as `start` does.
  gateway = spawn(process.execPath, [join(root, 'dist', 'bin', 'xiaozhi-gateway.js'), 'start', '--mqtt-port', '0', '--udp-port', '0', '--http-port', '0', '--public-host', '127.0.0.1', '--log-level', 'info'], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  httpPort = await new Promise<number>((resolvePort, reject) => {
    const lines = createInterface({ input: gateway.stdout! });
    const timer = setTimeout(() => reject(new Error('gateway did not log "ready" within 20 s')), 20_000);
    gateway.once('exit', (code) => reject(new Error(`gateway exited early with ${code}`)));
    lines.on('line', (line) => {
      try {
        const entry = JSON.parse(line) as { msg?: string; ports?: { http: number } };
        if (entry.msg === 'ready' && entry.ports) {
          clearTimeout(timer);
          resolvePort(entry.ports.http);
        }
      } catch {
        // not JSON: ignore
      }
    });
  });
});

afterAll(async () => {
  if (gateway.exitCode === null) {
    const exited = new Promise((r) => gateway.once('exit', r));
    gateway.kill('SIGTERM');
    await exited;
  }
});

async function dropsByReason(): Promise<Record<string, number>> {
  const text = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text();
  const out: Record<string, number> = {};
  for (const m of text.matchAll(/^xiaozhi_drops_total\{reason="([a-z_]+)"[^}]*\} (\d+)/gm)) out[m[1]!] = Number(m[2]);
  return out;
}

describe('load', () => {
  it('100 devices through the echo agent for 30 s: no lost frames, no protocol violations', async () => {
    const summary = await runSimulation({ gateway: `http://127.0.0.1:${httpPort}/xiaozhi/ota/`, devices: 100, durationS: 30 });
    console.log(formatSummary(summary));
    expect(summary.failures.total).toBe(0);
    expect(summary.sessions.devicesWithSession).toBe(100);
    expect(summary.violations.ttsStopBeforeLastAudio).toBe(0);
    expect(summary.deviceDrops.total).toBe(0);
    expect(summary.downlink.lost).toBe(0);
    expect(summary.downlink.reordered).toBe(0);
    expect(summary.problems).toEqual([]);
    const drops = await dropsByReason();
    expect(Object.keys(drops).length).toBeGreaterThan(5);
    for (const [reason, n] of Object.entries(drops)) expect({ reason, n }).toEqual({ reason, n: 0 });
  }, 180_000);

  it('the gateway exits cleanly on SIGTERM within 10 s', async () => {
    const t0 = Date.now();
    const exited = new Promise<number | null>((r) => gateway.once('exit', (code) => r(code)));
    gateway.kill('SIGTERM');
    expect(await exited).toBe(0);
    expect(Date.now() - t0).toBeLessThan(10_000);
  }, 15_000);
});
