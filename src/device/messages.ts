// Control messages of the MQTT channel (PROTOCOL.md §2): parsing device JSON safely and building
// server messages. Every rejection says what was wrong so logs explain a misbehaving device.
import { z } from 'zod';

/** JSON.parse that never lets a payload touch prototypes ("__proto__", "constructor", "prototype"). */
export function parseJsonSafe(text: string): unknown {
  return JSON.parse(text, (key, value: unknown) =>
    key === '__proto__' || key === 'constructor' || key === 'prototype' ? undefined : value,
  );
}

const audioParams = z.object({
  format: z.literal('opus', { error: 'audio_params.format must be "opus"' }),
  sample_rate: z.union([z.literal(8000), z.literal(12000), z.literal(16000), z.literal(24000), z.literal(48000)], {
    error: 'audio_params.sample_rate must be 8000, 12000, 16000, 24000 or 48000',
  }),
  channels: z.literal(1, { error: 'audio_params.channels must be 1' }),
  frame_duration: z.union([z.literal(20), z.literal(40), z.literal(60)], {
    error: 'audio_params.frame_duration must be 20, 40 or 60',
  }),
});

export const helloSchema = z.object({
  type: z.literal('hello'),
  version: z.union([z.literal(1), z.literal(2), z.literal(3)], { error: 'version must be 1, 2 or 3' }),
  transport: z.literal('udp', { error: 'transport must be "udp" on the MQTT channel' }),
  features: z.record(z.string(), z.unknown()).optional(),
  audio_params: audioParams,
});
export type Hello = z.infer<typeof helloSchema>;

const sessionField = { session_id: z.string().max(128).optional() };

export const listenSchema = z.object({
  type: z.literal('listen'),
  ...sessionField,
  state: z.enum(['start', 'stop', 'detect'], { error: 'listen.state must be "start", "stop" or "detect"' }),
  mode: z.enum(['auto', 'manual', 'realtime']).optional(),
  text: z.string().max(1024).optional(),
});
export type Listen = z.infer<typeof listenSchema>;

export const abortSchema = z.object({ type: z.literal('abort'), ...sessionField, reason: z.string().max(128).optional() });
export const mcpSchema = z.object({
  type: z.literal('mcp'),
  ...sessionField,
  payload: z.record(z.string(), z.unknown(), { error: 'mcp.payload must be a JSON-RPC object' }),
});
export const goodbyeSchema = z.object({ type: z.literal('goodbye'), ...sessionField });

export type DeviceMessage =
  | { kind: 'hello'; message: Hello }
  | { kind: 'listen'; message: Listen }
  | { kind: 'abort'; message: z.infer<typeof abortSchema> }
  | { kind: 'mcp'; message: z.infer<typeof mcpSchema> }
  | { kind: 'goodbye'; message: z.infer<typeof goodbyeSchema> }
  | { kind: 'ignored'; type: string };

export class MessageError extends Error {
  readonly code: string;
  constructor(code: string, message: string) {
    super(message);
    this.code = code;
  }
}

function explain(error: z.ZodError): string {
  return error.issues.map((i) => (i.path.length ? `${i.path.join('.')}: ` : '') + i.message).join('; ');
}

const MAX_MESSAGE_BYTES = 64 * 1024;
/** Real messages nest 4-6 levels (mcp payloads included); deeper ones would only cost the agents' serializers. */
const MAX_MESSAGE_DEPTH = 32;

/** Whether `value` nests objects/arrays deeper than `max` (iterative: a hostile depth cannot blow the stack). */
function depthExceeds(value: unknown, max: number): boolean {
  const stack: Array<[unknown, number]> = [[value, 1]];
  while (stack.length) {
    const [v, d] = stack.pop()!;
    if (v === null || typeof v !== 'object') continue;
    if (d > max) return true;
    for (const child of Object.values(v)) if (child !== null && typeof child === 'object') stack.push([child, d + 1]);
  }
  return false;
}

/** Parses one device PUBLISH payload. Throws MessageError with a reason; never returns unchecked data. */
export function parseDeviceMessage(payload: Buffer): DeviceMessage {
  if (payload.length > MAX_MESSAGE_BYTES) throw new MessageError('ERR_MESSAGE_TOO_LARGE', `message of ${payload.length} bytes exceeds ${MAX_MESSAGE_BYTES}`);
  let data: unknown;
  try {
    data = parseJsonSafe(payload.toString('utf8'));
  } catch (err) {
    throw new MessageError('ERR_MESSAGE_JSON', `not JSON: ${(err as Error).message}`);
  }
  if (data === null || typeof data !== 'object' || Array.isArray(data)) {
    throw new MessageError('ERR_MESSAGE_SHAPE', `expected a JSON object, got ${data === null ? 'null' : Array.isArray(data) ? 'an array' : typeof data}`);
  }
  if (depthExceeds(data, MAX_MESSAGE_DEPTH)) throw new MessageError('ERR_MESSAGE_SHAPE', `nested deeper than ${MAX_MESSAGE_DEPTH} levels`);
  const type = (data as { type?: unknown }).type;
  if (typeof type !== 'string') throw new MessageError('ERR_MESSAGE_SHAPE', 'missing string field "type"');
  const check = <T>(schema: z.ZodType<T>): T => {
    const r = schema.safeParse(data);
    if (!r.success) throw new MessageError('ERR_MESSAGE_INVALID', `invalid ${type}: ${explain(r.error)}`);
    return r.data;
  };
  switch (type) {
    case 'hello': return { kind: 'hello', message: check(helloSchema) };
    case 'listen': return { kind: 'listen', message: check(listenSchema) };
    case 'abort': return { kind: 'abort', message: check(abortSchema) };
    case 'mcp': return { kind: 'mcp', message: check(mcpSchema) };
    case 'goodbye': return { kind: 'goodbye', message: check(goodbyeSchema) };
    default: return { kind: 'ignored', type: type.slice(0, 32) };  // e.g. iot (firmware <= 1.7)
  }
}

export interface HelloReplyParams {
  sessionId: string;
  udpHost: string;
  udpPort: number;
  key: Buffer;
  nonce: Buffer;
  sampleRate: number;
  frameDuration: number;
}

/** The hello reply with every field the firmware needs (PROTOCOL.md §2.2). */
export function helloReply(p: HelloReplyParams): Record<string, unknown> {
  return {
    type: 'hello',
    transport: 'udp',
    session_id: p.sessionId,
    audio_params: { format: 'opus', sample_rate: p.sampleRate, channels: 1, frame_duration: p.frameDuration },
    udp: { server: p.udpHost, port: p.udpPort, key: p.key.toString('hex'), nonce: p.nonce.toString('hex') },
  };
}
