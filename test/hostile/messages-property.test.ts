// Property-based tests (fast-check) for parseDeviceMessage (src/device/messages.ts): whatever the
// payload, it returns a checked DeviceMessage or throws MessageError with a known code; it never
// throws anything else, never returns unchecked data (unknown keys, wrong types, prototype keys),
// never pollutes prototypes and never hangs.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MessageError, parseDeviceMessage, type DeviceMessage } from '../../src/device/messages.js';

const CODES = new Set(['ERR_MESSAGE_TOO_LARGE', 'ERR_MESSAGE_JSON', 'ERR_MESSAGE_SHAPE', 'ERR_MESSAGE_INVALID']);
const SEED = 0x6d736773;
const SLOW_MS = 250;

/** Parses and classifies; fails the property on anything but a checked result or a known MessageError. */
function parse(payload: Buffer): DeviceMessage | MessageError {
  const t0 = performance.now();
  let result: DeviceMessage | MessageError;
  try {
    result = parseDeviceMessage(payload);
  } catch (err) {
    if (!(err instanceof MessageError)) throw new Error(`threw a non-MessageError: ${String(err)} for ${payload.subarray(0, 200).toString('latin1')}`);
    if (!CODES.has(err.code)) throw new Error(`unknown MessageError code ${err.code}`);
    if (typeof err.message !== 'string' || err.message.length === 0) throw new Error('MessageError without a reason');
    result = err;
  }
  const ms = performance.now() - t0;
  if (ms > SLOW_MS) throw new Error(`took ${ms.toFixed(0)} ms for a payload of ${payload.length} bytes`);
  if (!(result instanceof MessageError)) checkResult(result);
  return result;
}

const ALLOWED: Record<string, string[]> = {
  hello: ['type', 'version', 'transport', 'features', 'audio_params'],
  listen: ['type', 'session_id', 'state', 'mode', 'text'],
  abort: ['type', 'session_id', 'reason'],
  mcp: ['type', 'session_id', 'payload'],
  goodbye: ['type', 'session_id'],
};

function hasPrototypeKeys(v: unknown, depth = 0): boolean {
  if (v === null || typeof v !== 'object' || depth > 64) return false;
  for (const k of Object.keys(v)) {
    if (k === '__proto__' || k === 'constructor' || k === 'prototype') return true;
    if (hasPrototypeKeys((v as Record<string, unknown>)[k], depth + 1)) return true;
  }
  return Object.getPrototypeOf(v) !== Object.prototype && Object.getPrototypeOf(v) !== Array.prototype && Object.getPrototypeOf(v) !== null;
}

/** The result holds only checked data of the documented shape. */
function checkResult(r: DeviceMessage): void {
  const fail = (why: string): never => {
    throw new Error(`unchecked data returned (${why}): ${JSON.stringify(r).slice(0, 300)}`);
  };
  if (r.kind === 'ignored') {
    if (typeof r.type !== 'string' || r.type.length > 32) fail('ignored type');
    if (Object.keys(ALLOWED).includes(r.type)) fail('a known type reported as ignored');
    return;
  }
  const m = r.message as Record<string, unknown>;
  if (m.type !== r.kind) fail('type differs from kind');
  for (const k of Object.keys(m)) if (!ALLOWED[r.kind]!.includes(k)) fail(`unknown key ${k}`);
  if (hasPrototypeKeys(m)) fail('prototype keys');
  if ('session_id' in m && m.session_id !== undefined && (typeof m.session_id !== 'string' || m.session_id.length > 128)) fail('session_id');
  switch (r.kind) {
    case 'hello': {
      const h = r.message;
      if (![1, 2, 3].includes(h.version) || h.transport !== 'udp') fail('hello version/transport');
      const a = h.audio_params as Record<string, unknown>;
      if (a.format !== 'opus' || a.channels !== 1 || ![8000, 12000, 16000, 24000, 48000].includes(a.sample_rate as number) || ![20, 40, 60].includes(a.frame_duration as number)) fail('audio_params');
      for (const k of Object.keys(a)) if (!['format', 'sample_rate', 'channels', 'frame_duration'].includes(k)) fail(`audio_params key ${k}`);
      if (h.features !== undefined && (h.features === null || typeof h.features !== 'object' || Array.isArray(h.features))) fail('features');
      break;
    }
    case 'listen':
      if (!['start', 'stop', 'detect'].includes(r.message.state)) fail('listen state');
      if (r.message.mode !== undefined && !['auto', 'manual', 'realtime'].includes(r.message.mode)) fail('listen mode');
      if (r.message.text !== undefined && (typeof r.message.text !== 'string' || r.message.text.length > 1024)) fail('listen text');
      break;
    case 'abort':
      if (r.message.reason !== undefined && (typeof r.message.reason !== 'string' || r.message.reason.length > 128)) fail('abort reason');
      break;
    case 'mcp':
      if (r.message.payload === null || typeof r.message.payload !== 'object' || Array.isArray(r.message.payload)) fail('mcp payload');
      break;
    case 'goodbye':
      break;
  }
}

const TYPES = ['hello', 'listen', 'abort', 'mcp', 'goodbye', 'iot', 'tts', '', '__proto__', 'constructor', 'HELLO'];
const weird = fc.oneof(
  fc.constantFrom(null, true, false, 0, -1, 1.5, 1e308, '', '__proto__', 'udp', 'opus', 'start', 'manual', 3, 16000, 60, 1),
  fc.string({ maxLength: 40 }),
  fc.integer(),
  fc.double(),
  fc.jsonValue({ maxDepth: 3 }),
);
const audioParams = fc.record({
  format: fc.oneof(fc.constant('opus'), weird),
  sample_rate: fc.oneof(fc.constantFrom(8000, 12000, 16000, 24000, 48000, 44100), weird),
  channels: fc.oneof(fc.constantFrom(1, 2), weird),
  frame_duration: fc.oneof(fc.constantFrom(20, 40, 60, 100), weird),
  extra: weird,
}, { requiredKeys: [] });
/** Device-like messages: the known fields with right or wrong values, plus arbitrary extra keys. */
const deviceLike = fc.record({
  type: fc.oneof(fc.constantFrom(...TYPES), weird),
  version: fc.oneof(fc.constantFrom(1, 2, 3, 9, '3'), weird),
  transport: fc.oneof(fc.constantFrom('udp', 'websocket'), weird),
  features: fc.oneof(fc.dictionary(fc.string({ maxLength: 8 }), weird, { maxKeys: 4 }), weird),
  audio_params: fc.oneof(audioParams, weird),
  session_id: fc.oneof(fc.string({ maxLength: 140 }), weird),
  state: fc.oneof(fc.constantFrom('start', 'stop', 'detect', 'go'), weird),
  mode: fc.oneof(fc.constantFrom('auto', 'manual', 'realtime', 'loud'), weird),
  text: fc.oneof(fc.string({ maxLength: 1100 }), weird),
  reason: fc.oneof(fc.string({ maxLength: 140 }), weird),
  payload: fc.oneof(fc.dictionary(fc.string({ maxLength: 8 }), weird, { maxKeys: 5 }), weird),
  __proto__: weird,
  constructor: weird,
  prototype: weird,
  extra: weird,
}, { requiredKeys: [] });

/** JSON text of an object with prototype keys spelled out literally (JSON.stringify cannot emit "__proto__" from a literal). */
const withProtoText = fc.tuple(deviceLike, fc.constantFrom('__proto__', 'constructor', 'prototype'), fc.jsonValue({ maxDepth: 2 }))
  .map(([o, k, v]) => JSON.stringify(o).replace(/^\{/, `{"${k}":${JSON.stringify(v)},`).replace(',}', '}'));

describe('parseDeviceMessage (property-based, fast-check)', () => {
  it('arbitrary bytes: a checked result or a MessageError with a known code', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 2048 }), (bytes) => {
      parse(Buffer.from(bytes));
    }), { seed: SEED, numRuns: 3000 });
  });

  it('arbitrary JSON values and strings', () => {
    fc.assert(fc.property(fc.oneof(fc.jsonValue(), fc.anything().map((v) => { try { return JSON.stringify(v) ?? 'undefined'; } catch { return 'x'; } }), fc.string()), (v) => {
      parse(Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)));
    }), { seed: SEED + 1, numRuns: 3000 });
  });

  it('device-like messages with right and wrong fields never return unchecked data', () => {
    let accepted = 0;
    fc.assert(fc.property(deviceLike, (m) => {
      const r = parse(Buffer.from(JSON.stringify(m)));
      if (!(r instanceof MessageError) && r.kind !== 'ignored') accepted++;
    }), { seed: SEED + 2, numRuns: 5000 });
    // The generator must reach the accepting paths too, or the property proves little.
    expect(accepted).toBeGreaterThan(20);
  });

  it('prototype keys in the text never reach the result or Object.prototype', () => {
    const before = Object.getOwnPropertyNames(Object.prototype).length;
    fc.assert(fc.property(withProtoText, (text) => {
      parse(Buffer.from(text));
    }), { seed: SEED + 3, numRuns: 2000 });
    expect(Object.getOwnPropertyNames(Object.prototype).length).toBe(before);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
  });

  it('deep nesting and huge sizes: bounded time, known codes', () => {
    fc.assert(fc.property(fc.integer({ min: 1, max: 40_000 }), fc.constantFrom('[', '{"a":'), fc.boolean(), (depth, open, typed) => {
      const close = open === '[' ? ']' : '}';
      const inner = open === '[' ? '1' : '{}';
      const text = (typed ? '{"type":"iot","x":' : '') + open.repeat(depth) + inner + close.repeat(depth) + (typed ? '}' : '');
      const r = parse(Buffer.from(text));
      if (typed && depth >= 32) expect(r).toBeInstanceOf(MessageError);
    }), { seed: SEED + 4, numRuns: 300 });
    fc.assert(fc.property(fc.integer({ min: 60_000, max: 200_000 }), (n) => {
      const r = parse(Buffer.from(JSON.stringify({ type: 'iot', pad: 'x'.repeat(n) })));
      if (n + 25 > 64 * 1024) expect((r as MessageError).code).toBe('ERR_MESSAGE_TOO_LARGE');
    }), { seed: SEED + 5, numRuns: 40 });
  });

  it('mutated valid messages (byte flips of real device JSON)', () => {
    const real = [
      '{"type":"hello","version":3,"transport":"udp","features":{"aec":true,"mcp":true},"audio_params":{"format":"opus","sample_rate":16000,"channels":1,"frame_duration":60}}',
      '{"session_id":"3f1c","type":"listen","state":"start","mode":"manual"}',
      '{"session_id":"3f1c","type":"listen","state":"detect","text":"你好小智"}',
      '{"session_id":"3f1c","type":"abort","reason":"wake_word_detected"}',
      '{"session_id":"3f1c","type":"mcp","payload":{"jsonrpc":"2.0","id":1,"result":{"tools":[]}}}',
      '{"session_id":"3f1c","type":"goodbye"}',
    ].map((s) => Buffer.from(s));
    fc.assert(fc.property(fc.nat(real.length - 1), fc.array(fc.tuple(fc.nat(), fc.nat(255)), { maxLength: 6 }), fc.nat(), (which, edits, cut) => {
      const b = Buffer.from(real[which]!);
      for (const [at, v] of edits) b[at % b.length] = v;
      parse(b.subarray(0, Math.max(0, b.length - (cut % 4))));
    }), { seed: SEED + 6, numRuns: 5000 });
  });
});
