// The embedded broker against real peers: mqtt.js, raw sockets for malformed input, and Debian's
// mosquitto_pub as a second, independent MQTT implementation. Every broker runs on an ephemeral
// port on loopback; nothing is mocked.
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFileSync } from 'node:child_process';
import { promisify } from 'node:util';
import mqtt, { type MqttClient } from 'mqtt';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { MqttBroker, type DeviceIdentity, type DisconnectReason } from '../src/broker/mqtt-broker.js';
import { buildClientId, issueCredentials } from '../src/device/credentials.js';
import {
  SIGNATURE_KEY, capturingLogger, connectDevice, connectExpectingRefusal, ensureMosquittoClients, makeDevice,
  nextEvent, sleep, startBroker, type Device, type RunningBroker,
} from './helpers/broker-fixture.js';
import { connectPacket, DISCONNECT, PINGREQ, publishPacket, remainingLength, subscribePacket } from './helpers/mqtt-bytes.mjs';
import { RawMqtt } from './helpers/mqtt-raw.mjs';

const run = promisify(execFile);

const running: RunningBroker[] = [];
const clients: Array<MqttClient | RawMqtt> = [];

async function broker(options: Parameters<typeof startBroker>[0] = {}): Promise<RunningBroker> {
  const b = await startBroker(options);
  running.push(b);
  return b;
}

/**
 * Connects a device with mqtt.js and waits until the broker has reported it: the CONNACK can reach
 * the client (in this same process) a moment before 'device-connected' is emitted.
 */
async function device(port: number, d: Pick<Device, 'clientId' | 'username' | 'password'>, extra: Parameters<typeof connectDevice>[2] = {}): Promise<MqttClient> {
  const b = running.find((x) => x.port === port || x.tlsPort === port);
  const reported = b ? nextEvent<[DeviceIdentity]>(b.broker, 'device-connected', (id) => id.clientId === d.clientId) : Promise.resolve();
  const c = await connectDevice(port, d, extra);
  clients.push(c);
  await reported;
  return c;
}

async function raw(port: number): Promise<RawMqtt> {
  const c = await RawMqtt.connect(port);
  clients.push(c);
  return c;
}

/** Every secret a test handed out: none may ever appear in a log line. */
const secrets = new Set<string>([SIGNATURE_KEY]);
function dev(): Device {
  const d = makeDevice();
  secrets.add(d.password);
  return d;
}

afterEach(async () => {
  for (const c of clients.splice(0)) {
    if (c instanceof RawMqtt) c.destroy();
    else c.end(true);
  }
  for (const b of running.splice(0)) {
    await b.broker.stop();
    const text = b.logs.join('');
    for (const s of secrets) expect(text.includes(s), 'a secret appeared in the broker log').toBe(false);
  }
});

describe('device control path (mqtt.js)', () => {
  it('accepts OTA-style credentials and reports the identity', async () => {
    const b = await broker();
    const d = dev();
    const connected = nextEvent<[DeviceIdentity]>(b.broker, 'device-connected');
    await device(b.port, d, { keepalive: 240 });
    const [identity] = await connected;
    expect(identity).toMatchObject({ clientId: d.clientId, mac: d.mac, uuid: d.uuid, group: 'test', remoteAddress: '127.0.0.1', keepalive: 240, tls: false });
    expect(Object.isFrozen(identity)).toBe(true);
    expect(b.broker.isConnected(d.clientId)).toBe(true);
    expect(b.broker.getDevice(d.clientId)).toBe(identity);
    expect(b.broker.stats().connections).toMatchObject({ current: 1, total: 1 });
  });

  it('attributes each PUBLISH on the shared publish topic to the connection that sent it', async () => {
    const b = await broker();
    const [d1, d2] = [dev(), dev()];
    const c1 = await device(b.port, d1);
    const c2 = await device(b.port, d2);
    const got: Array<[string, string]> = [];
    b.broker.on('device-message', (identity, payload) => got.push([identity.clientId, payload.toString()]));
    await c1.publishAsync('device-server', '{"type":"hello","from":1}');
    await c2.publishAsync('device-server', '{"type":"hello","from":2}');
    await c1.publishAsync('device-server', '{"type":"listen","from":1}');
    for (let i = 0; i < 100 && got.length < 3; i++) await sleep(10);
    // Order holds per connection (across connections it depends on socket scheduling).
    expect(got.filter(([id]) => id === d1.clientId).map(([, p]) => p)).toEqual(['{"type":"hello","from":1}', '{"type":"listen","from":1}']);
    expect(got.filter(([id]) => id === d2.clientId).map(([, p]) => p)).toEqual(['{"type":"hello","from":2}']);
    expect(b.broker.stats().messages.in).toBe(3);
  });

  it('sendToDevice reaches exactly that device, QoS 0, retain 0, on devices/p2p/<mac>', async () => {
    const b = await broker();
    const [d1, d2] = [dev(), dev()];
    const c1 = await device(b.port, d1);
    const c2 = await device(b.port, d2);
    const got1: Array<{ topic: string; payload: string; qos: number; retain: boolean }> = [];
    const got2: string[] = [];
    c1.on('message', (topic, payload, packet) => got1.push({ topic, payload: payload.toString(), qos: packet.qos, retain: packet.retain }));
    c2.on('message', (topic) => got2.push(topic));
    expect(b.broker.sendToDevice(d1.clientId, { type: 'tts', state: 'start', session_id: 's1' })).toBe(true);
    expect(b.broker.sendToDevice(d1.clientId, { type: 'tts', state: 'stop', session_id: 's1' })).toBe(true);
    for (let i = 0; i < 100 && got1.length < 2; i++) await sleep(10);
    await sleep(50);
    const topic = `devices/p2p/${d1.mac.replaceAll(':', '_')}`;
    expect(got1).toEqual([
      { topic, payload: '{"type":"tts","state":"start","session_id":"s1"}', qos: 0, retain: false },
      { topic, payload: '{"type":"tts","state":"stop","session_id":"s1"}', qos: 0, retain: false },
    ]);
    expect(got2).toEqual([]);
    expect(b.broker.sendToDevice('GID_test@@@02_00_00_00_ff_ff', { type: 'x' })).toBe(false);
    expect(() => b.broker.sendToDevice(d1.clientId, null as unknown as object)).toThrow(TypeError);
    expect(b.broker.stats().messages.out).toBe(2);
    expect(b.broker.stats().aclDenials.forward).toBe(0);
  });

  it('refuses every SUBSCRIBE with 0x80, and a snooping subscriber never sees other devices\' traffic or keys', async () => {
    const b = await broker();
    const [snoop, victim] = [dev(), dev()];
    const spy = await device(b.port, snoop);
    const seen: string[] = [];
    spy.on('message', (topic, payload) => seen.push(`${topic} ${payload.toString()}`));
    // mqtt.js reports an all-refused SUBACK as an error carrying the packet.
    const suback = await spy.subscribeAsync(['#', 'devices/#', 'devices/p2p/+', 'device-server', '$SYS/#']).then(
      () => null,
      (err: { packet?: { granted?: number[] } }) => err.packet,
    );
    expect(suback?.granted).toEqual([128, 128, 128, 128, 128]);

    const v = await device(b.port, victim);
    const key = '00112233445566778899aabbccddeeff';
    expect(b.broker.sendToDevice(victim.clientId, { type: 'hello', transport: 'udp', udp: { server: '127.0.0.1', port: 9000, key, nonce: key } })).toBe(true);
    await v.publishAsync('device-server', '{"type":"hello","version":3}');
    await sleep(200);
    expect(seen).toEqual([]);

    // The same through a raw socket: SUBACK bytes, and not one byte of anything else afterwards.
    const r = await raw(b.port);
    const d3 = dev();
    await r.write(connectPacket({ clientId: d3.clientId, username: d3.username, password: d3.password }));
    expect(await r.connack()).toBe(0);
    await r.write(subscribePacket(7, ['#', '$SYS/#']));
    const rawSuback = await r.waitFor((p) => p.type === 9, 2000, 'SUBACK');
    expect([...rawSuback.body]).toEqual([0x00, 0x07, 0x80, 0x80]);
    const before = r.allBytes().length;
    b.broker.sendToDevice(victim.clientId, { type: 'hello', udp: { key } });
    await v.publishAsync('device-server', `{"type":"mcp","secret":"${key}"}`);
    await sleep(200);
    expect(r.allBytes().length).toBe(before);
    expect(r.allBytes().toString('latin1')).not.toContain(key);
    expect(b.broker.stats().aclDenials.subscribe).toBe(7);
  });

  it('refuses a PUBLISH into another device\'s topic, closes the offender, delivers nothing', async () => {
    const b = await broker();
    const [attacker, target] = [dev(), dev()];
    const t = await device(b.port, target);
    const targetGot: string[] = [];
    t.on('message', (topic) => targetGot.push(topic));
    const a = await device(b.port, attacker);
    const messages: string[] = [];
    b.broker.on('device-message', (id) => messages.push(id.clientId));
    const gone = nextEvent<[DeviceIdentity, DisconnectReason]>(b.broker, 'device-disconnected');
    const closed = new Promise<void>((resolve) => a.once('close', () => resolve()));
    a.publish(`devices/p2p/${target.mac.replaceAll(':', '_')}`, '{"type":"hello","udp":{"server":"evil"}}');
    await closed;
    const [identity, reason] = await gone;
    expect(identity.clientId).toBe(attacker.clientId);
    expect(reason).toBe('acl-violation');
    await sleep(100);
    expect(targetGot).toEqual([]);
    expect(messages).toEqual([]);
    expect(b.broker.stats().aclDenials.publishTopic).toBe(1);
    expect(b.broker.isConnected(target.clientId)).toBe(true);
  });

  it('takes over a duplicate client id: the old connection is reported gone, messages go to the new one', async () => {
    const b = await broker();
    const d = dev();
    const events: string[] = [];
    b.broker.on('device-connected', (id) => events.push(`connected ${id.connectionId}`));
    b.broker.on('device-disconnected', (id, reason) => events.push(`disconnected ${id.connectionId} ${reason}`));
    const first = await device(b.port, d);
    const firstClosed = new Promise<void>((resolve) => first.once('close', () => resolve()));
    const firstId = b.broker.getDevice(d.clientId)!.connectionId;
    const second = await device(b.port, d);
    await firstClosed;
    for (let i = 0; i < 100 && events.length < 3; i++) await sleep(10);
    const secondId = b.broker.getDevice(d.clientId)!.connectionId;
    expect(secondId).not.toBe(firstId);
    expect(events).toEqual([`connected ${firstId}`, `disconnected ${firstId} takeover`, `connected ${secondId}`]);
    const got: string[] = [];
    second.on('message', (_t, p) => got.push(p.toString()));
    expect(b.broker.sendToDevice(d.clientId, { type: 'stt', text: 'hi' })).toBe(true);
    for (let i = 0; i < 100 && got.length < 1; i++) await sleep(10);
    expect(got).toEqual(['{"type":"stt","text":"hi"}']);
    expect(b.broker.stats().connections.current).toBe(1);
    expect(b.broker.stats().takeovers).toBe(1);
  });

  it('accepts QoS 1 (acknowledged, handled as QoS 0) and clears retain; closes on QoS 2', async () => {
    const b = await broker();
    const d = dev();
    const c = await device(b.port, d);
    const msg = nextEvent<[DeviceIdentity, Buffer]>(b.broker, 'device-message');
    await c.publishAsync('device-server', '{"type":"abort"}', { qos: 1, retain: true });
    const [, payload] = await msg;
    expect(payload.toString()).toBe('{"type":"abort"}');
    expect(b.broker.stats().retainCleared).toBe(1);
    // Nothing was retained: a later subscriber (refused anyway) gets nothing, and QoS 2 closes.
    const closed = new Promise<void>((resolve) => c.once('close', () => resolve()));
    c.publish('device-server', '{"type":"abort"}', { qos: 2 });
    await closed;
    expect(b.broker.stats().aclDenials.publishQos).toBe(1);
  });

  it('passes packets of 20 KB (MCP replies) and closes on packets over the cap', async () => {
    const b = await broker({ limits: { maxPacketSize: 32_768 } });
    const d = dev();
    const c = await device(b.port, d);
    const big = JSON.stringify({ type: 'mcp', payload: { jsonrpc: '2.0', id: 1, result: { tools: 'x'.repeat(20_000) } } });
    const msg = nextEvent<[DeviceIdentity, Buffer]>(b.broker, 'device-message');
    await c.publishAsync('device-server', big);
    expect((await msg)[1].length).toBe(big.length);
    const gone = nextEvent<[DeviceIdentity, DisconnectReason]>(b.broker, 'device-disconnected');
    c.publish('device-server', 'y'.repeat(40_000));
    expect((await gone)[1]).toBe('protocol-violation');
    expect(b.broker.stats().refused.oversizedPacket).toBe(1);
  });

  it('reports why a device went away', async () => {
    const b = await broker();
    const reasons: DisconnectReason[] = [];
    b.broker.on('device-disconnected', (_id, reason) => reasons.push(reason));
    const [d1, d2, d3] = [dev(), dev(), dev()];
    const c1 = await device(b.port, d1);
    await c1.endAsync();
    const r = await raw(b.port);
    await r.write(connectPacket({ clientId: d2.clientId, username: d2.username, password: d2.password }));
    expect(await r.connack()).toBe(0);
    r.destroy();
    await device(b.port, d3);
    for (let i = 0; i < 100 && reasons.length < 2; i++) await sleep(10);
    expect(b.broker.disconnectDevice(d3.clientId)).toBe(true);
    expect(b.broker.disconnectDevice(d3.clientId)).toBe(false);
    for (let i = 0; i < 100 && reasons.length < 3; i++) await sleep(10);
    const d4 = dev();
    await device(b.port, d4);
    await b.broker.stop();
    expect(reasons).toEqual(['client-disconnect', 'connection-lost', 'server-disconnect', 'broker-stopped']);
  });

  it('keeps working when an event listener throws', async () => {
    const b = await broker();
    b.broker.on('device-message', () => { throw new Error('listener bug'); });
    const d = dev();
    const c = await device(b.port, d);
    await c.publishAsync('device-server', '{"type":"hello"}');
    await sleep(50);
    expect(b.broker.sendToDevice(d.clientId, { type: 'stt', text: 'still here' })).toBe(true);
    expect(b.broker.isConnected(d.clientId)).toBe(true);
  });
});

describe('authentication and CONNECT policy', () => {
  it('refuses a wrong signature with CONNACK 4 and closes', async () => {
    const b = await broker();
    const d = dev();
    const bad = issueCredentials({ clientId: d.clientId, remoteIp: '127.0.0.1', signatureKey: 'another-key' });
    expect(await connectExpectingRefusal(b.port, { clientId: d.clientId, username: d.username, password: bad.password })).toBe(4);
    const r = await raw(b.port);
    await r.write(connectPacket({ clientId: d.clientId, username: d.username, password: d.password.slice(0, -2) }));
    expect(await r.connack()).toBe(4);
    expect(await r.closedWithin(1000)).toBe(true);
    const r2 = await raw(b.port);
    await r2.write(connectPacket({ clientId: d.clientId }));
    expect(await r2.connack()).toBe(4);
    expect(b.broker.stats().authFailures.badCredentials).toBe(3);
    expect(b.broker.stats().connections.total).toBe(0);
  });

  it('refuses client ids of no accepted form with CONNACK 2, even with a valid signature for them', async () => {
    const b = await broker();
    for (const clientId of ['device-1', 'GID_test@@@02:00:00:00:00:01@@@5f0c8a2e-1b3d-4e6f-8a9b-000000000001', 'GID_test@@@02_00_00_00_00_01@@@not-a-uuid', '']) {
      const { username, password } = issueCredentials({ clientId: clientId || 'x', remoteIp: '127.0.0.1', signatureKey: SIGNATURE_KEY });
      const r = await raw(b.port);
      await r.write(connectPacket({ clientId, username, password }));
      expect(await r.connack(), clientId).toBe(2);
      r.destroy();
    }
    expect(b.broker.stats().authFailures.badClientId).toBe(4);
  });

  it('accepts the legacy GID_<group>@@@<mac> form when signed', async () => {
    const b = await broker();
    const clientId = 'GID_test@@@02_00_00_00_aa_01';
    const creds = issueCredentials({ clientId, remoteIp: '10.0.0.1', signatureKey: SIGNATURE_KEY });
    const connected = nextEvent<[DeviceIdentity]>(b.broker, 'device-connected');
    await device(b.port, { clientId, ...creds });
    const [identity] = await connected;
    expect(identity.mac).toBe('02:00:00:00:aa:01');
    expect(identity.uuid).toBeUndefined();
  });

  it('refuses keepalive outside [min, max] with CONNACK 2 and accepts the bounds', async () => {
    const b = await broker({ limits: { keepaliveMinS: 30, keepaliveMaxS: 1200 } });
    for (const keepalive of [0, 29, 1201, 5000]) {
      const d = dev();
      expect(await connectExpectingRefusal(b.port, { clientId: d.clientId, username: d.username, password: d.password, keepalive }), `keepalive ${keepalive}`).toBe(2);
    }
    for (const keepalive of [30, 1200]) {
      const d = dev();
      const c = await device(b.port, d, { keepalive });
      expect(c.connected).toBe(true);
    }
    expect(b.broker.stats().authFailures.keepalive).toBe(4);
    expect(b.logs.some((l) => l.includes('keepalive 0 s is outside the accepted range 30..1200 s'))).toBe(true);
  });

  it('refuses MQTT 3.1 with CONNACK 1 and a persistent session with CONNACK 2; strips wills', async () => {
    const b = await broker();
    const d = dev();
    const r = await raw(b.port);
    await r.write(connectPacket({ clientId: d.clientId, username: d.username, password: d.password, level: 3 }));
    expect(await r.connack()).toBe(1);
    expect(await r.closedWithin(1000)).toBe(true);
    expect(await connectExpectingRefusal(b.port, { clientId: d.clientId, username: d.username, password: d.password, clean: false })).toBe(2);

    const gone = nextEvent<[DeviceIdentity, DisconnectReason]>(b.broker, 'device-disconnected');
    const messages: string[] = [];
    b.broker.on('device-message', (_id, p) => messages.push(p.toString()));
    const r2 = await raw(b.port);
    await r2.write(connectPacket({ clientId: d.clientId, username: d.username, password: d.password, will: { topic: 'device-server', payload: '{"type":"goodbye"}' } }));
    expect(await r2.connack()).toBe(0);
    r2.destroy();
    await gone;
    await sleep(100);
    expect(messages).toEqual([]);
    expect(b.broker.stats().willsStripped).toBe(1);
    expect(b.broker.stats().authFailures).toMatchObject({ protocolVersion: 1, cleanSession: 1 });
  });

  it('open mode accepts any well-formed client id without a password, and says so loudly', async () => {
    const b = await broker({ auth: { mode: 'open' } });
    const clientId = buildClientId({ group: 'any', mac: '02:00:00:00:bb:01', uuid: '5f0c8a2e-1b3d-4e6f-8a9b-00000000bb01' });
    const c = await device(b.port, { clientId, username: '', password: '' });
    expect(c.connected).toBe(true);
    expect(await connectExpectingRefusal(b.port, { clientId: 'not-a-device' })).toBe(2);
    expect(b.logs.some((l) => l.includes('"level":40') && l.includes('MQTT AUTH IS OPEN'))).toBe(true);
  });
});

describe('malformed and hostile input (raw sockets)', () => {
  it('closes a connection whose first packet is not CONNECT', async () => {
    const b = await broker();
    const r = await raw(b.port);
    await r.write(PINGREQ);
    expect(await r.closedWithin(1000)).toBe(true);
    expect(r.allBytes().length).toBe(0);
    const r2 = await raw(b.port);
    await r2.write(publishPacket('device-server', '{"type":"hello"}'));
    expect(await r2.closedWithin(1000)).toBe(true);
    expect(b.broker.stats().refused.firstPacketNotConnect).toBe(2);
  });

  it('closes on an oversized remaining length as soon as the header arrives, without waiting for the body', async () => {
    const b = await broker();
    const d = dev();
    const r = await raw(b.port);
    await r.write(connectPacket({ clientId: d.clientId, username: d.username, password: d.password }));
    expect(await r.connack()).toBe(0);
    // A PUBLISH announcing 200 MB: only the 5 header bytes are ever sent.
    await r.write(Buffer.concat([Buffer.from([0x30]), remainingLength(200 * 1024 * 1024)]));
    expect(await r.closedWithin(1000)).toBe(true);

    // A CONNECT announcing 100 KB (over the pre-authentication cap), also closed at once.
    const r2 = await raw(b.port);
    await r2.write(Buffer.concat([Buffer.from([0x10]), remainingLength(100_000)]));
    expect(await r2.closedWithin(1000)).toBe(true);
    // A remaining length with a fifth continuation byte.
    const r3 = await raw(b.port);
    await r3.write(Buffer.from([0x10, 0xff, 0xff, 0xff, 0xff, 0x01]));
    expect(await r3.closedWithin(1000)).toBe(true);
    expect(b.broker.stats().refused).toMatchObject({ oversizedPacket: 2, malformedRemainingLength: 1 });
  });

  it('accepts a CONNECT trickled byte by byte within the deadline', async () => {
    const b = await broker({ limits: { connectTimeoutMs: 5000 } });
    const d = dev();
    const r = await raw(b.port);
    const connected = nextEvent<[DeviceIdentity]>(b.broker, 'device-connected', undefined, 5000);
    await r.trickle(connectPacket({ clientId: d.clientId, username: d.username, password: d.password }), 2);
    expect(await r.connack(3000)).toBe(0);
    expect((await connected)[0].clientId).toBe(d.clientId);
    const msg = nextEvent<[DeviceIdentity, Buffer]>(b.broker, 'device-message');
    await r.trickle(publishPacket('device-server', '{"type":"listen"}'), 1);
    expect((await msg)[1].toString()).toBe('{"type":"listen"}');
  });

  it('closes a connection that does not complete CONNECT within the deadline', async () => {
    const b = await broker({ limits: { connectTimeoutMs: 300 } });
    const d = dev();
    const partial = await raw(b.port);
    const bytes = connectPacket({ clientId: d.clientId, username: d.username, password: d.password });
    const started = Date.now();
    await partial.write(bytes.subarray(0, bytes.length - 3));
    const silent = await raw(b.port);
    expect(await partial.closedWithin(3000)).toBe(true);
    expect(await silent.closedWithin(3000)).toBe(true);
    expect(Date.now() - started).toBeGreaterThanOrEqual(250);
    expect(partial.allBytes().length).toBe(0);
    expect(b.broker.stats().refused.connectTimeout).toBe(2);
  });

  it('refuses sockets beyond maxConnections at accept, and accepts again once one leaves', async () => {
    const b = await broker({ limits: { maxConnections: 2 } });
    const [d1, d2, d3] = [dev(), dev(), dev()];
    const c1 = await device(b.port, d1);
    await device(b.port, d2);
    const r = await raw(b.port);
    await r.write(connectPacket({ clientId: d3.clientId, username: d3.username, password: d3.password }));
    expect(await r.closedWithin(1000)).toBe(true);
    expect(r.allBytes().length).toBe(0);
    expect(b.broker.stats().refused.maxConnections).toBe(1);
    await c1.endAsync();
    for (let i = 0; i < 100 && b.broker.stats().connections.sockets > 1; i++) await sleep(10);
    const c3 = await device(b.port, d3);
    expect(c3.connected).toBe(true);
  });

  it('rate-limits new connections per address, refilling with time', async () => {
    let now = 1_000_000;
    const b = await broker({ limits: { connectsPerIpPerMinute: 3 }, clock: () => now });
    const accepted: boolean[] = [];
    for (let i = 0; i < 5; i++) {
      const d = dev();
      const r = await raw(b.port);
      await r.write(connectPacket({ clientId: d.clientId, username: d.username, password: d.password }));
      accepted.push(await r.connack(1000).then((rc) => rc === 0, () => false));
    }
    expect(accepted).toEqual([true, true, true, false, false]);
    expect(b.broker.stats().refused.rateLimited).toBe(2);
    now += 20_000; // one token back (3 per minute)
    const d = dev();
    const r = await raw(b.port);
    await r.write(connectPacket({ clientId: d.clientId, username: d.username, password: d.password }));
    expect(await r.connack()).toBe(0);
    expect(b.logs.filter((l) => l.includes('connect rate limit exceeded')).length).toBe(1);
  });

  it('closes on a reserved packet type after CONNECT', async () => {
    const b = await broker();
    const d = dev();
    const r = await raw(b.port);
    await r.write(connectPacket({ clientId: d.clientId, username: d.username, password: d.password }));
    expect(await r.connack()).toBe(0);
    await r.write(Buffer.from([0xf0, 0x00]));
    expect(await r.closedWithin(1000)).toBe(true);
    expect(b.broker.stats().refused.reservedPacketType).toBe(1);
  });

  it('enforces the packet size cap to the byte', async () => {
    const b = await broker({ limits: { maxPacketSize: 16_384 } });
    const d = dev();
    const r = await raw(b.port);
    await r.write(connectPacket({ clientId: d.clientId, username: d.username, password: d.password }));
    expect(await r.connack()).toBe(0);
    // 1 type byte + 2 length bytes + 2 + 13 ("device-server") + payload = total packet size.
    const exact = publishPacket('device-server', Buffer.alloc(16_384 - 18, 0x61));
    expect(exact.length).toBe(16_384);
    const msg = nextEvent<[DeviceIdentity, Buffer]>(b.broker, 'device-message');
    await r.write(exact);
    expect((await msg)[1].length).toBe(16_366);
    const over = publishPacket('device-server', Buffer.alloc(16_384 - 17, 0x61));
    await r.write(over);
    expect(await r.closedWithin(1000)).toBe(true);
    expect(b.broker.stats().refused.oversizedPacket).toBe(1);
  });

  it('closes a device that stays silent for 1.5 x its keepalive', async () => {
    const b = await broker({ limits: { keepaliveMinS: 1 } });
    const d = dev();
    const r = await raw(b.port);
    const gone = nextEvent<[DeviceIdentity, DisconnectReason]>(b.broker, 'device-disconnected', undefined, 4000);
    await r.write(connectPacket({ clientId: d.clientId, username: d.username, password: d.password, keepalive: 1 }));
    expect(await r.connack()).toBe(0);
    expect((await gone)[1]).toBe('keepalive-timeout');
    expect(await r.closedWithin(1000)).toBe(true);
  });

  it('stats() is a fresh snapshot', async () => {
    const b = await broker();
    const s1 = b.broker.stats();
    s1.messages.in = 99;
    expect(b.broker.stats().messages.in).toBe(0);
    expect(b.broker.stats()).toMatchObject({ connections: { current: 0, total: 0, sockets: 0 }, disconnects: { takeover: 0 } });
  });

  it('answers a clean DISCONNECT as client-disconnect', async () => {
    const b = await broker();
    const d = dev();
    const r = await raw(b.port);
    await r.write(connectPacket({ clientId: d.clientId, username: d.username, password: d.password }));
    expect(await r.connack()).toBe(0);
    const gone = nextEvent<[DeviceIdentity, DisconnectReason]>(b.broker, 'device-disconnected');
    await r.write(DISCONNECT);
    expect((await gone)[1]).toBe('client-disconnect');
  });
});

describe('second MQTT implementation and TLS', () => {
  beforeAll(() => {
    ensureMosquittoClients();
  });

  it('mosquitto_pub drives the control path: its PUBLISH becomes a device-message', async () => {
    const b = await broker();
    const d = dev();
    const hello = '{"type":"hello","version":3,"transport":"udp","features":{"mcp":true},"audio_params":{"format":"opus","sample_rate":16000,"channels":1,"frame_duration":60}}';
    const msg = nextEvent<[DeviceIdentity, Buffer]>(b.broker, 'device-message', undefined, 10_000);
    await run('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(b.port), '-i', d.clientId, '-u', d.username, '-P', d.password, '-t', 'device-server', '-m', hello, '-V', 'mqttv311', '-k', '240']);
    const [identity, payload] = await msg;
    expect(identity).toMatchObject({ clientId: d.clientId, mac: d.mac, uuid: d.uuid, keepalive: 240 });
    expect(payload.toString()).toBe(hello);

    // And it is refused with a wrong password, with mosquitto's own wording of CONNACK 4.
    const bad = await run('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(b.port), '-i', d.clientId, '-u', d.username, '-P', 'wrong', '-t', 'device-server', '-m', hello, '-V', 'mqttv311'])
      .then(() => null, (err: { stderr: string; code: number }) => err);
    expect(bad).not.toBeNull();
    expect(bad!.stderr.toLowerCase()).toContain('bad user name or password');
    // Its subscriber side is refused too.
    const sub = await run('mosquitto_sub', ['-h', '127.0.0.1', '-p', String(b.port), '-i', d.clientId, '-u', d.username, '-P', d.password, '-t', '#', '-V', 'mqttv311', '-W', '1', '-C', '1'])
      .then((r) => r, (err: { stdout: string; stderr: string }) => err);
    expect(sub.stdout).toBe('');
  });

  it('serves TLS on its own listener with the same policy', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'broker-tls-'));
    try {
      execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
        '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem'), '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
      const cert = readFileSync(join(dir, 'cert.pem'));
      const key = readFileSync(join(dir, 'key.pem'));
      // A handshake deadline far beyond the test's timeout: if stop() waited for the stuck socket
      // below, the test would time out, whatever the machine's load.
      const b = await broker({ tls: { port: 0, cert, key }, limits: { connectTimeoutMs: 600_000 } });
      expect(b.tlsPort).toBeGreaterThan(0);
      const d = dev();
      const connected = nextEvent<[DeviceIdentity]>(b.broker, 'device-connected');
      const c = await mqtt.connectAsync(`mqtts://127.0.0.1:${b.tlsPort}`, {
        clientId: d.clientId, username: d.username, password: d.password, protocolVersion: 4, clean: true,
        reconnectPeriod: 0, ca: cert, rejectUnauthorized: true,
      }, false);
      clients.push(c);
      expect((await connected)[0].tls).toBe(true);
      const msg = nextEvent<[DeviceIdentity, Buffer]>(b.broker, 'device-message');
      await c.publishAsync('device-server', '{"type":"hello"}');
      expect((await msg)[1].toString()).toBe('{"type":"hello"}');
      const got = new Promise<string>((resolve) => c.once('message', (_t, p) => resolve(p.toString())));
      b.broker.sendToDevice(d.clientId, { type: 'llm', emotion: 'happy' });
      expect(await got).toBe('{"type":"llm","emotion":"happy"}');

      // A socket stuck before its TLS handshake does not hold up stop().
      const stuck = await raw(b.tlsPort!);
      await b.broker.stop();
      expect(await stuck.closedWithin(1000)).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('configuration errors', () => {
  it('names the bad option', () => {
    const { logger } = capturingLogger();
    const auth = { mode: 'signature', signatureKey: 'k' } as const;
    expect(() => new MqttBroker({ auth, logger, limits: { maxPacketSize: 8192 } })).toThrow(/limits\.maxPacketSize: expected 16384/);
    expect(() => new MqttBroker({ auth, logger, limits: { keepaliveMinS: 100, keepaliveMaxS: 50 } })).toThrow(/keepaliveMinS/);
    expect(() => new MqttBroker({ auth: { mode: 'signature', signatureKey: '' }, logger })).toThrow(/auth\.signatureKey/);
    expect(() => new MqttBroker({ auth: { mode: 'none' } as never, logger })).toThrow(/auth:/);
    expect(() => new MqttBroker({ auth, logger, publishTopic: 'devices/#' })).toThrow(/publishTopic/);
    expect(() => new MqttBroker({ auth, logger, publishTopic: 'devices/p2p/x' })).toThrow(/publishTopic/);
  });

  it('rejects start() on a busy port with a coded error', async () => {
    const b = await broker();
    const { logger } = capturingLogger();
    const second = new MqttBroker({ port: b.port, host: '127.0.0.1', auth: { mode: 'open' }, logger });
    await expect(second.start()).rejects.toMatchObject({ code: 'ERR_BROKER_LISTEN', message: expect.stringContaining('EADDRINUSE') });
  });
});
