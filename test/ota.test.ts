// The OTA endpoint over real HTTP, as the firmware calls it, and the "real device pointed at it"
// path: the credentials it hands out CONNECT to the embedded broker with mqtt.js.
import { createHmac } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { createOtaHandler, type OtaDeviceInfo, type OtaHandlerOptions, type OtaReply } from '../src/device/ota.js';
import type { DeviceIdentity } from '../src/broker/mqtt-broker.js';
import { capturingLogger, connectDevice, nextEvent, SIGNATURE_KEY, startBroker, type RunningBroker } from './helpers/broker-fixture.js';

const MAC = '1c:db:d4:75:88:cc';
const UUID = '792bf676-bed1-4fae-8a7d-3bbc4f5d3e92';
const NOW = 1_760_000_000_123;

/** Headers exactly as firmware v2.x sends them (main/ota.cc SetupHttp). */
function firmwareHeaders(extra: Record<string, string> = {}): Record<string, string> {
  return {
    'Activation-Version': '1',
    'Device-Id': MAC,
    'Client-Id': UUID,
    'User-Agent': 'bread-compact-wifi/2.4.2',
    'Accept-Language': 'en-US',
    'Content-Type': 'application/json',
    ...extra,
  };
}

/** System info shaped like Board::GetSystemInfoJson. */
const SYSTEM_INFO = JSON.stringify({
  version: 2, language: 'en-US', flash_size: 16777216, minimum_free_heap_size: '7265', mac_address: MAC, uuid: UUID,
  chip_model_name: 'esp32s3', chip_info: { model: 9, cores: 2, revision: 2, features: 18 },
  application: { name: 'xiaozhi', version: '2.4.2', compile_time: 'Jan  1 2026T00:00:00Z', idf_version: 'v5.5', elf_sha256: 'ab'.repeat(32) },
  partition_table: [{ label: 'nvs', type: 1, subtype: 2, address: 36864, size: 16384 }], ota: { label: 'ota_0' }, board: { type: 'bread-compact-wifi', name: 'bread-compact-wifi' },
});

interface Served {
  url: string;
  logs: string[];
  server: http.Server;
}

const servers: http.Server[] = [];
const brokers: RunningBroker[] = [];

afterEach(async () => {
  for (const s of servers.splice(0)) await new Promise<void>((r) => s.close(() => r()));
  for (const b of brokers.splice(0)) await b.broker.stop();
});

async function serve(options: Partial<OtaHandlerOptions> = {}): Promise<Served> {
  const { logger, lines } = capturingLogger();
  const handler = createOtaHandler({ publicHost: '127.0.0.1', mqttPort: 1883, signatureKey: SIGNATURE_KEY, logger, clock: () => NOW, ...options });
  const server = http.createServer(handler);
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, logs: lines, server };
}

async function call(url: string, init: { method?: string; headers?: Record<string, string>; body?: string | Buffer; path?: string } = {}): Promise<{ status: number; json: unknown; headers: Headers }> {
  const res = await fetch(url + (init.path ?? '/xiaozhi/ota/'), {
    method: init.method ?? 'POST',
    headers: init.headers ?? firmwareHeaders(),
    ...(init.body !== undefined ? { body: init.body } : {}),
  });
  const text = await res.text();
  return { status: res.status, json: text ? JSON.parse(text) : undefined, headers: res.headers };
}

function hmac(clientId: string, username: string, key: string): string {
  return createHmac('sha256', key).update(`${clientId}|${username}`).digest('base64');
}

describe('OTA reply', () => {
  it('answers the firmware POST with mqtt credentials and server time, and nothing else', async () => {
    const { url, logs } = await serve({ timezoneOffsetMinutes: 480 });
    const { status, json, headers } = await call(url, { body: SYSTEM_INFO });
    expect(status).toBe(200);
    expect(headers.get('content-type')).toContain('application/json');
    expect(headers.get('cache-control')).toBe('no-store');
    const reply = json as OtaReply;
    expect(Object.keys(reply).sort()).toEqual(['mqtt', 'server_time']);
    expect(Object.keys(reply.mqtt)).toEqual(['endpoint', 'client_id', 'username', 'password', 'publish_topic', 'keepalive']);
    for (const [name, value] of Object.entries(reply.mqtt)) {
      expect(name.length, name).toBeLessThanOrEqual(15);
      expect(['string', 'number'], name).toContain(typeof value);
    }
    const clientId = `GID_xiaozhi@@@1c_db_d4_75_88_cc@@@${UUID}`;
    const username = Buffer.from('{"ip":"127.0.0.1"}').toString('base64');
    expect(reply.mqtt).toEqual({
      endpoint: '127.0.0.1:1883',
      client_id: clientId,
      username,
      password: hmac(clientId, username, SIGNATURE_KEY),
      publish_topic: 'device-server',
      keepalive: 240,
    });
    expect(reply.server_time).toEqual({ timestamp: NOW, timezone_offset: 480 });
    const text = logs.join('');
    expect(text).not.toContain(reply.mqtt.password);
    expect(text).not.toContain(SIGNATURE_KEY);
    expect(text).toContain('bread-compact-wifi');
  });

  it('answers GET without a body, on both paths, and ignores a query string', async () => {
    const { url } = await serve();
    for (const path of ['/xiaozhi/ota/', '/xiaozhi/ota', '/xiaozhi/ota/?x=1']) {
      const { status, json } = await call(url, { method: 'GET', path });
      expect(status, path).toBe(200);
      expect((json as OtaReply).mqtt.client_id).toBe(`GID_xiaozhi@@@1c_db_d4_75_88_cc@@@${UUID}`);
    }
  });

  it('takes the uuid from the body when Client-Id is missing (firmware before v1.5), and lower-cases the MAC', async () => {
    const { url } = await serve({ group: 'fleet' });
    const headers = firmwareHeaders({ 'Device-Id': MAC.toUpperCase() });
    delete (headers as Record<string, string | undefined>)['Client-Id'];
    const { status, json } = await call(url, { headers, body: SYSTEM_INFO });
    expect(status).toBe(200);
    expect((json as OtaReply).mqtt.client_id).toBe(`GID_fleet@@@1c_db_d4_75_88_cc@@@${UUID}`);
  });

  it('uses the bare host for TLS on 8883 (understood by every firmware version) and host:port otherwise', async () => {
    const tlsOta = await serve({ publicHost: 'mqtt.example.com', useTls: true, mqttPort: 1883, mqttTlsPort: 8883 });
    expect(((await call(tlsOta.url, { body: SYSTEM_INFO })).json as OtaReply).mqtt.endpoint).toBe('mqtt.example.com');
    const plain = await serve({ publicHost: 'gw.local', mqttPort: 11883, publishTopic: 'up', keepalive: 90 });
    const reply = (await call(plain.url, { body: SYSTEM_INFO })).json as OtaReply;
    expect(reply.mqtt).toMatchObject({ endpoint: 'gw.local:11883', publish_topic: 'up', keepalive: 90 });
  });

  it('offers firmware only when configured, with force as the number the firmware checks', async () => {
    const fixed = await serve({ firmware: { version: '2.5.0', url: 'https://fw.example.com/xiaozhi.bin', force: true } });
    expect(((await call(fixed.url, { body: SYSTEM_INFO })).json as OtaReply).firmware).toEqual({ version: '2.5.0', url: 'https://fw.example.com/xiaozhi.bin', force: 1 });
    const seen: OtaDeviceInfo[] = [];
    const perBoard = await serve({
      firmware: (device) => {
        seen.push(device);
        return device.board === 'bread-compact-wifi' ? { version: '2.5.0', url: `https://fw.example.com/${device.board}.bin` } : undefined;
      },
    });
    expect(((await call(perBoard.url, { body: SYSTEM_INFO })).json as OtaReply).firmware).toEqual({ version: '2.5.0', url: 'https://fw.example.com/bread-compact-wifi.bin', force: 0 });
    const other = (await call(perBoard.url, { headers: firmwareHeaders({ 'User-Agent': 'other-board/2.4.2' }), body: SYSTEM_INFO })).json as OtaReply;
    expect(other.firmware).toBeUndefined();
    expect(seen[0]).toMatchObject({ mac: MAC, uuid: UUID, board: 'bread-compact-wifi', firmwareVersion: '2.4.2', activationVersion: '1', remoteIp: '127.0.0.1' });
  });

  it('open mode hands out a random, unsigned password', async () => {
    const { url, logs } = await serve({ signatureKey: undefined });
    const a = (await call(url, { body: SYSTEM_INFO })).json as OtaReply;
    const b = (await call(url, { body: SYSTEM_INFO })).json as OtaReply;
    expect(a.mqtt.username).toBe(Buffer.from('{"ip":"127.0.0.1"}').toString('base64'));
    expect(Buffer.from(a.mqtt.password, 'base64')).toHaveLength(32);
    expect(a.mqtt.password).not.toBe(b.mqtt.password);
    expect(logs.some((l) => l.includes('open auth mode'))).toBe(true);
  });
});

describe('OTA request validation', () => {
  it('names the bad or missing header', async () => {
    const { url } = await serve();
    const without = (name: string): Record<string, string> => {
      const h = firmwareHeaders();
      delete (h as Record<string, string | undefined>)[name];
      return h;
    };
    const cases: Array<[Record<string, string>, string | undefined, RegExp]> = [
      [without('Device-Id'), SYSTEM_INFO, /missing Device-Id header/],
      [firmwareHeaders({ 'Device-Id': 'aa:bb:cc:dd:ee' }), SYSTEM_INFO, /invalid Device-Id header.*"aa:bb:cc:dd:ee"/],
      [firmwareHeaders({ 'Device-Id': 'aa-bb-cc-dd-ee-ff' }), SYSTEM_INFO, /invalid Device-Id header/],
      [firmwareHeaders({ 'Client-Id': 'not-a-uuid' }), SYSTEM_INFO, /invalid Client-Id header.*"not-a-uuid"/],
      [without('Client-Id'), undefined, /missing Client-Id header/],
      [without('Client-Id'), JSON.stringify({ uuid: 'nope' }), /missing Client-Id header, and body "uuid" is not a UUID/],
    ];
    for (const [headers, body, message] of cases) {
      const { status, json } = await call(url, { headers, ...(body !== undefined ? { body } : { method: 'GET' }) });
      expect(status, String(message)).toBe(400);
      expect((json as { error: string }).error).toMatch(message);
    }
  });

  it('rejects malformed bodies with a JSON error naming the problem', async () => {
    const { url } = await serve();
    const broken = await call(url, { body: '{"version":2,' });
    expect(broken.status).toBe(400);
    expect((broken.json as { error: string }).error).toMatch(/^request body is not valid JSON: /);
    const array = await call(url, { body: '[1,2]' });
    expect(array.status).toBe(400);
    expect((array.json as { error: string }).error).toBe('request body must be a JSON object, got an array');
  });

  it('refuses bodies over the limit with 413', async () => {
    const { url } = await serve({ maxBodyBytes: 4096 });
    const big = JSON.stringify({ pad: 'x'.repeat(10_000) });
    const declared = await call(url, { body: big });
    expect(declared.status).toBe(413);
    expect((declared.json as { error: string }).error).toMatch(/exceeds the limit of 4096/);
    // Chunked (no Content-Length): detected while streaming.
    const { status, body } = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = http.request(url + '/xiaozhi/ota/', { method: 'POST', headers: { ...firmwareHeaders(), 'Transfer-Encoding': 'chunked' } }, (res) => {
        let text = '';
        res.on('data', (c) => { text += c; });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
      });
      req.on('error', reject);
      for (let i = 0; i < 10; i++) req.write('x'.repeat(1000));
      req.end();
    });
    expect(status).toBe(413);
    expect(JSON.parse(body).error).toMatch(/exceeds the limit of 4096 bytes/);
  });

  it('answers other methods with 405 and other paths with 404', async () => {
    const { url } = await serve();
    const put = await call(url, { method: 'PUT', body: '{}' });
    expect(put.status).toBe(405);
    expect(put.headers.get('allow')).toBe('GET, POST');
    const other = await call(url, { method: 'GET', path: '/other' });
    expect(other.status).toBe(404);
  });

  it('rejects impossible configurations at creation', () => {
    const { logger } = capturingLogger();
    const base = { publicHost: 'h', mqttPort: 1883, logger };
    expect(() => createOtaHandler({ ...base, publicHost: '::1' })).toThrow(/publicHost: must not contain ':'/);
    expect(() => createOtaHandler({ ...base, publicHost: 'h:1883' })).toThrow(/publicHost/);
    expect(() => createOtaHandler({ ...base, mqttPort: 8883 })).toThrow(/8883 without TLS/);
    expect(() => createOtaHandler({ ...base, mqttPort: 0 })).toThrow(/mqttPort/);
    expect(() => createOtaHandler({ ...base, group: 'a@@@b' })).toThrow(/group/);
    expect(() => createOtaHandler({ ...base, publishTopic: '#' })).toThrow(/publishTopic/);
    expect(() => createOtaHandler({ ...base, timezoneOffsetMinutes: 2000 })).toThrow(/timezoneOffsetMinutes/);
    expect(() => createOtaHandler({ ...base, firmware: { version: 'v2', url: 'https://x/y.bin' } })).toThrow(/firmware\.version/);
    expect(() => createOtaHandler({ ...base, firmware: { version: '2.0.0', url: 'ftp://x' } })).toThrow(/firmware\.url/);
  });
});

describe('a device configured by OTA connects to the broker', () => {
  it('signature mode: the handed-out credentials CONNECT and the device is identified', async () => {
    const b = await startBroker();
    brokers.push(b);
    const { url } = await serve({ mqttPort: b.port, group: 'test' });
    const reply = (await call(url, { body: SYSTEM_INFO })).json as OtaReply;
    // Split the endpoint the way the firmware does: at the first ':'.
    const colon = reply.mqtt.endpoint.indexOf(':');
    const host = reply.mqtt.endpoint.slice(0, colon);
    const port = Number(reply.mqtt.endpoint.slice(colon + 1));
    expect(host).toBe('127.0.0.1');
    const connected = nextEvent<[DeviceIdentity]>(b.broker, 'device-connected');
    const client = await connectDevice(port, { clientId: reply.mqtt.client_id, username: reply.mqtt.username, password: reply.mqtt.password }, { keepalive: reply.mqtt.keepalive });
    try {
      const [identity] = await connected;
      expect(identity).toMatchObject({ mac: MAC, uuid: UUID, group: 'test', keepalive: 240 });
      const msg = nextEvent<[DeviceIdentity, Buffer]>(b.broker, 'device-message');
      await client.publishAsync(reply.mqtt.publish_topic, '{"type":"hello","version":3,"transport":"udp"}');
      const [from, payload] = await msg;
      expect(from.clientId).toBe(reply.mqtt.client_id);
      expect(JSON.parse(payload.toString())).toMatchObject({ type: 'hello' });
    } finally {
      client.end(true);
    }
  });

  it('credentials from an OTA server with another key are refused', async () => {
    const b = await startBroker();
    brokers.push(b);
    const { url } = await serve({ mqttPort: b.port, signatureKey: 'some-other-key' });
    const reply = (await call(url, { body: SYSTEM_INFO })).json as OtaReply;
    await expect(connectDevice(b.port, { clientId: reply.mqtt.client_id, username: reply.mqtt.username, password: reply.mqtt.password }))
      .rejects.toMatchObject({ code: 4 });
  });

  it('open mode: the unsigned credentials CONNECT to an open broker', async () => {
    const b = await startBroker({ auth: { mode: 'open' } });
    brokers.push(b);
    const { url } = await serve({ mqttPort: b.port, signatureKey: undefined });
    const reply = (await call(url, { method: 'GET' })).json as OtaReply;
    const connected = nextEvent<[DeviceIdentity]>(b.broker, 'device-connected');
    const client = await connectDevice(b.port, { clientId: reply.mqtt.client_id, username: reply.mqtt.username, password: reply.mqtt.password });
    try {
      expect((await connected)[0].mac).toBe(MAC);
    } finally {
      client.end(true);
    }
  });
});
