// Hostile tier, JSON control messages on the publish topic: wrong types, sizes, nesting, prototype
// keys, invalid UTF-8, and storms/interleavings of hello/goodbye/listen/abort/mcp, against a gateway in
// its own process while the canary keeps talking (see runner.ts for what every case asserts).
import { expect } from 'vitest';
import { publishPacket, sleep, type Device } from './harness.mjs';
import { hostileCatalogue, type Ctx, type HostileCase } from './runner.js';

const HELLO = { type: 'hello', version: 3, transport: 'udp', features: { mcp: true }, audio_params: { format: 'opus', sample_rate: 16000, channels: 1, frame_duration: 60 } };

/** Publishes each payload (in one burst) from a device, with or without a session first. */
function publishes(name: string, payloads: Array<string | Buffer | ((d: Device) => string | Buffer)>, expectation: HostileCase['expect'], o: { session?: boolean; check?: (d: Device, ctx: Ctx) => Promise<void> } = {}): HostileCase {
  return {
    name,
    expect: expectation,
    async run(ctx) {
      const d = await ctx.device({ hello: o.session ?? false });
      const bytes = payloads.map((p) => publishPacket(d.creds.publish_topic, typeof p === 'function' ? p(d) : p));
      await d.sendMqtt(Buffer.concat(bytes));
      await sleep(100);
      if (o.check) await o.check(d, ctx);
      expect(d.mqtt.closed, 'bad JSON never costs the connection').toBe(false);
    },
  };
}

const stillServed = async (d: Device): Promise<void> => {
  await d.sayHello();
};

/** An object `depth` levels deep (the top level counts as 1) of unknown type "iot". */
const nested = (depth: number): string => '{"type":"iot","a":' + '{"a":'.repeat(depth - 2) + '{}' + '}'.repeat(depth - 2) + '}';

const notJson: HostileCase[] = [
  ['empty payload', ''], ['whitespace only', '   \n\t '], ['an opening brace', '{'], ['truncated hello', JSON.stringify(HELLO).slice(0, -3)],
  ['trailing comma', '{"type":"iot",}'], ['single quotes', "{'type':'hello'}"], ['NaN literal', '{"type":"iot","v":NaN}'],
  ['a NUL byte', '\u0000'], ['UTF-8 BOM before the object', '\ufeff{"type":"iot"}'], ['two objects back to back', '{"type":"iot"}{"type":"iot"}'],
  ['a comment', '/* x */{"type":"iot"}'], ['binary garbage', Buffer.from([0xde, 0xad, 0xbe, 0xef, 0x00, 0xff])],
].map(([n, p]) => publishes(`not JSON: ${n}`, [p as string | Buffer], [{ counter: 'message_invalid', exact: 1 }], { check: stillServed }));

const notObject: HostileCase[] = [
  ['number', '1'], ['string', '"hello"'], ['true', 'true'], ['null', 'null'], ['empty array', '[]'], ['array holding a hello', JSON.stringify([HELLO])],
  ['huge number', '1e999999'], ['negative zero', '-0'],
].map(([n, p]) => publishes(`non-object JSON: ${n}`, [p as string], [{ counter: 'message_invalid', exact: 1 }], { check: stillServed }));

const wrongTypes: HostileCase[] = [
  ['type is a number', { type: 5 }], ['type is null', { type: null }], ['type is an object', { type: { hello: 1 } }], ['type is an array', { type: ['hello'] }],
  ['no type', { session_id: 'x' }], ['empty object', {}],
].map(([n, m]) => publishes(`wrong type field: ${n}`, [JSON.stringify(m)], [{ counter: 'message_invalid', exact: 1 }]));

const helloVariants: HostileCase[] = [
  ['version "3" (a string)', { ...HELLO, version: '3' }], ['version 9', { ...HELLO, version: 9 }], ['transport websocket', { ...HELLO, transport: 'websocket' }],
  ['no transport', { ...HELLO, transport: undefined }], ['no audio_params', { ...HELLO, audio_params: undefined }],
  ['sample_rate 44100', { ...HELLO, audio_params: { ...HELLO.audio_params, sample_rate: 44100 } }],
  ['sample_rate "16000"', { ...HELLO, audio_params: { ...HELLO.audio_params, sample_rate: '16000' } }],
  ['channels 2', { ...HELLO, audio_params: { ...HELLO.audio_params, channels: 2 } }],
  ['frame_duration 100', { ...HELLO, audio_params: { ...HELLO.audio_params, frame_duration: 100 } }],
  ['frame_duration -60', { ...HELLO, audio_params: { ...HELLO.audio_params, frame_duration: -60 } }],
  ['format pcm', { ...HELLO, audio_params: { ...HELLO.audio_params, format: 'pcm' } }],
  ['features an array', { ...HELLO, features: [1, 2] }], ['features a string', { ...HELLO, features: 'mcp' }],
  ['audio_params an array', { ...HELLO, audio_params: [16000] }],
].map(([n, m]) => publishes(`hello with ${n}`, [JSON.stringify(m)], [{ counter: 'hello_rejected', exact: 1 }], {
  async check(d) {
    expect(d.messages.filter((x) => x.type === 'hello'), 'no hello reply').toHaveLength(0);
  },
}));

const sessionMessages: HostileCase[] = [
  ['listen state "go"', (d: Device) => JSON.stringify({ type: 'listen', session_id: d.session(), state: 'go' })],
  ['listen state 5', (d: Device) => JSON.stringify({ type: 'listen', session_id: d.session(), state: 5 })],
  ['listen mode "loud"', (d: Device) => JSON.stringify({ type: 'listen', session_id: d.session(), state: 'start', mode: 'loud' })],
  ['listen detect with 5 000 characters of text', (d: Device) => JSON.stringify({ type: 'listen', session_id: d.session(), state: 'detect', text: 'x'.repeat(5000) })],
  ['session_id of 200 characters', (d: Device) => JSON.stringify({ type: 'listen', session_id: d.session() + 'x'.repeat(164), state: 'start' })],
  ['session_id a number', () => JSON.stringify({ type: 'abort', session_id: 12 })],
  ['abort reason of 500 characters', (d: Device) => JSON.stringify({ type: 'abort', session_id: d.session(), reason: 'r'.repeat(500) })],
  ['mcp payload an array', (d: Device) => JSON.stringify({ type: 'mcp', session_id: d.session(), payload: [1] })],
  ['mcp payload a string', (d: Device) => JSON.stringify({ type: 'mcp', session_id: d.session(), payload: 'x' })],
  ['mcp payload null', (d: Device) => JSON.stringify({ type: 'mcp', session_id: d.session(), payload: null })],
  ['mcp without payload', (d: Device) => JSON.stringify({ type: 'mcp', session_id: d.session() })],
  ['goodbye with session_id an object', () => JSON.stringify({ type: 'goodbye', session_id: { a: 1 } })],
].map(([n, f]) => publishes(`invalid ${n}`, [f as (d: Device) => string], [{ counter: 'message_invalid', exact: 1 }], { session: true, check: stillServed }));

const big = (type: string, bytes: number, extra: Record<string, unknown> = {}): string => {
  const base = JSON.stringify({ type, ...extra, pad: '' });
  return JSON.stringify({ type, ...extra, pad: 'p'.repeat(bytes - base.length) });
};
const sizes: HostileCase[] = [
  publishes('unknown type at 60 000 bytes (ignored, under the cap)', [big('iot', 60_000)], [{ counter: 'message_ignored', exact: 1 }]),
  publishes('mcp message of 32 KB with a session', [(d) => big('mcp', 32_000, { session_id: d.session(), payload: { jsonrpc: '2.0', id: 1, result: {} } })], [], { session: true, check: stillServed }),
  publishes('listen of 65 000 bytes (just under the 64 KB message cap)', [(d) => big('listen', 65_000, { session_id: d.session(), state: 'start' })], [], { session: true, check: stillServed }),
  {
    name: 'message of 65 600 bytes (over the 64 KB message and packet caps)',
    expect: [{ counter: 'mqtt_refused_oversized', exact: 1 }, 'sessions_closed'],
    async run(ctx) {
      const d = await ctx.device({ hello: true });
      await d.publish(big('iot', 65_600));
      expect(await d.mqtt.closedWithin(3000), 'oversized packet closes the connection').toBe(true);
    },
  },
  publishes('a string of 60 000 backslash escapes', [JSON.stringify({ type: 'iot', s: '\\'.repeat(30_000) })], ['message_ignored']),
  publishes('60 000 bytes of \\u escapes', [`{"type":"iot","s":"${'\\u0041'.repeat(10_000)}"}`], ['message_ignored']),
  publishes('an object with 5 000 keys', [JSON.stringify(Object.fromEntries([['type', 'iot'], ...Array.from({ length: 5000 }, (_, i) => [`k${i}`, 1])]))], ['message_ignored']),
  publishes('an array of 30 000 zeros', [JSON.stringify({ type: 'iot', a: new Array(30_000).fill(0) })], ['message_ignored']),
  publishes('a very long type string (60 000 characters)', [JSON.stringify({ type: 't'.repeat(60_000) })], ['message_ignored']),
];

const nesting: HostileCase[] = [
  publishes('nested 32 levels (the limit) is accepted', [nested(32)], [{ counter: 'message_ignored', exact: 1 }]),
  publishes('nested 33 levels', [nested(33)], [{ counter: 'message_invalid', exact: 1 }]),
  publishes('nested 1 000 levels of objects', [nested(1000)], [{ counter: 'message_invalid', exact: 1 }]),
  publishes('nested 32 000 levels of arrays (64 KB)', [`{"type":"iot","a":${'['.repeat(32_000)}${']'.repeat(32_000)}}`], [{ counter: 'message_invalid', exact: 1 }]),
  publishes('mcp payload nested 40 levels with a session', [(d) => JSON.stringify({ type: 'mcp', session_id: d.session(), payload: JSON.parse(nested(40)) })], [{ counter: 'message_invalid', exact: 1 }], { session: true }),
  publishes('hello features nested 40 levels', [JSON.stringify({ ...HELLO, features: JSON.parse(nested(40)) })], [{ counter: 'message_invalid', exact: 1 }]),
];

const prototypeKeys: HostileCase[] = [
  publishes('__proto__ carrying a hello', ['{"__proto__":{"type":"hello"}}'], [{ counter: 'message_invalid', exact: 1 }]),
  publishes('hello with __proto__ polluting keys', [JSON.stringify(HELLO).slice(0, -1) + ',"__proto__":{"polluted":1,"isAdmin":true}}'], [{ counter: 'hello_accepted', exact: 1 }]),
  publishes('constructor.prototype payload', ['{"type":"iot","constructor":{"prototype":{"polluted":1}}}'], [{ counter: 'message_ignored', exact: 1 }]),
  publishes('type "__proto__"', ['{"type":"__proto__"}'], [{ counter: 'message_ignored', exact: 1 }]),
  publishes('type "constructor"', ['{"type":"constructor"}'], [{ counter: 'message_ignored', exact: 1 }]),
  publishes('type "toString"', ['{"type":"toString"}'], [{ counter: 'message_ignored', exact: 1 }]),
  publishes('mcp payload with __proto__ and constructor keys', [(d) => `{"type":"mcp","session_id":"${d.session()}","payload":{"__proto__":{"x":1},"constructor":{"prototype":{"y":2}},"jsonrpc":"2.0","id":1,"result":{}}}`], [], { session: true, check: stillServed }),
  publishes('audio_params.__proto__ with a valid-looking hello inside', ['{"type":"hello","version":3,"transport":"udp","audio_params":{"__proto__":{"format":"opus","sample_rate":16000,"channels":1,"frame_duration":60}}}'], [{ counter: 'hello_rejected', exact: 1 }]),
];

const utf8: HostileCase[] = [
  publishes('invalid UTF-8 inside the type string', [Buffer.concat([Buffer.from('{"type":"'), Buffer.from([0xff, 0xfe]), Buffer.from('"}')])], [{ counter: 'message_ignored', exact: 1 }]),
  publishes('overlong UTF-8 encoding of "hello"', [Buffer.concat([Buffer.from('{"type":"hell'), Buffer.from([0xc1, 0xaf]), Buffer.from('"}')])], [{ counter: 'message_ignored', exact: 1 }]),
  publishes('lone surrogate escape in a listen text', [(d) => `{"type":"listen","session_id":"${d.session()}","state":"detect","text":"\\ud800"}`], [], { session: true, check: stillServed }),
  publishes('invalid UTF-8 in session_id', [(d) => Buffer.concat([Buffer.from(`{"type":"abort","session_id":"${d.session().slice(0, 8)}`), Buffer.from([0xed, 0xa0, 0x80]), Buffer.from('"}')])], [{ counter: 'message_wrong_session', exact: 1 }], { session: true }),
  publishes('a 4-byte sequence cut short at the end', [Buffer.concat([Buffer.from('{"type":"iot"}'), Buffer.from([0xf0, 0x9f])])], [{ counter: 'message_invalid', exact: 1 }]),
];

function storm(name: string, expectation: HostileCase['expect'], run: (d: Device, ctx: Ctx) => Promise<void>, o: { session?: boolean } = {}): HostileCase {
  return {
    name,
    expect: expectation,
    async run(ctx) {
      const d = await ctx.device({ hello: o.session ?? false });
      await run(d, ctx);
    },
  };
}
const burst = (d: Device, msgs: Array<Record<string, unknown>>): Promise<void> => d.sendMqtt(Buffer.concat(msgs.map((m) => publishPacket(d.creds.publish_topic, JSON.stringify(m)))));

// Counts include the setup hello of { session: true } cases (the snapshot is taken before it).
const storms: HostileCase[] = [
  // Evidence for the lead: this storm used to leave streams_open > 0 after every client had left.
  storm('hello storm: 3 hellos in one burst after a session exists, then the device leaves', [{ counter: 'hello_accepted', exact: 4 }], async (d) => {
    await burst(d, [HELLO, HELLO, HELLO]);
    await sleep(150);
    d.mqtt.destroy();
  }, { session: true }),
  storm('hello storm: 3 hellos in one burst, the device stays, then says goodbye', [{ counter: 'hello_accepted', exact: 4 }, { counter: 'sessions_closed', exact: 4 }], async (d) => {
    await burst(d, [HELLO, HELLO, HELLO]);
    await sleep(150);
    const replies = d.messages.filter((m) => m.type === 'hello');
    expect(replies.length, 'three hello replies (plus the first)').toBe(4);
    await d.publish({ type: 'goodbye', session_id: replies.at(-1)!.session_id });
    await sleep(100);
  }, { session: true }),
  storm('hello storm: 3 hellos in one burst with no session, then a hang-up', [{ counter: 'hello_accepted', exact: 3 }], async (d) => {
    await burst(d, [HELLO, HELLO, HELLO]);
    d.mqtt.destroy();
  }),
  storm('hello / goodbye interleaved 20 times in one burst', [{ counter: 'hello_accepted', exact: 20 }, { counter: 'sessions_closed', exact: 20 }], async (d) => {
    // 19 fresh hellos (+1 from the session) = the burst of hellosPerMinute (20). Goodbyes carry no
    // session_id: each ends whichever session is current.
    const msgs: Array<Record<string, unknown>> = [];
    for (let i = 0; i < 19; i++) msgs.push(HELLO, { type: 'goodbye' });
    await burst(d, msgs.slice(0, 20));  // publishesPerSecond burst is 40: send in two halves
    await sleep(1100);
    await burst(d, msgs.slice(20));
    await sleep(300);
  }, { session: true }),
  storm('hello beyond hellosPerMinute: 25 hellos (paced under the publish rate)', [{ counter: 'hello_rate_limited', min: 5 }], async (d) => {
    for (let i = 0; i < 25; i++) {
      await d.publish(HELLO);
      await sleep(55);
    }
    await sleep(200);
  }),
  storm('listen before hello', [{ counter: 'message_without_session', exact: 1 }], (d) => d.publish({ type: 'listen', state: 'start', mode: 'manual' })),
  storm('abort, mcp and goodbye before hello', [{ counter: 'message_without_session', exact: 3 }], (d) => burst(d, [{ type: 'abort' }, { type: 'mcp', payload: { jsonrpc: '2.0', id: 1, result: {} } }, { type: 'goodbye' }])),
  storm('listen with another session_id', [{ counter: 'message_wrong_session', exact: 1 }], (d) => d.publish({ type: 'listen', session_id: 'not-this-session', state: 'start' }), { session: true }),
  storm('goodbye with the canary\'s session_id', [{ counter: 'message_wrong_session', exact: 1 }], (d, ctx) => d.publish({ type: 'goodbye', session_id: ctx.canary.device.session() }), { session: true }),
  storm('abort and mcp with another session_id', [{ counter: 'message_wrong_session', exact: 2 }], (d) => burst(d, [{ type: 'abort', session_id: 'x' }, { type: 'mcp', session_id: 'y', payload: {} }]), { session: true }),
  storm('messages for the previous session after a new hello', [{ counter: 'message_wrong_session', exact: 2 }], async (d) => {
    const old = d.session();
    await d.sayHello();
    await burst(d, [{ type: 'listen', session_id: old, state: 'start' }, { type: 'goodbye', session_id: old }]);
    await sleep(100);
    expect(d.messages.filter((m) => m.type === 'goodbye'), 'no goodbye for the new session').toHaveLength(0);
  }, { session: true }),
  storm('goodbye then listen then abort', [{ counter: 'message_without_session', exact: 2 }, { counter: 'sessions_closed', exact: 1 }], (d) => burst(d, [{ type: 'goodbye' }, { type: 'listen', state: 'start' }, { type: 'abort' }]), { session: true }),
  storm('hello then goodbye in the same segment (agent still attaching)', [{ counter: 'hello_accepted', exact: 1 }, { counter: 'sessions_closed', exact: 1 }], (d) => burst(d, [HELLO, { type: 'goodbye' }])),
  storm('hello, listen start, hello again mid-utterance', [{ counter: 'hello_accepted', exact: 2 }, { counter: 'sessions_closed', exact: 2 }], async (d) => {
    const frames = await import('./harness.mjs').then((h) => h.speechFrames());
    await d.publish({ type: 'listen', session_id: d.session(), state: 'start', mode: 'manual' });
    for (let i = 0; i < 5; i++) await d.sendUdp(d.datagram(frames[i]!));
    await d.sayHello();
    for (let i = 0; i < 3; i++) await d.sendUdp(d.datagram(frames[i]!));
    await sleep(100);
  }, { session: true }),
  storm('listen start/stop 15 times in one burst', [], async (d) => {
    const msgs: Array<Record<string, unknown>> = [];
    for (let i = 0; i < 15; i++) msgs.push({ type: 'listen', session_id: d.session(), state: 'start', mode: 'manual' }, { type: 'listen', session_id: d.session(), state: 'stop' });
    await burst(d, msgs);
    await sleep(400);
  }, { session: true }),
  storm('abort storm: 35 aborts in one burst', [], (d) => burst(d, Array.from({ length: 35 }, () => ({ type: 'abort', session_id: d.session() }))), { session: true }),
  storm('mcp storm: 35 mcp replies in one burst', [], (d) => burst(d, Array.from({ length: 35 }, (_, i) => ({ type: 'mcp', session_id: d.session(), payload: { jsonrpc: '2.0', id: i, result: { content: [] } } }))), { session: true }),
  storm('listen detect with a wake word before the agent attached', [{ counter: 'hello_accepted', exact: 1 }], (d) => burst(d, [HELLO, { type: 'listen', state: 'detect', text: '你好小智' }, { type: 'listen', state: 'start', mode: 'auto' }])),
  storm('unknown types: iot, HELLO, empty', [{ counter: 'message_ignored', exact: 3 }], (d) => burst(d, [{ type: 'iot' }, { type: 'HELLO' }, { type: '' }])),
  storm('hello, then the MQTT connection drops mid-listen', [{ counter: 'sessions_closed', exact: 1 }], async (d) => {
    await d.publish({ type: 'listen', session_id: d.session(), state: 'start', mode: 'manual' });
    await sleep(30);
    d.mqtt.destroy();
  }, { session: true }),
  storm('hello storm from 5 devices at once, all leave', [{ counter: 'hello_accepted', exact: 15 }], async (_d, ctx) => {
    const ds = await Promise.all(Array.from({ length: 5 }, () => ctx.device()));
    await Promise.all(ds.map((x) => burst(x, [HELLO, HELLO, HELLO])));
    await sleep(100);
    for (const x of ds) x.mqtt.destroy();
  }),
];

hostileCatalogue({
  file: 'json',
  secondOctet: 12,
  seed: 0x4a534f4e,
  gateway: {},
  categories: { 'not JSON': notJson, 'not an object': notObject, 'wrong type field': wrongTypes, hello: helloVariants, 'session messages': sessionMessages, sizes, nesting, 'prototype keys': prototypeKeys, 'invalid UTF-8': utf8, storms },
});
