// Hostile tier, OTA/HTTP: methods, sizes, content types, bad JSON, slow bodies, path tricks, bad
// headers and the per-IP OTA rate, against a gateway in its own process while the canary keeps
// talking (see runner.ts for what every case asserts). Every request comes from its own address.
import { expect } from 'vitest';
import { nextMac, otaBody, otaHeaders, rawHttp, sleep, uuidFor, type HttpResult } from './harness.mjs';
import { hostileCatalogue, type Ctx, type Expectation, type HostileCase } from './runner.js';

const OTA = '/xiaozhi/ota/';
type Req = Parameters<Ctx['http']>[0];

/** One request; the status must be one of `status`. */
function request(name: string, make: () => Req, status: number | number[], expectation: Expectation[]): HostileCase {
  return {
    name,
    expect: expectation,
    async run(ctx) {
      const r = await ctx.http(make());
      const want = Array.isArray(status) ? status : [status];
      expect(want, `HTTP status (${r.status ?? r.error}: ${(r.body ?? '').slice(0, 200)})`).toContain(r.status);
    },
  };
}

const device = (): { mac: string; uuid: string; headers: Record<string, string>; body: string } => {
  const mac = nextMac(0x06);
  const uuid = uuidFor(mac);
  return { mac, uuid, headers: otaHeaders(mac, uuid), body: otaBody(mac, uuid) };
};
const post = (extra: Partial<Req> = {}, headers: Record<string, string | string[] | number> = {}): Req => {
  const d = device();
  return { method: 'POST', path: OTA, headers: { ...d.headers, ...headers }, body: d.body, ...extra };
};
const rejected: Expectation[] = [{ counter: 'ota_rejected', exact: 1 }];

const methods: HostileCase[] = [
  ...['PUT', 'DELETE', 'PATCH', 'OPTIONS', 'TRACE', 'PROPFIND'].map((m) => request(`${m} on the OTA path`, () => post({ method: m, ...(m === 'TRACE' ? { body: undefined } : {}) }), 405, rejected)),
  request('HEAD on the OTA path', () => post({ method: 'HEAD', body: undefined }), 405, rejected),
  request('GET with the device headers and no body (older firmware)', () => post({ method: 'GET', body: undefined }), 200, []),
  request('POST to /metrics', () => ({ method: 'POST', path: '/metrics', body: '{}' }), 405, []),
  request('DELETE /healthz', () => ({ method: 'DELETE', path: '/healthz' }), 405, []),
];

const big = (n: number): string => JSON.stringify({ pad: 'x'.repeat(n) });
const sizes: HostileCase[] = [
  request('body of 70 KB with content-length', () => post({ body: big(70_000) }), 413, rejected),
  request('body of 70 KB chunked, no content-length', () => post({ body: undefined, bodyChunks: Array.from({ length: 7 }, () => 'x'.repeat(10_000)) }, { 'transfer-encoding': 'chunked' }), 413, rejected),
  request('content-length 999 999 999 with a small body', () => post({}, { 'content-length': 999_999_999 }), [413], rejected),
  request('body of 65 000 bytes (under the 64 KB limit) is accepted', () => {
    const d = device();
    return { method: 'POST', path: OTA, headers: d.headers, body: JSON.stringify({ ...JSON.parse(d.body), pad: 'p'.repeat(64_500) }) };
  }, 200, []),
  request('1 MB body chunked', () => post({ body: undefined, bodyChunks: Array.from({ length: 16 }, () => 'y'.repeat(65_536)) }, { 'transfer-encoding': 'chunked' }), [413], rejected),
  {
    name: 'content-length 5 000, 100 bytes sent, then a hang-up',
    expect: [],
    async run(ctx) {
      const d = device();
      const head = `POST ${OTA} HTTP/1.1\r\nHost: x\r\nDevice-Id: ${d.mac}\r\nClient-Id: ${d.uuid}\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n`;
      await rawHttp({ port: ctx.gw.ports.http, localAddress: ctx.ip(), chunks: [head, '{"a":"' + 'z'.repeat(94)], timeoutMs: 300 });
      await sleep(200);
    },
  },
  {
    name: 'chunked body cut mid-chunk, then a hang-up',
    expect: [],
    async run(ctx) {
      const d = device();
      const head = `POST ${OTA} HTTP/1.1\r\nHost: x\r\nDevice-Id: ${d.mac}\r\nClient-Id: ${d.uuid}\r\nTransfer-Encoding: chunked\r\n\r\n`;
      await rawHttp({ port: ctx.gw.ports.http, localAddress: ctx.ip(), chunks: [head, '400\r\n{"a":"zzzz'], timeoutMs: 300 });
      await sleep(200);
    },
  },
];

const contentTypes: HostileCase[] = [
  request('text/plain with a valid JSON body', () => post({}, { 'content-type': 'text/plain' }), 200, []),
  request('no content-type with a valid JSON body', () => { const r = post(); delete (r.headers as Record<string, unknown>)['content-type']; return r; }, 200, []),
  request('form-urlencoded body', () => post({ body: 'mac_address=aa&uuid=bb' }, { 'content-type': 'application/x-www-form-urlencoded' }), 400, rejected),
  request('multipart body', () => post({ body: '--b\r\nContent-Disposition: form-data; name="a"\r\n\r\n1\r\n--b--' }, { 'content-type': 'multipart/form-data; boundary=b' }), 400, rejected),
  request('UTF-16 body', () => { const r = post(); return { ...r, body: Buffer.from('\ufeff' + (r.body as string), 'utf16le') }; }, 400, rejected),
  request('gzip content-encoding (not decoded)', () => post({ body: Buffer.from([0x1f, 0x8b, 0x08, 0, 0, 0, 0, 0, 0, 3]) }, { 'content-encoding': 'gzip' }), 400, rejected),
];

const badJson: HostileCase[] = [
  ...([['an opening brace', '{'], ['an array', '[]'], ['null', 'null'], ['a string', '"x"'], ['a number', '1'], ['NaN', '{"a":NaN}'],
    ['a BOM before the object', '\ufeff{}'], ['binary', '\u0000\u0001\u0002'], ['trailing garbage', '{"a":1} x']] as const)
    .map(([n, body]) => request(`body: ${n}`, () => post({ body }), 400, rejected)),
  request('body: nested 20 000 levels of arrays', () => post({ body: `{"a":${'['.repeat(20_000)}${']'.repeat(20_000)}}` }), [200, 400], []),
  request('body: __proto__ keys', () => { const d = device(); return { method: 'POST', path: OTA, headers: d.headers, body: `{"__proto__":{"polluted":1},"constructor":{"prototype":{"x":1}},"mac_address":"${d.mac}"}` }; }, 200, []),
  request('body: application.version is an object', () => post({ body: '{"application":{"version":{"a":1}}}' }), 200, []),
  request('body: 5 000 keys', () => post({ body: JSON.stringify(Object.fromEntries(Array.from({ length: 5000 }, (_, i) => [`k${i}`, i]))) }), 200, []),
  request('body: mac_address differs from Device-Id', () => post({ body: '{"mac_address":"ff:ff:ff:ff:ff:ff"}' }), 200, []),
];

const slow: HostileCase[] = [
  request('body in 10 chunks 80 ms apart', () => {
    const r = post();
    const b = r.body as string;
    const n = Math.ceil(b.length / 10);
    return { ...r, body: undefined, bodyChunks: Array.from({ length: 10 }, (_, i) => b.slice(i * n, (i + 1) * n)), chunkGapMs: 80, headers: { ...r.headers, 'content-length': String(Buffer.byteLength(b)) } };
  }, 200, []),
  {
    name: 'headers trickled 5 bytes every 20 ms, then a hang-up before the blank line',
    expect: [],
    async run(ctx) {
      const head = `POST ${OTA} HTTP/1.1\r\nHost: x\r\nDevice-Id: aa:bb:cc:dd:ee:01\r\nX-Slow: ${'s'.repeat(60)}`;
      const chunks = head.match(/[\s\S]{1,5}/g)!;
      await rawHttp({ port: ctx.gw.ports.http, localAddress: ctx.ip(), chunks, gapMs: 20, timeoutMs: chunks.length * 20 + 100 });
    },
  },
  {
    name: 'complete request trickled byte by byte (3 ms apart) is answered',
    expect: [],
    async run(ctx) {
      const d = device();
      const req = `POST ${OTA} HTTP/1.1\r\nHost: x\r\nDevice-Id: ${d.mac}\r\nClient-Id: ${d.uuid}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(d.body)}\r\nConnection: close\r\n\r\n${d.body}`;
      const reply = await rawHttp({ port: ctx.gw.ports.http, localAddress: ctx.ip(), chunks: req.match(/[\s\S]{1,4}/g)!, gapMs: 3, timeoutMs: 5000 });
      expect(reply.slice(0, 12)).toBe('HTTP/1.1 200');
    },
  },
];

const paths: HostileCase[] = [
  request('/xiaozhi/ota/../metrics', () => post({ method: 'GET', body: undefined, path: '/xiaozhi/ota/../metrics' }), 404, []),
  request('//xiaozhi/ota/', () => post({ path: '//xiaozhi/ota/' }), [404, 405], []),
  request('/xiaozhi/ota (no trailing slash) is the OTA path too', () => post({ path: '/xiaozhi/ota' }), 200, []),
  request('/xiaozhi/ota/?query=1 is the OTA path', () => post({ path: '/xiaozhi/ota/?query=1&x=%00' }), 200, []),
  request('percent-encoded /xiaozhi/%6fta/', () => post({ path: '/xiaozhi/%6fta/' }), [404, 405], []),
  request('upper case /XIAOZHI/OTA/', () => post({ path: '/XIAOZHI/OTA/' }), [404, 405], []),
  request('/xiaozhi/ota//', () => post({ method: 'GET', body: undefined, path: '/xiaozhi/ota//' }), 404, []),
  request('/xiaozhi/ota/%2e%2e/metrics', () => post({ method: 'GET', body: undefined, path: '/xiaozhi/ota/%2e%2e/metrics' }), 404, []),
  request('a 8 KB URL', () => post({ method: 'GET', body: undefined, path: '/xiaozhi/ota/' + 'a'.repeat(8000) }), 404, []),
  request('a 20 KB URL (over the header limit)', () => post({ method: 'GET', body: undefined, path: '/' + 'a'.repeat(20_000) }), 431, []),
  {
    name: 'absolute-form request target http://evil/xiaozhi/ota/',
    expect: [],
    async run(ctx) {
      const reply = await rawHttp({ port: ctx.gw.ports.http, localAddress: ctx.ip(), chunks: ['GET http://evil.example/xiaozhi/ota/ HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n'] });
      expect(reply.slice(0, 12)).toMatch(/^HTTP\/1\.1 [0-9]{3}/);
    },
  },
  {
    name: 'OPTIONS * (asterisk-form)',
    expect: [],
    async run(ctx) {
      const reply = await rawHttp({ port: ctx.gw.ports.http, localAddress: ctx.ip(), chunks: ['OPTIONS * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'] });
      expect(reply.slice(0, 12)).toMatch(/^HTTP\/1\.1 4/);
    },
  },
];

const headers: HostileCase[] = [
  request('no Device-Id', () => { const r = post(); delete (r.headers as Record<string, unknown>)['device-id']; return r; }, 400, rejected),
  request('empty Device-Id', () => post({}, { 'device-id': '' }), 400, rejected),
  request('Device-Id not a MAC', () => post({}, { 'device-id': 'not-a-mac' }), 400, rejected),
  request('Device-Id with 5 octets', () => post({}, { 'device-id': 'aa:bb:cc:dd:ee' }), 400, rejected),
  request('Device-Id of 8 KB', () => post({}, { 'device-id': 'a'.repeat(8000) }), 400, rejected),
  request('two Device-Id headers', () => post({}, { 'device-id': ['aa:bb:cc:dd:ee:01', 'aa:bb:cc:dd:ee:02'] }), [200, 400], []),
  request('Device-Id in upper case is accepted', () => { const d = device(); return post({}, { 'device-id': d.mac.toUpperCase(), 'client-id': d.uuid }); }, 200, []),
  request('Client-Id not a UUID', () => post({}, { 'client-id': 'not-a-uuid' }), 400, rejected),
  request('no Client-Id and no uuid in the body', () => { const r = post({ body: '{}' }); delete (r.headers as Record<string, unknown>)['client-id']; return r; }, 400, rejected),
  request('no Client-Id, body uuid a number', () => { const r = post({ body: '{"uuid":5}' }); delete (r.headers as Record<string, unknown>)['client-id']; return r; }, 400, rejected),
  request('no Client-Id, body uuid valid (firmware < 1.5)', () => { const d = device(); const h = { ...d.headers }; delete (h as Record<string, unknown>)['client-id']; return { method: 'POST', path: OTA, headers: h, body: d.body }; }, 200, []),
  request('User-Agent of 8 KB', () => post({}, { 'user-agent': 'b/'.padEnd(8000, '9') }), 200, []),
  request('Activation-Version of 8 KB', () => post({}, { 'activation-version': 'v'.repeat(8000) }), 200, []),
  request('X-Forwarded-For spoofing (not trusted)', () => post({}, { 'x-forwarded-for': '1.2.3.4, 5.6.7.8' }), 200, []),
  request('150 extra headers', () => post({}, Object.fromEntries(Array.from({ length: 150 }, (_, i) => [`x-h${i}`, 'v']))), 200, []),
  {
    name: 'Device-Id with raw non-ASCII bytes',
    expect: rejected,
    async run(ctx) {
      const reply = await rawHttp({ port: ctx.gw.ports.http, localAddress: ctx.ip(), chunks: [Buffer.concat([Buffer.from(`GET ${OTA} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nDevice-Id: `), Buffer.from([0xc3, 0xa4, 0xff, 0xfe]), Buffer.from('\r\n\r\n')])] });
      expect(reply.slice(0, 12)).toBe('HTTP/1.1 400');
    },
  },
];

const raw = (name: string, bytes: string | Buffer, statusPrefix: RegExp, expectation: Expectation[] = []): HostileCase => ({
  name,
  expect: expectation,
  async run(ctx) {
    const reply = await rawHttp({ port: ctx.gw.ports.http, localAddress: ctx.ip(), chunks: [bytes] });
    expect(reply, 'reply status line').toMatch(statusPrefix);
  },
});
const protocol: HostileCase[] = [
  raw('garbage request line', 'GARBAGE\r\n\r\n', /^HTTP\/1\.1 400/),
  raw('binary garbage', Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03]), /^(HTTP\/1\.1 400|$)/),
  raw('Content-Length and Transfer-Encoding together (smuggling)', `POST ${OTA} HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`, /^HTTP\/1\.1 400/),
  raw('two Content-Length headers that differ', `POST ${OTA} HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\n{}{}`, /^HTTP\/1\.1 400/),
  raw('HTTP/1.0 request', (() => { const d = device(); return `POST ${OTA} HTTP/1.0\r\nDevice-Id: ${d.mac}\r\nClient-Id: ${d.uuid}\r\nContent-Length: ${d.body.length}\r\n\r\n${d.body}`; })(), /^HTTP\/1\.1 200/),
  raw('HTTP/2 preface on the HTTP/1 port', 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', /^(HTTP\/1\.1 [45]\d\d|)/),
  raw('header without a colon', `GET ${OTA} HTTP/1.1\r\nHost: x\r\nDevice-Id aa\r\n\r\n`, /^HTTP\/1\.1 400/),
  raw('NUL in a header value', `GET ${OTA} HTTP/1.1\r\nHost: x\r\nDevice-Id: aa\u0000bb\r\n\r\n`, /^HTTP\/1\.1 400/),
  raw('a 20 KB header value', `GET ${OTA} HTTP/1.1\r\nHost: x\r\nX-Big: ${'b'.repeat(20_000)}\r\n\r\n`, /^HTTP\/1\.1 431/),
  {
    name: 'two requests pipelined in one write are both answered',
    expect: [],
    async run(ctx) {
      const a = device();
      const b = device();
      const one = (d: typeof a, close: boolean) => `POST ${OTA} HTTP/1.1\r\nHost: x\r\nDevice-Id: ${d.mac}\r\nClient-Id: ${d.uuid}\r\nContent-Length: ${d.body.length}\r\n${close ? 'Connection: close\r\n' : ''}\r\n${d.body}`;
      const reply = await rawHttp({ port: ctx.gw.ports.http, localAddress: ctx.ip(), chunks: [one(a, false) + one(b, true)] });
      expect(reply.match(/HTTP\/1\.1 200/g)?.length ?? 0, 'two 200 replies').toBe(2);
    },
  },
  {
    name: 'Expect: 100-continue',
    expect: [],
    async run(ctx) {
      const d = device();
      const reply = await rawHttp({ port: ctx.gw.ports.http, localAddress: ctx.ip(), chunks: [`POST ${OTA} HTTP/1.1\r\nHost: x\r\nDevice-Id: ${d.mac}\r\nClient-Id: ${d.uuid}\r\nExpect: 100-continue\r\nContent-Length: ${d.body.length}\r\nConnection: close\r\n\r\n`, d.body], gapMs: 50 });
      expect(reply).toMatch(/HTTP\/1\.1 200/);
    },
  },
  {
    name: 'keep-alive connection left idle is closed by the server',
    expect: [],
    timeoutMs: 10_000,
    async run(ctx) {
      const d = device();
      const reply = await rawHttp({ port: ctx.gw.ports.http, localAddress: ctx.ip(), chunks: [`POST ${OTA} HTTP/1.1\r\nHost: x\r\nDevice-Id: ${d.mac}\r\nClient-Id: ${d.uuid}\r\nContent-Length: ${d.body.length}\r\n\r\n${d.body}`], timeoutMs: 7000 });
      expect(reply.slice(0, 12)).toBe('HTTP/1.1 200');
    },
  },
];

const rate: HostileCase[] = [
  {
    name: 'per-IP OTA rate: the 31st request in a minute from one address gets 429',
    expect: [{ counter: 'ota_rate_limited', min: 1 }],
    async run(ctx) {
      const ip = ctx.ip();
      const results: HttpResult[] = [];
      for (let i = 0; i < 31; i++) results.push(await ctx.http({ ...post(), localAddress: ip }));
      expect(results.slice(0, 30).every((r) => r.status === 200), 'the first 30 are answered').toBe(true);
      expect(results[30]!.status).toBe(429);
      expect(results[30]!.headers?.['retry-after']).toBe('60');
    },
  },
  {
    name: 'per-IP OTA rate: another address is not affected',
    expect: [],
    async run(ctx) {
      const ip = ctx.ip();
      for (let i = 0; i < 32; i++) await ctx.http({ ...post(), localAddress: ip });
      const other = await ctx.http(post());
      expect(other.status).toBe(200);
    },
  },
  {
    name: 'OTA burst: 40 requests at once from one address',
    expect: [{ counter: 'ota_rate_limited', min: 10 }],
    async run(ctx) {
      const ip = ctx.ip();
      const results = await Promise.all(Array.from({ length: 40 }, () => ctx.http({ ...post(), localAddress: ip })));
      expect(results.filter((r) => r.status === 429).length, '429s').toBe(10);
    },
  },
];

hostileCatalogue({
  file: 'http',
  secondOctet: 14,
  seed: 0x48545450,
  gateway: { otaRequestsPerIpPerMinute: 30 },
  categories: { methods, sizes, 'content types': contentTypes, 'bad JSON': badJson, slow, paths, headers, protocol, 'OTA rate': rate },
});
