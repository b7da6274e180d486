// What stock xiaozhi firmware says and accepts on the control channel (PROTOCOL.md §1–2), per
// firmware generation. Message texts are built the way the firmware builds them (string
// concatenation or cJSON_PrintUnformatted in a fixed member order), so the bytes on the wire match.

/** Firmware generations the simulator can play. */
export const FIRMWARE_PROFILES = ['v2.4', 'legacy'] as const;
export type FirmwareProfileName = (typeof FIRMWARE_PROFILES)[number];

export interface FirmwareRules {
  readonly name: FirmwareProfileName;
  /** application.version in the OTA body and the User-Agent. */
  readonly version: string;
  /** v2.4+: payload_len must equal datagram length − 16; older firmware decrypts whatever follows the header. */
  readonly strictLength: boolean;
  /** v2.4+: a sequence must be > the last accepted; older firmware: ≥ (an equal sequence is played again). */
  readonly sequenceRule: 'greater' | 'greater-or-equal';
  /** v2.3+: a server goodbye closes the channel only with the current session_id; older: also without one. */
  readonly goodbyeNeedsSessionId: boolean;
  /** Older firmware answers a server goodbye with its own goodbye (CloseAudioChannel() always sent one). */
  readonly answersServerGoodbye: boolean;
  /** v2.4+ ignores an invalid hello reply (the device then times out); older firmware dereferences null and crashes. */
  readonly crashesOnInvalidHello: boolean;
  /** v2.4+ announces "glyph_push":false in hello features. */
  readonly glyphPushFeature: boolean;
}

export const FIRMWARE: Readonly<Record<FirmwareProfileName, FirmwareRules>> = {
  'v2.4': {
    name: 'v2.4',
    version: '2.4.2',
    strictLength: true,
    sequenceRule: 'greater',
    goodbyeNeedsSessionId: true,
    answersServerGoodbye: false,
    crashesOnInvalidHello: false,
    glyphPushFeature: true,
  },
  legacy: {
    name: 'legacy',
    version: '1.8.0',
    strictLength: false,
    sequenceRule: 'greater-or-equal',
    goodbyeNeedsSessionId: false,
    answersServerGoodbye: true,
    crashesOnInvalidHello: true,
    glyphPushFeature: false,
  },
};

export function firmwareRules(name: string): FirmwareRules {
  const rules = (FIRMWARE as Record<string, FirmwareRules | undefined>)[name];
  if (!rules) throw new RangeError(`unknown firmware profile '${name}' (expected ${FIRMWARE_PROFILES.join(' or ')})`);
  return rules;
}

export type ListeningMode = 'auto' | 'manual' | 'realtime';
export const LISTENING_MODES: readonly ListeningMode[] = ['auto', 'manual', 'realtime'];

// ---- device → server messages ------------------------------------------------------------------

/**
 * The hello the device publishes to open the audio channel: no session_id, members in cJSON
 * insertion order. `aec` is announced only by firmware built with server-side AEC (realtime mode).
 */
export function helloMessage(rules: FirmwareRules, aec: boolean): string {
  let features = aec ? '{"aec":true,"mcp":true' : '{"mcp":true';
  features += rules.glyphPushFeature ? ',"glyph_push":false}' : '}';
  return (
    '{"type":"hello","version":3,"transport":"udp","features":' +
    features +
    ',"audio_params":{"format":"opus","sample_rate":16000,"channels":1,"frame_duration":60}}'
  );
}

// The firmware concatenates these strings without escaping; session ids from a server are plain.
export function listenStartMessage(sessionId: string, mode: ListeningMode): string {
  return `{"session_id":"${sessionId}","type":"listen","state":"start","mode":"${mode}"}`;
}

export function listenStopMessage(sessionId: string): string {
  return `{"session_id":"${sessionId}","type":"listen","state":"stop"}`;
}

export function wakeWordMessage(sessionId: string, text: string): string {
  return `{"session_id":"${sessionId}","type":"listen","state":"detect","text":"${text}"}`;
}

export function abortMessage(sessionId: string, wakeWord = false): string {
  return `{"session_id":"${sessionId}","type":"abort"${wakeWord ? ',"reason":"wake_word_detected"' : ''}}`;
}

export function goodbyeMessage(sessionId: string): string {
  return `{"session_id":"${sessionId}","type":"goodbye"}`;
}

export function mcpMessage(sessionId: string, payload: string): string {
  return `{"session_id":"${sessionId}","type":"mcp","payload":${payload}}`;
}

// ---- server → device: hello reply ---------------------------------------------------------------

export interface UdpChannelParams {
  server: string;
  port: number;
  key: Buffer;
  nonce: Buffer;
}

export type HelloReply =
  | {
      ok: true;
      /** Absent when the reply has no string session_id (the device then sends "session_id":""). */
      sessionId: string | undefined;
      /** From audio_params when numbers; the device keeps its previous values otherwise. */
      sampleRate: number | undefined;
      frameDuration: number | undefined;
      udp: UdpChannelParams;
    }
  | { ok: false; reason: string; crash: boolean };

/** cJSON valueint: doubles are truncated toward zero and saturate at the int range. */
export function cjsonInt(v: number): number {
  if (Number.isNaN(v)) return 0;
  if (v >= 2147483647) return 2147483647;
  if (v <= -2147483648) return -2147483648;
  return Math.trunc(v);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Strict hex like the firmware's DecodeHexString: even length, [0-9a-fA-F] only. */
export function decodeHex(text: string): Buffer | undefined {
  if (text.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(text)) return undefined;
  return Buffer.from(text, 'hex');
}

/**
 * What ParseServerHello makes of a hello reply. v2.4 ignores anything invalid (the device then
 * reports a server timeout after 10 s); older firmware dereferences missing members and crashes.
 */
export function parseHelloReply(rules: FirmwareRules, root: Record<string, unknown>): HelloReply {
  const legacy = rules.crashesOnInvalidHello;
  const transport = root.transport;
  if (typeof transport !== 'string' || transport !== 'udp') {
    // ≤ v2.3: strcmp(transport->valuestring, ...) on a missing member or a non-string is a crash.
    const crash = legacy && typeof transport !== 'string';
    return { ok: false, reason: `transport is ${JSON.stringify(transport) ?? 'missing'}, expected "udp"`, crash };
  }
  const sessionId = typeof root.session_id === 'string' ? root.session_id : undefined;
  let sampleRate: number | undefined;
  let frameDuration: number | undefined;
  const ap = root.audio_params;
  if (isObject(ap)) {
    if (typeof ap.sample_rate === 'number') sampleRate = cjsonInt(ap.sample_rate);
    if (typeof ap.frame_duration === 'number') frameDuration = cjsonInt(ap.frame_duration);
  }
  const udp = root.udp;
  if (!isObject(udp)) return { ok: false, reason: 'udp is not an object', crash: false };
  const { server, port, key, nonce } = udp;
  if (legacy) {
    if (typeof server !== 'string' || typeof port !== 'number' || typeof key !== 'string' || typeof nonce !== 'string') {
      return { ok: false, reason: 'udp.server/port/key/nonce missing or of the wrong type', crash: true };
    }
  } else if (
    typeof server !== 'string' || typeof port !== 'number' || cjsonInt(port) <= 0 || cjsonInt(port) > 65535 ||
    typeof key !== 'string' || typeof nonce !== 'string'
  ) {
    return { ok: false, reason: 'invalid udp.server, port, key or nonce', crash: false };
  }
  const keyBytes = decodeHex(key);
  const nonceBytes = decodeHex(nonce);
  if (!keyBytes || !nonceBytes || keyBytes.length !== 16 || nonceBytes.length !== 16) {
    // Older firmware hands whatever the hex decodes to to mbedtls as a 128-bit key: undefined behaviour.
    return { ok: false, reason: 'udp.key and udp.nonce must be 32 hex characters', crash: legacy };
  }
  const p = cjsonInt(port);
  if (p <= 0 || p > 65535) return { ok: false, reason: `udp.port ${p} out of range`, crash: legacy };
  return { ok: true, sessionId, sampleRate, frameDuration, udp: { server, port: p, key: keyBytes, nonce: nonceBytes } };
}

// ---- OTA reply ----------------------------------------------------------------------------------

/** NVS keys are at most 15 characters; longer members of `mqtt` are silently not stored. */
export const NVS_KEY_MAX = 15;

export interface MqttSettings {
  host: string;
  port: number;
  tls: boolean;
  clientId: string;
  username: string;
  password: string;
  publishTopic: string;
  keepalive: number;
}

export interface OtaOutcome {
  hasMqtt: boolean;
  serverTime?: { timestamp: number; timezoneOffset?: number };
  firmware?: { version?: string; url?: string; force?: number };
  activationRequired: boolean;
  /** mqtt members that were not stored (too long a name, or neither string nor number). */
  skippedKeys: string[];
}

/**
 * Stores the reply's `mqtt` members into the device's settings the way Ota::CheckVersion does:
 * strings and numbers (valueint) as-is, nothing erased.
 */
export function applyOtaReply(root: unknown, settings: Map<string, string | number>): OtaOutcome {
  const out: OtaOutcome = { hasMqtt: false, activationRequired: false, skippedKeys: [] };
  if (!isObject(root)) return out;
  const activation = root.activation;
  if (isObject(activation) && (typeof activation.code === 'string' || typeof activation.challenge === 'string')) {
    out.activationRequired = true;
  }
  const mqtt = root.mqtt;
  if (isObject(mqtt)) {
    out.hasMqtt = true;
    for (const [k, v] of Object.entries(mqtt)) {
      if (k.length > NVS_KEY_MAX) {
        out.skippedKeys.push(k);
      } else if (typeof v === 'string') {
        settings.set(k, v);
      } else if (typeof v === 'number') {
        settings.set(k, cjsonInt(v));
      } else {
        out.skippedKeys.push(k);
      }
    }
  }
  const st = root.server_time;
  if (isObject(st) && typeof st.timestamp === 'number') {
    out.serverTime = { timestamp: st.timestamp };
    if (typeof st.timezone_offset === 'number') out.serverTime.timezoneOffset = cjsonInt(st.timezone_offset);
  }
  const fw = root.firmware;
  if (isObject(fw)) {
    out.firmware = {};
    if (typeof fw.version === 'string') out.firmware.version = fw.version;
    if (typeof fw.url === 'string') out.firmware.url = fw.url;
    if (typeof fw.force === 'number') out.firmware.force = cjsonInt(fw.force);
  }
  return out;
}

/** std::stoi: optional whitespace and sign, then at least one digit; anything after is ignored. */
export function stoi(text: string): number | undefined {
  const m = /^\s*([+-]?\d+)/.exec(text);
  if (!m) return undefined;
  const n = Number(m[1]);
  return n > 2147483647 || n < -2147483648 ? undefined : n;
}

/**
 * Reads the MQTT settings back like MqttProtocol::StartMqttClient: endpoint split at the first
 * ':', port 8883 (TLS) when absent, keepalive default 240 s. Throws when the device could not connect.
 */
export function mqttSettingsFrom(settings: Map<string, string | number>): MqttSettings {
  const str = (k: string): string => {
    const v = settings.get(k);
    return typeof v === 'string' ? v : '';
  };
  const endpoint = str('endpoint');
  if (!endpoint) throw new Error('MQTT endpoint is not specified (no mqtt.endpoint in the OTA reply)');
  let host = endpoint;
  let port = 8883;
  const colon = endpoint.indexOf(':');
  if (colon >= 0) {
    host = endpoint.slice(0, colon);
    const p = stoi(endpoint.slice(colon + 1));
    // std::stoi throws on a port without digits: the firmware aborts.
    if (p === undefined) throw new Error(`mqtt.endpoint '${endpoint}': port is not a number (std::stoi would abort the firmware)`);
    port = p;
  }
  const ka = settings.get('keepalive');
  return {
    host,
    port,
    // The firmware's MQTT client uses TLS exactly when the port is 8883.
    tls: port === 8883,
    clientId: str('client_id'),
    username: str('username'),
    password: str('password'),
    publishTopic: str('publish_topic'),
    keepalive: typeof ka === 'number' ? ka : 240,
  };
}
