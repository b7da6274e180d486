// The device directory of one instance with `--workers 2` and no Redis: any worker answers
// GET /devices with every worker's devices and delivers POST /devices/{id}/messages to a device on
// either worker, through the primary (cluster IPC).
import { spawn, type ChildProcess } from 'node:child_process';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RawDevice } from './helpers/raw-device.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const TOKEN = 'workers-directory-token-0123456789';
let gateway: ChildProcess;
let http = 0;
let udpPorts: number[] = [];
const devices: RawDevice[] = [];
const mac = (i: number) => `02:00:00:00:07:${i.toString(16).padStart(2, '0')}`;

beforeAll(async () => {
  gateway = spawn(process.execPath, [join(root, 'dist', 'bin', 'xiaozhi-gateway.js'), 'start', '--workers', '2', '--mqtt-port', '0', '--udp-port', '0', '--http-port', '0', '--public-host', '127.0.0.1', '--admin-token', TOKEN, '--log-level', 'info'], { stdio: ['ignore', 'pipe', 'inherit'] });
  const ready = await new Promise<{ ports: { http: number; udp: number[] } }>((resolveReady, reject) => {
    createInterface({ input: gateway.stdout! }).on('line', (line) => {
      if (!line.includes('"msg":"ready"') || !line.includes('"role":"primary"')) return;
      resolveReady(JSON.parse(line) as { ports: { http: number; udp: number[] } });
    });
    gateway.once('exit', (code) => reject(new Error(`gateway exited early (${code})`)));
  });
  http = ready.ports.http;
  udpPorts = ready.ports.udp;
  for (let i = 0; i < 6; i++) {
    const d = await RawDevice.connect(http, mac(i));
    await d.sayHello();
    devices.push(d);
  }
}, 60_000);

afterAll(async () => {
  await Promise.allSettled(devices.map((d) => d.close()));
  if (gateway && gateway.exitCode === null) {
    const exited = new Promise((r) => gateway.once('exit', r));
    gateway.kill('SIGTERM');
    await exited;
  }
});

const admin = (path: string, init: RequestInit = {}) => fetch(`http://127.0.0.1:${http}${path}`, { ...init, headers: { authorization: `Bearer ${TOKEN}` } });

describe('directory across workers without Redis', () => {
  it('every worker answers GET /devices with all devices, each where it is', async () => {
    // Devices sit on both workers (their hello replies name both UDP ports).
    expect(new Set(devices.map((d) => d.hello!.udp.port)).size).toBe(2);
    for (let ask = 0; ask < 4; ask++) {  // successive requests land on both workers
      const res = await admin('/devices');
      expect(res.status).toBe(200);
      const list = ((await res.json()) as { devices: Array<{ deviceId: string; worker: number; session: string }> }).devices;
      expect(list.map((e) => e.deviceId).sort()).toEqual(devices.map((_, i) => mac(i)).sort());
      for (const e of list) {
        const d = devices[devices.findIndex((_, i) => mac(i) === e.deviceId)]!;
        expect(udpPorts[e.worker]).toBe(d.hello!.udp.port);
        expect(e.session).toBe('idle');
      }
    }
  });

  it('POST /devices/{id}/messages reaches a device on either worker; 404 offline', async () => {
    for (let i = 0; i < devices.length; i++) {
      const note = { type: 'alert', status: 'notice', message: `note ${i}`, emotion: 'neutral' };
      const res = await admin(`/devices/${mac(i)}/messages`, { method: 'POST', body: JSON.stringify(note) });
      expect(res.status).toBe(202);
      await devices[i]!.waitFor((m) => m.message === note.message, 2000);
    }
    expect((await admin('/devices/02:00:00:00:0f:0f/messages', { method: 'POST', body: '{"type":"alert"}' })).status).toBe(404);
  });
});
