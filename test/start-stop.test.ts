// Start and stop cannot half-happen: a listener that fails to bind closes the ones already open and
// the error names the port; stop() releases the listeners and the native pipeline even when the
// drain times out.
import { EventEmitter } from 'node:events';
import net from 'node:net';
import { describe, expect, it } from 'vitest';
import type { AgentBackend, AgentSession } from '../src/agent/agent-backend.js';
import { Gateway } from '../src/gateway.js';
import { RawDevice } from './helpers/raw-device.js';

const base = { udpPort: 0, publicHost: '127.0.0.1', auth: 'signature' as const, signatureKey: 'test-signature-key-0123456789', logLevel: 'silent' as const };

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return port;
}

async function canListen(port: number): Promise<boolean> {
  const s = net.createServer();
  return new Promise((resolve) => {
    s.once('error', () => resolve(false));
    s.listen(port, '0.0.0.0', () => s.close(() => resolve(true)));
  });
}

describe('start', () => {
  it('an HTTP port already taken: the error names it, and the MQTT listener opened before is closed again', async () => {
    const taken = net.createServer();
    await new Promise<void>((r) => taken.listen(0, '0.0.0.0', () => r()));
    const httpPort = (taken.address() as net.AddressInfo).port;
    const mqttPort = await freePort();
    try {
      const err = await Gateway.start({ ...base, mqttPort, httpPort }).then(() => null, (e: Error & { code?: string }) => e);
      expect(err?.code).toBe('ERR_HTTP_LISTEN');
      expect(err?.message).toContain(String(httpPort));
      expect(await canListen(mqttPort)).toBe(true);
    } finally {
      await new Promise((r) => taken.close(r));
    }
  });

  it('an MQTT port already taken: the error names it', async () => {
    const taken = net.createServer();
    await new Promise<void>((r) => taken.listen(0, '0.0.0.0', () => r()));
    const mqttPort = (taken.address() as net.AddressInfo).port;
    try {
      const err = await Gateway.start({ ...base, mqttPort, httpPort: 0 }).then(() => null, (e: Error & { code?: string }) => e);
      expect(err?.code).toBe('ERR_BROKER_LISTEN');
      expect(err?.message).toContain(String(mqttPort));
    } finally {
      await new Promise((r) => taken.close(r));
    }
  });
});

/** An agent whose sessions never finish closing: the drain can only time out. */
class StuckAgent implements AgentBackend {
  readonly name = 'stuck';
  async createSession(): Promise<AgentSession> {
    const s = new EventEmitter() as unknown as AgentSession;
    Object.assign(s, {
      pushAudio() {}, listenStart() {}, listenStop() {}, wakeWord() {}, interrupt() {}, mcpFromDevice() {},
      close: () => new Promise<void>(() => {}),
    });
    return s;
  }
  close(): Promise<void> {
    return new Promise<void>(() => {});
  }
}

describe('stop', () => {
  it('releases the listeners and the native pipeline when the drain times out', async () => {
    const gw = await Gateway.start({ ...base, mqttPort: 0, httpPort: 0, shutdownTimeoutMs: 300 }, { agents: new StuckAgent() });
    const d = await RawDevice.connect(gw.ports.http, '02:5e:00:00:00:01');
    await d.sayHello();
    await new Promise((r) => setTimeout(r, 100));  // the agent attaches
    const t0 = performance.now();
    await gw.stop('test');
    expect(performance.now() - t0).toBeLessThan(3000);
    expect(gw.running).toBe(false);
    expect(gw.pipeline.closed).toBe(true);
    expect(await canListen(gw.ports.mqtt)).toBe(true);
    expect(await canListen(gw.ports.http)).toBe(true);
    await d.close();
  });
});
