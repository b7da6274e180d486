// A small, scriptable stand-in for a xiaozhi server, written from PROTOCOL.md with mqtt-packet,
// node:dgram and node:crypto: OTA + /metrics over HTTP, an MQTT 3.1.1 endpoint that delivers to the
// device's connection without any SUBSCRIBE, and a UDP audio socket. It records what the simulated
// device sends (so tests check the device's bytes) and can misbehave on purpose (so tests check that
// the simulator catches it).
import { randomBytes } from 'node:crypto';
import { createSocket, type RemoteInfo, type Socket as UdpSocket } from 'node:dgram';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createServer as createNetServer, type Server as NetServer, type Socket } from 'node:net';
import mqttPacket from 'mqtt-packet';
import { OpusDecoder, OpusEncoder } from '../../src/index.js';
import { synthesizeSpeech } from '../../src/sim/audio.js';
import { ctr, ctrDecrypt, readWireHeader, writeWireHeader } from './wire.js';

export interface FakeBehaviour {
  /** Replaces the hello reply (return null to stay silent). */
  helloReply?: (base: Record<string, unknown>) => Record<string, unknown> | null;
  /** Downlink frames per reply (default 10). */
  replyFrames?: number;
  /** Milliseconds from listen stop to the first reply audio frame (default 20). */
  firstAudioDelayMs?: number;
  /** Send all reply frames at once instead of every 60 ms. */
  burst?: boolean;
  /** Send tts stop this many frames before the last audio frame (default 0 = after it). */
  ttsStopEarlyBy?: number;
  /** Per downlink sequence: damage the datagram. */
  damage?: (sequence: number) => 'bad-type' | 'length' | 'duplicate' | 'skip' | 'swap-next' | null;
  /** Send this many audio frames before tts start. */
  audioBeforeTtsStart?: number;
  /** After this many replies, send a server goodbye instead of the next reply. */
  goodbyeAfterReplies?: number;
  /** Send an MCP tools/list after the hello. */
  mcpAfterHello?: boolean;
  /** Also reply when the uplink goes quiet for 600 ms after speech (server VAD, for realtime mode). */
  vad?: boolean;
}

export interface DeviceRecord {
  clientId: string;
  username: string | undefined;
  password: string | undefined;
  keepalive: number;
  clean: boolean;
  protocolVersion: number;
  subscribes: number;
  /** Every JSON message, in order. */
  messages: string[];
  /** Problems with the uplink datagrams (header/IV/sequence rules, Opus). */
  uplinkErrors: string[];
  uplinkPackets: number;
  otaHeaders?: Record<string, string | string[] | undefined>;
}

interface Conn {
  socket: Socket;
  rec: DeviceRecord;
  key: Buffer;
  nonce: Buffer;
  ssrc: number;
  sessionId: string;
  hellos: number;
  replies: number;
  downSeq: number;
  peer: RemoteInfo | null;
  expectSeq: number;
  decoder: OpusDecoder;
  timers: NodeJS.Timeout[];
  heard: boolean;
  quietMs: number;
}

export interface FakeGateway {
  otaUrl: string;
  devices: Map<string, DeviceRecord>;
  /** MQTT connections not yet closed: 0 once every device powered off and all it sent was read. */
  openConnections(): number;
  close(): Promise<void>;
}

const replyOpus: Buffer[] = (() => {
  const pcm = synthesizeSpeech(3, 24000, 3);
  const enc = new OpusEncoder({ sampleRate: 24000, channels: 1, application: 'voip' });
  const out: Buffer[] = [];
  for (let i = 0; i + 1440 <= pcm.length; i += 1440) out.push(enc.encode(pcm.subarray(i, i + 1440)));
  enc.close();
  return out;
})();

export async function startFakeGateway(b: FakeBehaviour = {}): Promise<FakeGateway> {
  const devices = new Map<string, DeviceRecord>();
  const bySsrc = new Map<number, Conn>();
  const conns = new Set<Conn>();
  const otaHeadersByMac = new Map<string, Record<string, string | string[] | undefined>>();

  const udp: UdpSocket = createSocket('udp4');
  await new Promise<void>((r) => udp.bind(0, '127.0.0.1', r));
  const udpPort = udp.address().port;

  const sendJson = (c: Conn, msg: Record<string, unknown>): void => {
    const payload = Buffer.from(JSON.stringify(msg));
    c.socket.write(mqttPacket.generate({ cmd: 'publish', topic: `devices/p2p/${c.rec.clientId}`, payload, qos: 0, retain: false, dup: false }));
  };

  const sendAudio = (c: Conn, opus: Buffer, damage: ReturnType<NonNullable<FakeBehaviour['damage']>>): void => {
    if (!c.peer) return;
    const seq = ++c.downSeq;
    const d = damage ?? null;
    if (d === 'skip') return;
    const header = writeWireHeader({ type: d === 'bad-type' ? 0x02 : 0x01, flags: 0x01, payloadLength: opus.length + (d === 'length' ? 1 : 0), ssrc: c.ssrc, timestamp: seq * 60, sequence: seq });
    const dg = Buffer.concat([header, ctr(c.key, header, opus)]);
    udp.send(dg, c.peer.port, c.peer.address);
    if (d === 'duplicate') udp.send(dg, c.peer.port, c.peer.address);
  };

  const reply = (c: Conn): void => {
    c.replies++;
    if (b.goodbyeAfterReplies !== undefined && c.replies > b.goodbyeAfterReplies) {
      sendJson(c, { type: 'goodbye', session_id: c.sessionId });
      return;
    }
    const n = b.replyFrames ?? 10;
    const early = b.ttsStopEarlyBy ?? 0;
    const frames = Array.from({ length: n }, (_, i) => replyOpus[i % replyOpus.length]!);
    sendJson(c, { type: 'stt', text: 'hello', session_id: c.sessionId });
    const early0 = b.audioBeforeTtsStart ?? 0;
    if (early0 > 0) {
      for (let i = 0; i < early0; i++) sendAudio(c, frames[0]!, null);
      // tts start well after that audio, so it cannot arrive first
      c.timers.push(setTimeout(() => sendJson(c, { type: 'tts', state: 'start', session_id: c.sessionId }), 15));
    } else {
      sendJson(c, { type: 'tts', state: 'start', session_id: c.sessionId });
    }
    let swapped: Buffer | null = null;
    const one = (i: number): void => {
      if (i === n - early) sendJson(c, { type: 'tts', state: 'stop', session_id: c.sessionId });
      const seqNext = c.downSeq + 1;
      const dmg = b.damage?.(seqNext) ?? null;
      if (dmg === 'swap-next') {
        // hold this one back and send it after the next: reordering on the wire
        swapped = frames[i]!;
        c.downSeq++;
        return;
      }
      sendAudio(c, frames[i]!, dmg);
      if (swapped) {
        const held = swapped;
        swapped = null;
        const seq = c.downSeq - 1;
        const header = writeWireHeader({ type: 1, flags: 1, payloadLength: held.length, ssrc: c.ssrc, timestamp: seq * 60, sequence: seq });
        if (c.peer) udp.send(Buffer.concat([header, ctr(c.key, header, held)]), c.peer.port, c.peer.address);
      }
    };
    const finish = (): void => {
      if (early === 0) c.timers.push(setTimeout(() => sendJson(c, { type: 'tts', state: 'stop', session_id: c.sessionId }), 120));
      done();
    };
    const done = (): void => {
      c.timers.push(setTimeout(() => {
        c.heard = false;
        c.quietMs = 0;
      }, 200));
    };
    const first = b.firstAudioDelayMs ?? 20;
    if (b.burst) {
      setTimeout(() => {
        for (let i = 0; i < n; i++) one(i);
        finish();
      }, first);
    } else {
      for (let i = 0; i < n; i++) c.timers.push(setTimeout(() => one(i), first + i * 60));
      c.timers.push(setTimeout(finish, first + n * 60));
    }
  };

  const onMessage = (c: Conn, text: string): void => {
    c.rec.messages.push(text);
    const m = JSON.parse(text) as Record<string, unknown>;
    if (m.type === 'hello') {
      c.hellos++;
      c.key = randomBytes(16);
      c.ssrc = (Math.random() * 0xffffffff) >>> 0;
      c.nonce = Buffer.from(writeWireHeader({ type: 1, flags: 0, payloadLength: 0, ssrc: c.ssrc, timestamp: 0, sequence: 0 }));
      c.sessionId = `fake-${c.rec.clientId}-${c.hellos}`;
      c.downSeq = 0;
      c.expectSeq = 1;
      c.peer = null;
      bySsrc.set(c.ssrc, c);
      const base = {
        type: 'hello', transport: 'udp', session_id: c.sessionId,
        audio_params: { format: 'opus', sample_rate: 24000, channels: 1, frame_duration: 60 },
        udp: { server: '127.0.0.1', port: udpPort, key: c.key.toString('hex'), nonce: c.nonce.toString('hex') },
      };
      const r = b.helloReply ? b.helloReply(base) : base;
      if (r) sendJson(c, r);
      if (b.mcpAfterHello) sendJson(c, { type: 'mcp', session_id: c.sessionId, payload: { jsonrpc: '2.0', id: 7, method: 'tools/list', params: { cursor: '' } } });
    } else if (m.type === 'listen' && m.state === 'stop') {
      reply(c);
    }
  };

  udp.on('message', (msg, rinfo) => {
    if (msg.length < 16) return;
    const h = readWireHeader(msg);
    const c = bySsrc.get(h.ssrc);
    if (!c) return;
    const err = (e: string): void => {
      if (c.rec.uplinkErrors.length < 20) c.rec.uplinkErrors.push(e);
    };
    c.rec.uplinkPackets++;
    c.peer = rinfo;
    if (h.type !== c.nonce[0] || h.flags !== c.nonce[1]) err(`type/flags ${h.type}/${h.flags} not copied from the nonce`);
    if (h.payloadLength !== msg.length - 16) err(`payload_len ${h.payloadLength} != ${msg.length - 16}`);
    if (h.sequence !== c.expectSeq) err(`sequence ${h.sequence}, expected ${c.expectSeq}`);
    c.expectSeq = h.sequence + 1;
    if (h.timestamp !== 0) err(`timestamp ${h.timestamp} without server AEC`);
    const opus = ctrDecrypt(c.key, msg.subarray(0, 16), msg.subarray(16));
    try {
      const pcm = c.decoder.decode(opus);
      if (pcm.length !== 960) err(`uplink frame of ${pcm.length} samples, expected 960 (60 ms at 16 kHz)`);
      if (b.vad) {
        let sum = 0;
        for (const v of pcm) sum += v * v;
        if (Math.sqrt(sum / pcm.length) >= 300) {
          c.heard = true;
          c.quietMs = 0;
        } else if (c.heard) {
          c.quietMs += 60;
          if (c.quietMs >= 600) {
            c.heard = false;
            c.quietMs = -1e9; // not again until this reply is over
            reply(c);
          }
        }
      }
    } catch (e) {
      err(`uplink Opus does not decode: ${(e as Error).message}`);
    }
  });

  // noDelay: without it Nagle + the client's delayed ACK hold a second small message back ~40 ms
  // (a tts start behind an stt), and UDP audio overtakes it.
  const mqttServer: NetServer = createNetServer({ noDelay: true }, (socket) => {
    const parser = mqttPacket.parser({ protocolVersion: 4 });
    let conn: Conn | null = null;
    parser.on('packet', (p) => {
      if (p.cmd === 'connect') {
        const rec: DeviceRecord = {
          clientId: p.clientId,
          username: p.username,
          password: p.password ? p.password.toString() : undefined,
          keepalive: p.keepalive ?? 0,
          clean: p.clean ?? false,
          protocolVersion: p.protocolVersion ?? 0,
          subscribes: 0,
          messages: [],
          uplinkErrors: [],
          uplinkPackets: 0,
        };
        const old = devices.get(p.clientId);
        if (old) {
          rec.messages = old.messages;
          rec.uplinkErrors = old.uplinkErrors;
          rec.uplinkPackets = old.uplinkPackets;
          rec.subscribes = old.subscribes;
        }
        devices.set(p.clientId, rec);
        const mac = p.clientId.split('@@@')[1]?.replace(/_/g, ':') ?? '';
        rec.otaHeaders = otaHeadersByMac.get(mac);
        conn = {
          socket, rec, key: Buffer.alloc(16), nonce: Buffer.alloc(16), ssrc: 0, sessionId: '', hellos: 0, replies: 0,
          downSeq: 0, peer: null, expectSeq: 1, decoder: new OpusDecoder({ sampleRate: 16000, channels: 1 }), timers: [],
          heard: false, quietMs: 0,
        };
        conns.add(conn);
        socket.write(mqttPacket.generate({ cmd: 'connack', returnCode: 0, sessionPresent: false }));
      } else if (p.cmd === 'publish' && conn) {
        onMessage(conn, p.payload.toString());
      } else if (p.cmd === 'subscribe' && conn) {
        conn.rec.subscribes++;
      } else if (p.cmd === 'pingreq') {
        socket.write(mqttPacket.generate({ cmd: 'pingresp' }));
      } else if (p.cmd === 'disconnect') {
        socket.end();
      }
    });
    socket.on('data', (d) => parser.parse(d));
    socket.on('error', () => undefined);
    socket.on('close', () => {
      if (!conn) return;
      for (const t of conn.timers) clearTimeout(t);
      conn.decoder.close();
      conns.delete(conn);
    });
  });
  await new Promise<void>((r) => mqttServer.listen(0, '127.0.0.1', r));
  const mqttPort = (mqttServer.address() as { port: number }).port;

  const http: HttpServer = createHttpServer((req, res) => {
    if (req.url === '/metrics') {
      const u = process.cpuUsage();
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end(`process_cpu_seconds_total ${(u.user + u.system) / 1e6}\nprocess_resident_memory_bytes ${process.memoryUsage().rss}\n`);
      return;
    }
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const mac = String(req.headers['device-id'] ?? '');
      otaHeadersByMac.set(mac, { ...req.headers, body: Buffer.concat(chunks).toString() });
      const uuid = String(req.headers['client-id'] ?? '');
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({
        server_time: { timestamp: Date.now(), timezone_offset: 0 },
        mqtt: {
          endpoint: `127.0.0.1:${mqttPort}`,
          client_id: `GID_test@@@${mac.replace(/:/g, '_')}@@@${uuid}`,
          username: Buffer.from('{"ip":"127.0.0.1"}').toString('base64'),
          password: 'fake-password',
          publish_topic: 'device-server',
          keepalive: 60,
        },
      }));
    });
  });
  await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
  const httpPort = (http.address() as { port: number }).port;

  return {
    otaUrl: `http://127.0.0.1:${httpPort}/xiaozhi/ota/`,
    devices,
    openConnections: () => conns.size,
    async close() {
      for (const c of conns) {
        for (const t of c.timers) clearTimeout(t);
        c.socket.destroy();
      }
      await Promise.all([
        new Promise<void>((r) => mqttServer.close(() => r())),
        new Promise<void>((r) => http.close(() => r())),
        new Promise<void>((r) => udp.close(() => r())),
      ]);
    },
  };
}
