// Hostile tier, raw MQTT: every byte a device must not send, against a gateway in its own process,
// while the canary keeps talking (see runner.ts for what every case asserts).
import { expect } from 'vitest';
import {
  connectPacket, DISCONNECT, mqttPacket, PINGREQ, publishPacket, sleep, subscribePacket, utf8Field, type Device, type RawMqtt,
} from './harness.mjs';
import { hostileCatalogue, type Ctx, type HostileCase } from './runner.js';

const closes = async (m: RawMqtt, what: string, ms = 3000): Promise<void> => {
  expect(await m.closedWithin(ms), `the broker closes the connection (${what})`).toBe(true);
};
const stillOpen = async (m: RawMqtt, what: string): Promise<void> => {
  await sleep(150);
  expect(m.closed, `the connection stays open (${what})`).toBe(false);
};

/** Sends `bytes` as the first packet of a fresh connection and expects it closed. */
function firstPacket(name: string, bytes: Buffer, counter: string): HostileCase {
  return {
    name,
    expect: [{ counter, exact: 1 }],
    async run(ctx) {
      const m = await ctx.mqtt();
      await m.write(bytes);
      await closes(m, name);
    },
  };
}

/** After a good CONNECT (and hello, so a session exists): sends `bytes`, then `check`. */
function afterConnect(name: string, bytes: Buffer | ((d: Device) => Buffer), expectation: HostileCase['expect'], after: 'closes' | 'open' | 'either' = 'closes'): HostileCase {
  return {
    name,
    expect: [...expectation, ...(after === 'closes' ? ['sessions_closed'] : [])],
    async run(ctx) {
      const d = await ctx.device({ hello: true });
      await d.sendMqtt(typeof bytes === 'function' ? bytes(d) : bytes);
      if (after === 'closes') await closes(d.mqtt, name);
      else if (after === 'open') {
        await stillOpen(d.mqtt, name);
        // Still served: a new hello is answered.
        await d.sayHello();
      } else await sleep(300);
    },
  };
}

/** CONNECT with fields changed from the device's good credentials; expects a refusal. */
function badConnect(name: string, change: (c: Device['creds'], mac: string) => Parameters<typeof connectPacket>[0], counter = 'mqtt_auth_failures', returnCode?: number): HostileCase {
  return {
    name,
    expect: counter ? [{ counter, exact: 1 }] : [],
    async run(ctx) {
      const ip = ctx.ip();
      const d = await ctx.device({ ip });  // OTA gives real credentials (this connection stays as the reference)
      const m = await ctx.mqtt(ip);
      await m.write(connectPacket(change(d.creds, d.mac)));
      const code = await m.connack(3000);
      if (returnCode !== undefined) expect(code, 'CONNACK return code').toBe(returnCode);
      else expect(code === null || code !== 0, 'no successful CONNACK').toBe(true);
      await closes(m, name);
    },
  };
}

const firstOfEachType: HostileCase[] = [
  [0x20, 'CONNACK'], [0x30, 'PUBLISH'], [0x40, 'PUBACK'], [0x50, 'PUBREC'], [0x62, 'PUBREL'], [0x70, 'PUBCOMP'],
  [0x82, 'SUBSCRIBE'], [0x90, 'SUBACK'], [0xa2, 'UNSUBSCRIBE'], [0xb0, 'UNSUBACK'], [0xc0, 'PINGREQ'], [0xd0, 'PINGRESP'], [0xe0, 'DISCONNECT'],
].map(([first, name]) => {
  const body = first === 0x30 ? Buffer.concat([utf8Field('device-server'), Buffer.from('{"type":"hello"}')])
    : first === 0xc0 || first === 0xd0 || first === 0xe0 ? Buffer.alloc(0)
      : first === 0x82 ? Buffer.concat([Buffer.from([0, 1]), utf8Field('#'), Buffer.from([0])])
        : first === 0xa2 ? Buffer.concat([Buffer.from([0, 1]), utf8Field('#')])
          : Buffer.from([0, 1]);
  return firstPacket(`${name} as the first packet (before CONNECT)`, mqttPacket(first as number, body), 'mqtt_refused_protocol');
});

function goodConnect(d: Device, extra: Partial<Parameters<typeof connectPacket>[0]> = {}): Buffer {
  return connectPacket({ clientId: d.creds.client_id, username: d.creds.username, password: d.creds.password, keepalive: 60, ...extra });
}

const order: HostileCase[] = [
  ...firstOfEachType,
  firstPacket('reserved type 0 as the first packet', Buffer.from([0x00, 0x00]), 'mqtt_refused_protocol'),
  firstPacket('reserved type 15 as the first packet', Buffer.from([0xf0, 0x00]), 'mqtt_refused_protocol'),
  firstPacket('CONNECT with reserved flags 0x1f', Buffer.from([0x1f, 0x00]), 'mqtt_refused_protocol'),
  firstPacket('malformed remaining length (5 length bytes) on the first packet', Buffer.from([0x10, 0xff, 0xff, 0xff, 0xff, 0x7f]), 'mqtt_refused_protocol'),
  afterConnect('malformed remaining length after CONNECT', Buffer.from([0x30, 0xff, 0xff, 0xff, 0xff, 0x01]), ['mqtt_refused_protocol']),
  afterConnect('reserved type 0 after CONNECT', Buffer.from([0x00, 0x00]), ['mqtt_refused_protocol']),
  afterConnect('reserved type 15 after CONNECT', Buffer.from([0xf0, 0x00]), ['mqtt_refused_protocol']),
  afterConnect('second CONNECT on the same connection', (d) => goodConnect(d), []),
  {
    name: 'DISCONNECT then a PUBLISH on the same bytes',
    expect: ['sessions_closed'],
    async run(ctx) {
      const d = await ctx.device({ hello: true });
      await d.sendMqtt(Buffer.concat([DISCONNECT, publishPacket(d.creds.publish_topic, JSON.stringify({ type: 'hello' }))]));
      await closes(d.mqtt, 'after DISCONNECT');
    },
  },
  {
    name: 'CONNECT, hello and a listen in one TCP segment, then a hang-up mid-PUBLISH',
    expect: ['hello_accepted', 'sessions_closed'],
    async run(ctx) {
      const d = await ctx.device();
      const hello = publishPacket(d.creds.publish_topic, JSON.stringify(d.helloMessage()));
      const half = publishPacket(d.creds.publish_topic, JSON.stringify({ type: 'listen', state: 'start' }));
      await d.sendMqtt(Buffer.concat([hello, half.subarray(0, 9)]));
      await d.waitFor((m) => m.type === 'hello', 3000, 'hello reply');
      d.mqtt.destroy();
    },
  },
];

const truncated: HostileCase[] = [1, 2, 3, 10, 20, -1].map((cut) => ({
  name: `CONNECT truncated to ${cut < 0 ? 'all but its last byte' : `${cut} bytes`}, then a hang-up`,
  expect: [],
  async run(ctx) {
    const d = await ctx.device();
    const m = await ctx.mqtt(d.ip);
    const c = goodConnect(d);
    await m.write(c.subarray(0, cut < 0 ? c.length - 1 : cut));
    await sleep(50);
    m.destroy();
  },
}));
truncated.push({
  name: 'PUBLISH truncated mid-payload, then a hang-up (session released)',
  expect: ['sessions_closed'],
  async run(ctx) {
    const d = await ctx.device({ hello: true });
    const p = publishPacket(d.creds.publish_topic, JSON.stringify({ type: 'listen', state: 'start', session_id: d.session() }));
    await d.sendMqtt(p.subarray(0, p.length - 5));
    await sleep(50);
    d.mqtt.destroy();
  },
}, {
  name: 'PUBLISH header declaring 60 000 bytes, 10 sent, then a hang-up',
  expect: ['sessions_closed'],
  async run(ctx) {
    const d = await ctx.device({ hello: true });
    await d.sendMqtt(Buffer.concat([Buffer.from([0x30, 0xe0, 0xd4, 0x03]), Buffer.alloc(10, 0x41)]));
    await sleep(50);
    d.mqtt.destroy();
  },
});

const big = (n: number): string => JSON.stringify({ type: 'iot', pad: 'x'.repeat(Math.max(0, n - 25)) });
const oversized: HostileCase[] = [
  firstPacket('CONNECT declaring 8 193 bytes (over the pre-auth CONNECT cap)', Buffer.from([0x10, 0x81, 0x40]), 'mqtt_refused_oversized'),
  firstPacket('CONNECT with a 9 000-byte client id (sent whole)', connectPacket({ clientId: 'A'.repeat(9000), keepalive: 60 }), 'mqtt_refused_oversized'),
  firstPacket('CONNECT declaring 268 435 455 bytes', Buffer.from([0x10, 0xff, 0xff, 0xff, 0x7f]), 'mqtt_refused_oversized'),
  afterConnect('PUBLISH declaring 65 537 bytes (header only)', Buffer.from([0x30, 0x81, 0x80, 0x04]), ['mqtt_refused_oversized']),
  afterConnect('PUBLISH declaring 268 435 455 bytes', Buffer.from([0x30, 0xff, 0xff, 0xff, 0x7f]), ['mqtt_refused_oversized']),
  afterConnect('PUBLISH of 70 000 bytes sent whole', (d) => publishPacket(d.creds.publish_topic, big(70_000)), ['mqtt_refused_oversized']),
  afterConnect('SUBSCRIBE of 100 000 bytes', subscribePacket(1, Array.from({ length: 1000 }, (_, i) => `t/${i}/${'x'.repeat(90)}`)), ['mqtt_refused_oversized']),
  afterConnect('PUBLISH of 16 KB (an MCP tools/list reply size) is accepted', (d) => publishPacket(d.creds.publish_topic, JSON.stringify({ type: 'mcp', session_id: d.session(), payload: { jsonrpc: '2.0', id: 1, result: { tools: 'x'.repeat(16_000) } } })), [], 'open'),
];

const deviceMustNotSend: HostileCase[] = [
  afterConnect('unsolicited PUBACK', Buffer.from([0x40, 0x02, 0x00, 0x07]), [], 'either'),
  afterConnect('PUBREC', Buffer.from([0x50, 0x02, 0x00, 0x07]), [], 'either'),
  afterConnect('PUBREL', Buffer.from([0x62, 0x02, 0x00, 0x07]), [], 'either'),
  afterConnect('PUBCOMP', Buffer.from([0x70, 0x02, 0x00, 0x07]), [], 'either'),
  afterConnect('SUBSCRIBE to #', subscribePacket(1, ['#']), ['mqtt_acl_denials'], 'open'),
  afterConnect('SUBSCRIBE to another device\'s topic', subscribePacket(2, ['devices/p2p/02_ca_4a_00_00_01']), ['mqtt_acl_denials'], 'open'),
  afterConnect('SUBSCRIBE with 200 filters', subscribePacket(3, Array.from({ length: 200 }, (_, i) => `devices/p2p/${i}`)), [{ counter: 'mqtt_acl_denials', min: 200 }], 'open'),
  afterConnect('SUBSCRIBE with reserved flags 0x80', subscribePacket(4, ['#'], 0x80), [], 'either'),
  afterConnect('UNSUBSCRIBE', mqttPacket(0xa2, Buffer.concat([Buffer.from([0, 5]), utf8Field('#')])), [], 'either'),
  afterConnect('CONNACK from the client', Buffer.from([0x20, 0x02, 0x00, 0x00]), [], 'either'),
  afterConnect('SUBACK from the client', Buffer.from([0x90, 0x03, 0x00, 0x01, 0x00]), [], 'either'),
  afterConnect('UNSUBACK from the client', Buffer.from([0xb0, 0x02, 0x00, 0x01]), [], 'either'),
  afterConnect('PINGRESP from the client', Buffer.from([0xd0, 0x00]), [], 'either'),
  afterConnect('PUBLISH QoS 2 to the publish topic', (d) => publishPacket(d.creds.publish_topic, '{"type":"iot"}', { qos: 2, messageId: 9 }), ['mqtt_acl_denials']),
  afterConnect('PUBLISH with QoS 3 (both QoS bits)', (d) => { const p = publishPacket(d.creds.publish_topic, '{"type":"iot"}', { qos: 1 }); p[0] = 0x36; return p; }, [], 'either'),
  afterConnect('PUBLISH QoS 1 to the publish topic (accepted, acknowledged)', (d) => publishPacket(d.creds.publish_topic, '{"type":"iot"}', { qos: 1, messageId: 3 }), ['message_ignored'], 'open'),
  afterConnect('PUBLISH with retain set (accepted, never stored)', (d) => publishPacket(d.creds.publish_topic, '{"type":"iot"}', { retain: true }), ['message_ignored'], 'open'),
  afterConnect('PUBLISH to another device\'s topic', publishPacket('devices/p2p/02_ca_4a_00_00_01', '{"type":"tts","state":"start"}'), ['mqtt_acl_denials']),
  afterConnect('PUBLISH to #', publishPacket('#', '{}'), [], 'closes'),
  afterConnect('PUBLISH to device-server/extra', publishPacket('device-server/extra', '{}'), ['mqtt_acl_denials']),
  afterConnect('PUBLISH to $SYS/broker', publishPacket('$SYS/broker', '{}'), ['mqtt_acl_denials']),
  afterConnect('PUBLISH with an empty topic', publishPacket('', '{}'), [], 'closes'),
  afterConnect('PUBLISH with an invalid UTF-8 topic', publishPacket(Buffer.from([0x64, 0xff, 0xfe, 0xc0, 0x80]), '{}'), [], 'closes'),
  afterConnect('PUBLISH with a NUL in the topic', publishPacket('device-server\u0000x', '{}'), [], 'closes'),
];

const credentials: HostileCase[] = [
  badConnect('wrong password', (c) => ({ clientId: c.client_id, username: c.username, password: 'AAAA' + c.password.slice(4) }), 'mqtt_auth_failures', 4),
  badConnect('password with one bit flipped', (c) => ({ clientId: c.client_id, username: c.username, password: String.fromCharCode(c.password.charCodeAt(0) ^ 1) + c.password.slice(1) }), 'mqtt_auth_failures', 4),
  badConnect('empty password', (c) => ({ clientId: c.client_id, username: c.username, password: '' }), 'mqtt_auth_failures', 4),
  badConnect('no password', (c) => ({ clientId: c.client_id, username: c.username }), 'mqtt_auth_failures'),
  badConnect('no username and no password', (c) => ({ clientId: c.client_id }), 'mqtt_auth_failures'),
  badConnect('another username with this password', (c) => ({ clientId: c.client_id, username: Buffer.from('{"ip":"6.6.6.6"}').toString('base64'), password: c.password }), 'mqtt_auth_failures', 4),
  badConnect('valid credentials with another device\'s client id', (c) => ({ clientId: c.client_id.replace(/@@@([0-9a-f_]+)@@@/, '@@@02_00_00_00_00_99@@@'), username: c.username, password: c.password }), 'mqtt_auth_failures'),
  badConnect('client id not in the conventional form', (c) => ({ clientId: 'abc', username: c.username, password: c.password }), 'mqtt_auth_failures', 2),
  badConnect('empty client id', (c) => ({ clientId: '', username: c.username, password: c.password }), 'mqtt_auth_failures'),
  badConnect('client id with invalid UTF-8', (c) => ({ clientId: Buffer.concat([Buffer.from(c.client_id), Buffer.from([0xff, 0xfe])]), username: c.username, password: c.password }), 'mqtt_auth_failures'),
  badConnect('username with invalid UTF-8', (c) => ({ clientId: c.client_id, username: Buffer.from([0xc3, 0x28, 0xff]), password: c.password }), 'mqtt_auth_failures'),
  badConnect('keepalive 0', (c) => ({ clientId: c.client_id, username: c.username, password: c.password, keepalive: 0 }), 'mqtt_auth_failures', 2),
  badConnect('keepalive 29 (below the minimum)', (c) => ({ clientId: c.client_id, username: c.username, password: c.password, keepalive: 29 }), 'mqtt_auth_failures', 2),
  badConnect('keepalive 1201 (above the maximum)', (c) => ({ clientId: c.client_id, username: c.username, password: c.password, keepalive: 1201 }), 'mqtt_auth_failures', 2),
  badConnect('keepalive 65535', (c) => ({ clientId: c.client_id, username: c.username, password: c.password, keepalive: 65535 }), 'mqtt_auth_failures', 2),
  badConnect('clean session 0', (c) => ({ clientId: c.client_id, username: c.username, password: c.password, clean: false }), 'mqtt_auth_failures', 2),
  badConnect('MQTT 3.1 (protocol level 3)', (c) => ({ clientId: c.client_id, username: c.username, password: c.password, level: 3 }), 'mqtt_auth_failures', 1),
  badConnect('MQTT 5 (protocol level 5)', (c) => ({ clientId: c.client_id, username: c.username, password: c.password, level: 5 }), '', undefined),
  badConnect('protocol name "MQTX"', (c) => ({ clientId: c.client_id, username: c.username, password: c.password, protocolName: 'MQTX' }), '', undefined),
  badConnect('protocol level 255', (c) => ({ clientId: c.client_id, username: c.username, password: c.password, level: 255 }), '', undefined),
];

const keepalive: HostileCase[] = [30, 1200].map((k) => ({
  name: `keepalive ${k} s (the accepted extreme) connects`,
  expect: [],
  async run(ctx) {
    const d = await ctx.device();
    const m = await ctx.mqtt(d.ip);
    await m.write(goodConnect(d, { keepalive: k }));
    expect(await m.connack(), 'CONNACK').toBe(0);
  },
}));
keepalive.push({
  name: 'CONNECT trickled one byte every 3 ms connects',
  expect: [],
  async run(ctx) {
    const d = await ctx.device();
    const m = await ctx.mqtt(d.ip);
    await m.trickle(goodConnect(d), 3);
    expect(await m.connack(), 'CONNACK').toBe(0);
  },
}, {
  name: 'CONNECT trickled and never finished is cut at the 10 s deadline',
  expect: [{ counter: 'mqtt_refused_connect_timeout', exact: 1 }],
  timeoutMs: 15_000,
  async run(ctx) {
    const d = await ctx.device();
    const m = await ctx.mqtt(d.ip);
    const c = goodConnect(d);
    const t0 = performance.now();
    void m.trickle(c.subarray(0, c.length - 3), 100);
    await closes(m, 'connect deadline', 13_000);
    expect(performance.now() - t0, 'closed by the deadline, not earlier').toBeGreaterThan(9_000);
  },
});

const floods: HostileCase[] = [
  {
    name: 'publish flood: 300 messages in one burst (beyond publishesPerSecond)',
    expect: [{ counter: 'mqtt_publish_rate_limited', min: 200 }],
    async run(ctx) {
      const d = await ctx.device({ hello: true });
      const p = publishPacket(d.creds.publish_topic, JSON.stringify({ type: 'abort', session_id: d.session() }));
      await d.sendMqtt(Buffer.concat(Array.from({ length: 300 }, () => p)));
      await sleep(200);
      expect(d.mqtt.closed, 'a rate-limited device stays connected').toBe(false);
    },
  },
  {
    name: 'PINGREQ flood: 2 000 in one burst',
    expect: [],
    async run(ctx) {
      const d = await ctx.device();
      await d.sendMqtt(Buffer.concat(Array.from({ length: 2000 }, () => PINGREQ)));
      await sleep(300);
    },
  },
  {
    name: `per-IP connection cap: the 9th open connection from one address is refused`,
    expect: [{ counter: 'mqtt_refused_per_ip_connections', min: 1 }],
    async run(ctx) {
      const ip = ctx.ip();
      const open: RawMqtt[] = [];
      for (let i = 0; i < 8; i++) open.push(await ctx.mqtt(ip));
      const ninth = await ctx.mqtt(ip);
      await closes(ninth, '9th connection');
      for (const m of open) expect(m.closed, 'the first 8 stay open').toBe(false);
    },
  },
  {
    name: 'per-IP connect rate: the 31st connect in a minute from one address is refused',
    expect: [{ counter: 'mqtt_refused_connect_rate', min: 1 }],
    async run(ctx) {
      const ip = ctx.ip();
      for (let i = 0; i < 30; i++) (await ctx.mqtt(ip)).destroy();
      const over = await ctx.mqtt(ip);
      await closes(over, '31st connect');
    },
  },
  {
    name: 'takeover: the same client id connects from another address',
    expect: ['sessions_closed', 'connection_takeover'],
    async run(ctx) {
      const d = await ctx.device({ hello: true });
      const twin = await ctx.mqtt();
      await twin.write(goodConnect(d));
      expect(await twin.connack(), 'CONNACK').toBe(0);
      await closes(d.mqtt, 'the old connection');
    },
  },
  {
    name: 'CONNECT with a will (valid credentials): accepted, the will dropped',
    expect: [],
    async run(ctx: Ctx) {
      const d = await ctx.device();
      const m = await ctx.mqtt(d.ip);
      await m.write(goodConnect(d, { will: { topic: 'device-server', payload: '{"type":"goodbye"}' } }));
      expect(await m.connack(), 'CONNACK').toBe(0);
      m.destroy();
    },
  },
];

hostileCatalogue({
  file: 'mqtt',
  secondOctet: 11,
  seed: 0x4d515454,
  // Per-IP limits low enough to test quickly; every case speaks from its own address.
  gateway: { maxConnectionsPerIp: 8, connectsPerIpPerMinute: 30 },
  categories: { order, truncated, oversized, 'device must not send': deviceMustNotSend, credentials, keepalive, floods },
});
