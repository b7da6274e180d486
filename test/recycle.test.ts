// Worker recycling (`start --recycle-after-sessions K`), as deployed: the compiled CLI with one
// worker that is replaced after 3 sessions. Its replacement starts first (the shared MQTT/HTTP
// ports never go without a listener); then the old worker takes no new connection, lets a
// conversation in progress finish without losing a frame, closes the idle devices' connections
// (never one with an open session), and exits 0 once empty. The closed devices reconnect the way
// the firmware does (at once, when woken for a conversation) and are served by the replacement.
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../src/config.js';
import { speechPackets } from './helpers/fixtures.js';
import { startGatewayProcess, type GatewayProcess, type LogLine, type WorkersReadyLine } from './helpers/gateway-process.js';
import { echoTurn as talkWith, expectWholeEcho as expectWhole } from './helpers/echo-turn.js';
import { RawDevice } from './helpers/raw-device.js';

const RECYCLE_AFTER = 3;

let gateway: GatewayProcess;
let ready: WorkersReadyLine;
let http = 0;
const frames = speechPackets(40).packets;
const talk = (d: RawDevice, n: number) => talkWith(d, frames, n);


async function metric(name: string, labels: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${http}/metrics`)).text();
  const m = text.match(new RegExp(`^${name}\\{[^}]*${labels}[^}]*\\} (\\S+)$`, 'm'));
  return m ? Number(m[1]) : 0;
}

/** A device as the firmware opens a conversation: OTA, MQTT connect, hello. */
async function open(m: string): Promise<RawDevice> {
  const d = await RawDevice.connect(http, m);
  await d.sayHello();
  return d;
}

const mac = (i: number) => `02:00:00:00:0e:${i.toString(16).padStart(2, '0')}`;

beforeAll(async () => {
  gateway = await startGatewayProcess([
    '--recycle-after-sessions', String(RECYCLE_AFTER), '--recycle-drain-s', '60',
    '--auth', 'open', '--mqtt-port', '0', '--udp-port', '0', '--http-port', '0', '--public-host', '127.0.0.1', '--log-level', 'info',
  ], { echoStderr: true });
  expect(gateway.ready.role, 'a primary supervises the one worker').toBe('primary');
  ready = gateway.ready as WorkersReadyLine;
  http = ready.ports.http;
});

afterAll(() => gateway?.stop());

describe('recycle config', () => {
  const load = (flags: Record<string, string>) => loadConfig({ flags: { '--public-host': '127.0.0.1', ...flags }, env: {} });
  it('is off by default; the spare UDP port must exist', () => {
    expect(load({}).recycleAfterSessions).toBe(0);
    expect(load({ '--recycle-after-sessions': '1000' }).recycleDrainS).toBe(600);
    expect(() => load({ '--workers': '2', '--recycle-after-sessions': '10', '--udp-port': '65534' })).toThrow(/udpPort \(from flag --udp-port\): 2 worker\(s\) and the spare port of recycling need the ports 65534..65536/);
    expect(() => load({ '--recycle-after-sessions': '-1' })).toThrow(/recycleAfterSessions/);
  });
});

describe(`start --recycle-after-sessions ${RECYCLE_AFTER} (one worker)`, () => {
  it('replaces the worker after 3 sessions: the conversation in progress finishes whole, idle devices are closed and served by the replacement, the old worker exits 0', async () => {
    expect(ready.workers).toHaveLength(1);
    const oldPid = ready.workers[0]!.pid;
    const oldUdp = ready.workers[0]!.udp;
    // Two devices talk and end their sessions (goodbye): connected, idle.
    const idle: RawDevice[] = [];
    for (let i = 0; i < 2; i++) {
      const d = await open(mac(i));
      expectWhole(await talk(d, 10), 10);
      d.publish({ session_id: d.session(), type: 'goodbye' });
      idle.push(d);
    }
    const closedAt = idle.map((d) => new Promise<number>((r) => d.mqtt.once('close', () => r(performance.now()))));
    // The third session reaches the threshold; its long turn runs while the worker is replaced.
    const busy = await open(mac(9));
    expect(busy.hello!.udp.port).toBe(oldUdp);
    let busyClosed = false;
    busy.mqtt.once('close', () => { busyClosed = true; });
    const turn = talk(busy, 80);
    const replaced: LogLine = await gateway.waitLog((l) => l.msg === 'replacement worker ready', 20_000, 'replacement worker ready');
    expect(replaced.pid).not.toBe(oldPid);
    expect(replaced.udp).not.toBe(oldUdp);
    // The idle devices are closed (within the drain's 1 s step); the one in conversation is not.
    await Promise.all(closedAt);
    expectWhole(await turn, 80);
    expect(busyClosed, 'a device with an open session is never closed by the drain').toBe(false);
    // Like the firmware woken for a conversation: reconnect (OTA, MQTT, hello) and talk.
    for (let i = 0; i < 2; i++) {
      const d = await open(mac(i));
      expect(d.hello!.udp.port, 'served by the replacement').toBe(replaced.udp);
      expectWhole(await talk(d, 10), 10);
      idle[i] = d;
    }
    // The conversation ends: the old worker is empty, closes the last device and exits 0.
    busy.publish({ session_id: busy.session(), type: 'goodbye' });
    await gateway.waitLog((l) => l.msg === 'recycled worker drained and exited', 20_000, 'recycled worker drained and exited');
    expect(gateway.logs.some((l) => l.msg === 'worker died' || l.msg === 'recycled worker died while draining')).toBe(false);
    expect(await metric('xiaozhi_worker_recycles_total', 'outcome="drained"')).toBe(1);
    // Its port is the spare now; the replacement serves on: it has seen 2 sessions, below the threshold.
    const again = await open(mac(9));
    expect(again.hello!.udp.port).toBe(replaced.udp);
    expectWhole(await talk(again, 10), 10);
    await Promise.all([...idle, again, busy].map((d) => d.close()));
  }, 120_000);
});
