// The simulator against the real gateway (src/gateway.ts) with the echo agent: sessions open, the
// echo comes back, nothing the firmware would drop, no audio after tts stop, barge-in stops the
// downlink, legacy firmware and the CLI. Skipped while src/gateway.ts does not exist.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildUplinkClip } from '../src/sim/audio.js';
import { runSimulation, type SimulationOptions, type SimulationSummary } from '../src/sim/simulator.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const hasGateway = existsSync(join(root, 'src', 'gateway.ts'));
const cliBuilt = existsSync(join(root, 'dist', 'bin', 'xiaozhi-gateway.js')) && existsSync(join(root, 'dist', 'src', 'sim', 'cli.js'));

interface GatewayLike {
  ports: { mqtt: number; udp: number; http: number };
  counters(): Record<string, number>;
  stop(reason?: string): Promise<void>;
}

let gw: GatewayLike;
let otaUrl = '';
const clip = buildUplinkClip({ seconds: 12 });

function expectClean(s: SimulationSummary): void {
  expect(s.problems).toEqual([]);
  expect(s.violations.ttsStopBeforeLastAudio).toBe(0);
  expect(s.failures.total).toBe(0);
  expect(s.deviceDrops.total).toBe(0);
  expect(s.downlink.lost).toBe(0);
  expect(s.ok).toBe(true);
}

const run = (o: Partial<SimulationOptions>) =>
  runSimulation({ gateway: otaUrl, devices: 3, durationS: 8, speakMs: 1500, pauseMs: 500, rampMs: 200, decodeThreads: 0, clip, ...o });

describe.runIf(hasGateway)('simulated devices against the gateway', () => {
  beforeAll(async () => {
    // A variable specifier: this file type-checks and loads while src/gateway.ts does not exist.
    const modulePath = '../src/gateway.js';
    const { Gateway } = (await import(/* @vite-ignore */ modulePath)) as { Gateway: { start(config: Record<string, unknown>): Promise<GatewayLike> } };
    gw = await Gateway.start({
      mqttPort: 0, udpPort: 0, httpPort: 0, publicHost: '127.0.0.1', auth: 'signature',
      signatureKey: 'sim-test-signature-key-0123456789', agent: 'echo', logLevel: 'silent',
    });
    otaUrl = `http://127.0.0.1:${gw.ports.http}/xiaozhi/ota/`;
  });

  afterAll(async () => {
    await gw?.stop('test end');
  });

  it('auto mode: every device opens a session and hears its own speech back', async () => {
    const s = await run({ mode: 'auto' });
    expectClean(s);
    expect(s.sessions.opened).toBe(3);
    expect(s.sessions.devicesWithSession).toBe(3);
    expect(s.turns.completed).toBeGreaterThanOrEqual(3);
    expect(s.latencyMs.count).toBe(s.turns.completed);
    expect(s.echo.fidelity.count).toBeGreaterThanOrEqual(3);
    expect(s.echo.fidelity.mean!).toBeGreaterThan(0.8);
    expect(s.echo.completeness.min!).toBeGreaterThanOrEqual(90);
    expect(s.downlink.maxQueueDepth).toBeLessThan(40);
    expect(s.gateway.available).toBe(true);
    expect(s.gateway.rssBytes).toBeGreaterThan(0);
    expect(typeof s.gateway.cpuPercent).toBe('number');
  });

  it('manual mode, legacy firmware, new sessions every 2 turns', async () => {
    const s = await run({ mode: 'manual', firmware: 'legacy', turnsPerSession: 2, durationS: 10, speakMs: 1000, pauseMs: 300 });
    expectClean(s);
    expect(s.sessions.closedByDevice).toBeGreaterThan(0);
    expect(s.sessions.opened).toBeGreaterThan(3);
  });

  it('barge-in: after abort the gateway sends no more downlink of that turn', async () => {
    const before = gw.counters().downlink_after_abort ?? 0;
    const s = await run({ mode: 'auto', abortEvery: 1, abortAfterMs: 400, speakMs: 2500, durationS: 8 });
    expect(s.violations.ttsStopBeforeLastAudio).toBe(0);
    expect(s.failures.total).toBe(0);
    expect(s.abort.bargeIns).toBeGreaterThan(0);
    // Judged by what the gateway sent after it handled the abort (0: abort() clears the pacer and
    // the pipeline's output before it returns), not by arrival times at the device, which on a
    // loaded machine include the MQTT round trip (printed by the simulator's report only).
    expect(gw.counters().downlink_after_abort).toBe(before);
    // what arrived after the abort is dropped as such, nothing else
    const { total, 'after-abort': afterAbort } = s.deviceDrops;
    expect(total).toBe(afterAbort);
  });

  // Stock firmware in realtime mode (server AEC) sends listen start once per channel and never listen
  // stop: after tts stop it is listening again with voice processing still running, so the server's
  // VAD must pick up the next utterance by itself. Opt-in until the gateway does that.
  it('realtime mode: every utterance gets a reply', async () => {
    const s = await run({ mode: 'realtime', durationS: 12, speakMs: 1500, pauseMs: 800, devices: 2, replyTimeoutMs: 5000 });
    expectClean(s);
    expect(s.turns.completed).toBeGreaterThanOrEqual(4);
  });

  it.runIf(cliBuilt)('the CLI: progress on stderr, JSON summary on stdout, exit 0', async () => {
    const child = spawn(process.execPath, [join(root, 'dist', 'bin', 'xiaozhi-gateway.js'), 'simulate', '--gateway', otaUrl, '--devices', '2', '--duration', '5', '--speak-ms', '1200', '--pause-ms', '400', '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const code = await new Promise<number | null>((r) => child.on('close', r));
    expect(err).toMatch(/mqtt \d+\/2/);
    const summary = JSON.parse(out) as SimulationSummary;
    expect(summary.ok).toBe(true);
    expect(summary.sessions.opened).toBe(2);
    expect(code).toBe(0);
  });
});
