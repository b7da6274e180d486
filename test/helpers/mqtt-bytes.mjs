// MQTT 3.1.1 packets built and split byte by byte from the specification, independent of mqtt-packet
// (which the broker uses). Plain JS (types in mqtt-bytes.d.mts) so both the vitest files (through
// mqtt-raw.mjs) and the hostile harness (test/hostile/harness.mjs, also run by scripts/fuzz-live.mjs
// under plain Node) build their bytes with this one copy.

export function remainingLength(n) {
  const out = [];
  do {
    let byte = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) byte |= 0x80;
    out.push(byte);
  } while (n > 0);
  return Buffer.from(out);
}

/** A 2-byte length then the bytes (the length wraps at 65 536, so oversized fields can be sent). */
export function utf8Field(s) {
  const b = typeof s === 'string' ? Buffer.from(s, 'utf8') : s;
  const len = Buffer.alloc(2);
  len.writeUInt16BE(b.length & 0xffff);
  return Buffer.concat([len, b]);
}

export function packet(firstByte, body) {
  return Buffer.concat([Buffer.from([firstByte]), remainingLength(body.length), body]);
}

/**
 * CONNECT. `level` 4 = MQTT 3.1.1 ("MQTT"), 3 = MQTT 3.1 ("MQIsdp"); `protocolName` overrides the name.
 * `properties` (default: level 5) adds the empty MQTT 5 property lists (connect and will).
 */
export function connectPacket({ clientId, username, password, keepalive = 60, clean = true, level = 4, protocolName, will, properties = level === 5 }) {
  let flags = 0;
  if (clean) flags |= 0x02;
  if (will) flags |= 0x04;
  if (username !== undefined) flags |= 0x80;
  if (password !== undefined) flags |= 0x40;
  const ka = Buffer.alloc(2);
  ka.writeUInt16BE(keepalive & 0xffff);
  const noProperties = properties ? [Buffer.from([0])] : [];
  const parts = [utf8Field(protocolName ?? (level === 3 ? 'MQIsdp' : 'MQTT')), Buffer.from([level, flags]), ka, ...noProperties, utf8Field(clientId)];
  if (will) parts.push(...noProperties, utf8Field(will.topic), utf8Field(will.payload));
  if (username !== undefined) parts.push(utf8Field(username));
  if (password !== undefined) parts.push(utf8Field(password));
  return packet(0x10, Buffer.concat(parts));
}

export function publishPacket(topic, payload, { qos = 0, retain = false, messageId = 1, dup = false } = {}) {
  const first = 0x30 | (dup ? 8 : 0) | (qos << 1) | (retain ? 1 : 0);
  const id = Buffer.alloc(qos > 0 ? 2 : 0);
  if (qos > 0) id.writeUInt16BE(messageId);
  return packet(first, Buffer.concat([utf8Field(topic), id, typeof payload === 'string' ? Buffer.from(payload) : payload]));
}

export function subscribePacket(messageId, topics, first = 0x82) {
  const id = Buffer.alloc(2);
  id.writeUInt16BE(messageId);
  return packet(first, Buffer.concat([id, ...topics.flatMap((t) => [utf8Field(t), Buffer.from([0])])]));
}

export const PINGREQ = Buffer.from([0xc0, 0x00]);
export const DISCONNECT = Buffer.from([0xe0, 0x00]);

/**
 * Splits a byte stream into MQTT packets: [packets, rest, malformed]. A remaining length longer than
 * 4 bytes sets `malformed` and drops the rest of the stream.
 */
export function splitPackets(buffer) {
  const packets = [];
  for (;;) {
    if (buffer.length < 2) break;
    let len = 0;
    let mult = 1;
    let i = 1;
    let complete = false;
    for (;;) {
      if (i >= buffer.length) break;
      const b = buffer[i++];
      len += (b & 0x7f) * mult;
      mult *= 128;
      if (!(b & 0x80)) {
        complete = true;
        break;
      }
      if (i > 4) return [packets, Buffer.alloc(0), true];
    }
    if (!complete || buffer.length < i + len) break;
    const first = buffer[0];
    packets.push({ type: first >> 4, flags: first & 0x0f, body: Buffer.from(buffer.subarray(i, i + len)), raw: Buffer.from(buffer.subarray(0, i + len)) });
    buffer = buffer.subarray(i + len);
  }
  return [packets, buffer, false];
}

/** The topic, payload, QoS and retain flag of a PUBLISH packet. */
export function parsePublish(p) {
  const len = p.body.readUInt16BE(0);
  const topic = p.body.subarray(2, 2 + len).toString('utf8');
  const qos = (p.flags >> 1) & 3;
  const payload = p.body.subarray(2 + len + (qos > 0 ? 2 : 0));
  return { topic, payload, qos, retain: (p.flags & 1) === 1 };
}
