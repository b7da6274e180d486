// The hostile tier's harness, in plain ESM so the vitest catalogue (test/hostile/*.test.ts) and the live
// fuzzer (scripts/fuzz-live.mjs) share it: a gateway in a child process (gateway-child.mjs), devices
// that speak from any 127.x.y.z source address (raw MQTT bytes, raw UDP, raw HTTP), a canary device
// that keeps talking to the echo agent and checks every turn, and leak checks against a baseline.
// Written from ../shared/PROTOCOL.md like test/helpers/raw-device.ts (which only speaks from 127.0.0.1).
import { fork } from 'node:child_process';
import { createCipheriv } from 'node:crypto';
import dgram from 'node:dgram';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  connectPacket as buildConnect, DISCONNECT, packet as mqttPacket, PINGREQ, publishPacket, remainingLength, splitPackets, subscribePacket, utf8Field,
} from '../helpers/mqtt-bytes.mjs';
import { RawMqtt } from '../helpers/mqtt-raw.mjs';

const here = dirname(fileURLToPath(import.meta.url));
export const root = resolve(here, '..', '..');
export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------------------
// Gateway child process

/** Starts test/hostile/gateway-child.mjs with `config` (merged over its defaults). */
export async function startGateway(config = {}) {
  const child = fork(join(here, 'gateway-child.mjs'), [JSON.stringify(config)], { stdio: ['ignore', 'ignore', 'pipe', 'ipc'], cwd: root });
  const gw = {
    child,
    ports: null,
    fatal: [],
    exit: null,
    stderr: '',
    stopping: false,
    nextId: 1,
    pending: new Map(),
  };
  child.stderr.on('data', (c) => {
    if (gw.stderr.length < 64_000) gw.stderr += c.toString();
  });
  child.on('message', (m) => {
    if (m?.type === 'fatal') gw.fatal.push(`${m.kind}: ${m.error}`);
    if (m?.id !== undefined && gw.pending.has(m.id)) {
      gw.pending.get(m.id)(m);
      gw.pending.delete(m.id);
    }
  });
  child.on('exit', (code, signal) => {
    gw.exit = { code, signal };
    for (const [, r] of gw.pending) r({ type: 'gone' });
    gw.pending.clear();
  });
  const ready = await new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`gateway child did not start in 30 s\n${gw.stderr}`)), 30_000);
    child.on('message', (m) => {
      if (m?.type === 'ready') {
        clearTimeout(t);
        resolve(m);
      }
    });
    child.once('exit', (code) => {
      clearTimeout(t);
      reject(new Error(`gateway child exited (${code}) before ready\n${gw.stderr}`));
    });
  });
  gw.ports = ready.ports;
  gw.alive = () => gw.exit === null && gw.fatal.length === 0;
  /** Why the child is not healthy, or null. */
  gw.problem = () => {
    if (gw.fatal.length) return `gateway child reported ${gw.fatal.join('\n')}`;
    if (gw.exit) return `gateway child exited unexpectedly (code ${gw.exit.code}, signal ${gw.exit.signal})\n${gw.stderr.slice(-4000)}`;
    return null;
  };
  gw.state = (timeoutMs = 10_000) => new Promise((resolve, reject) => {
    if (gw.exit) return reject(new Error(gw.problem() ?? 'gateway child gone'));
    const id = gw.nextId++;
    const t = setTimeout(() => {
      gw.pending.delete(id);
      reject(new Error(`gateway child did not answer a state query in ${timeoutMs} ms`));
    }, timeoutMs);
    gw.pending.set(id, (m) => {
      clearTimeout(t);
      if (m.type === 'state') resolve(m.state);
      else reject(new Error(gw.problem() ?? 'gateway child gone'));
    });
    child.send({ id, type: 'state' });
  });
  gw.stop = async () => {
    gw.stopping = true;
    if (gw.exit) return;
    const exited = new Promise((r) => child.once('exit', r));
    const id = gw.nextId++;
    try {
      child.send({ id, type: 'stop' });
    } catch { /* gone */ }
    const t = setTimeout(() => child.kill('SIGKILL'), 12_000);
    await exited;
    clearTimeout(t);
  };
  return gw;
}

// ---------------------------------------------------------------------------------------------
// Addresses: every case speaks from its own loopback address (all of 127.0.0.0/8 is loopback on
// Linux), so per-IP limits of one case never touch another case or the canary (127.0.0.1).

export function ipAllocator(secondOctet) {
  let n = 0;
  return () => {
    n++;
    return `127.${secondOctet}.${(n >> 8) & 255}.${(n & 255) || 1}`;
  };
}

let macCounter = 0;
export function nextMac(prefix = 0x02) {
  macCounter++;
  const b = [prefix, 0x48, (macCounter >> 16) & 255, (macCounter >> 8) & 255, macCounter & 255, (process.pid & 255)];
  return b.map((x) => x.toString(16).padStart(2, '0')).join(':');
}

// ---------------------------------------------------------------------------------------------
// MQTT 3.1.1 bytes: test/helpers/mqtt-bytes.mjs (shared with test/broker.test.ts). CONNECT here
// defaults to keepalive 240 and never adds MQTT 5 property lists (level 5 is sent as a bare 3.1.1 body).

export { DISCONNECT, mqttPacket, PINGREQ, publishPacket, remainingLength, splitPackets, subscribePacket, utf8Field };

export function connectPacket(f) {
  return buildConnect({ ...f, keepalive: f.keepalive === undefined ? 240 : f.keepalive, properties: false });
}

// The raw MQTT connection: test/helpers/mqtt-raw.mjs (shared with test/broker.test.ts).
export { RawMqtt };

// ---------------------------------------------------------------------------------------------
// HTTP from a chosen source address

/** One request on a fresh connection. Resolves {status, headers, body} or {error}. */
export function httpRequest({ port, localAddress = '127.0.0.1', method = 'GET', path = '/xiaozhi/ota/', headers = {}, body, timeoutMs = 5000, bodyChunks, chunkGapMs = 0 }) {
  return new Promise((resolve) => {
    let done = false;
    const finish = (v) => {
      if (!done) {
        done = true;
        resolve(v);
      }
    };
    let req;
    try {
      req = http.request({ host: '127.0.0.1', port, localAddress, method, path, agent: false, headers: { connection: 'close', ...headers } }, (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => finish({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString() }));
        res.on('error', (err) => finish({ status: res.statusCode, error: err.message }));
      });
    } catch (err) {
      return finish({ error: `client refused to build the request: ${err.message}` });
    }
    req.on('error', (err) => finish({ error: err.message }));
    req.setTimeout(timeoutMs, () => {
      req.destroy(new Error('client timeout'));
    });
    (async () => {
      if (bodyChunks) {
        for (const c of bodyChunks) {
          if (req.destroyed) break;
          req.write(c);
          if (chunkGapMs) await sleep(chunkGapMs);
        }
        if (!req.destroyed) req.end();
      } else {
        req.end(body);
      }
    })().catch(() => {});
  });
}

/** Raw bytes to the HTTP port; resolves with everything the server sent before closing (or timeout). */
export function rawHttp({ port, localAddress = '127.0.0.1', chunks, gapMs = 0, timeoutMs = 3000 }) {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host: '127.0.0.1', localAddress });
    const got = [];
    let timer;
    const finish = () => {
      clearTimeout(timer);
      socket.destroy();
      resolve(Buffer.concat(got).toString('latin1'));
    };
    socket.on('data', (c) => got.push(c));
    socket.on('error', () => {});
    socket.on('close', finish);
    timer = setTimeout(finish, timeoutMs);
    socket.once('connect', async () => {
      for (const c of chunks) {
        if (socket.destroyed) return;
        socket.write(c);
        if (gapMs) await sleep(gapMs);
      }
    });
  });
}

export function otaHeaders(mac, uuid) {
  return { 'device-id': mac, 'client-id': uuid, 'user-agent': 'hostile-board/2.4.0', 'content-type': 'application/json' };
}
export function uuidFor(mac) {
  return '00000000-0000-4000-8000-' + mac.replace(/:/g, '');
}
export function otaBody(mac, uuid) {
  return JSON.stringify({ mac_address: mac, uuid, application: { name: 'xiaozhi', version: '2.4.0' }, board: { type: 'hostile' } });
}

// ---------------------------------------------------------------------------------------------
// Speech: real 60 ms Opus frames at 16 kHz (the fixture scripts/test-setup.mjs generates)

let frames = null;
export async function speechFrames(count = 60) {
  if (frames) return frames;
  const { OpusEncoder } = await import('../../dist/src/index.js');
  const bytes = readFileSync(join(root, 'test', 'fixtures', 'generated', 'speech-16000.s16'));
  const pcm = new Int16Array(bytes.length >> 1);
  new Uint8Array(pcm.buffer).set(bytes.subarray(0, pcm.length * 2));
  const enc = new OpusEncoder({ sampleRate: 16000, channels: 1, application: 'voip', bitrate: 24000 });
  const out = [];
  for (let i = 0; i + 960 <= pcm.length && out.length < count; i += 960) out.push(Buffer.from(enc.encode(pcm.slice(i, i + 960))));
  enc.close();
  frames = out;
  return out;
}

// ---------------------------------------------------------------------------------------------
// A device: OTA → MQTT (raw bytes) → hello → UDP, from any loopback address

export class Device {
  constructor() {
    this.messages = [];
    this.datagrams = [];
    this.mqtt = null;
    this.udp = null;
    this.hello = null;
    this.seq = 0;
    this.creds = null;
    this.ip = '127.0.0.1';
    this.waiters = [];
    /** Everything this device sent, for the fuzzer: {kind:'mqtt'|'udp', bytes}. */
    this.record = null;
  }

  /** OTA from `ip`, then CONNECT with the credentials. Throws when any step fails. */
  static async connect(gw, { ip = '127.0.0.1', mac = nextMac(), record = false, keepalive } = {}) {
    const d = new Device();
    d.gw = gw;
    d.ip = ip;
    d.mac = mac;
    if (record) d.record = [];
    const uuid = uuidFor(mac);
    const r = await httpRequest({ port: gw.ports.http, localAddress: ip, method: 'POST', headers: otaHeaders(mac, uuid), body: otaBody(mac, uuid) });
    if (r.status !== 200) throw new Error(`OTA from ${ip} failed: ${r.status ?? r.error} ${r.body ?? ''}`);
    d.creds = JSON.parse(r.body).mqtt;
    d.mqtt = await RawMqtt.connect(gw.ports.mqtt, ip);
    d.mqtt.onPacket = (p) => {
      if (p.type !== 3) return;
      const len = p.body.readUInt16BE(0);
      const qos = (p.flags >> 1) & 3;
      const payload = p.body.subarray(2 + len + (qos > 0 ? 2 : 0));
      let m;
      try {
        m = JSON.parse(payload.toString());
      } catch {
        m = { unparsable: payload.toString('latin1') };
      }
      m.at = performance.now();
      // The end of the event-loop phase this message was read in. Datagrams that were already in
      // the kernel's buffer when the loop woke are read in the same phase, in whatever order epoll
      // lists the sockets: on a starved machine a datagram sent 100 ms before the message can be
      // read just after it. Ordering checks compare against this, not against m.at.
      m.phaseEnd = m.at;
      setImmediate(() => { m.phaseEnd = performance.now(); });
      d.messages.push(m);
      d.waiters = d.waiters.filter((w) => (w.pred(m) ? (w.resolve(m), false) : true));
    };
    await d.sendMqtt(connectPacket({ clientId: d.creds.client_id, username: d.creds.username, password: d.creds.password, keepalive: keepalive ?? d.creds.keepalive }));
    const code = await d.mqtt.connack(5000);
    if (code !== 0) {
      d.mqtt.destroy();
      throw new Error(`CONNECT from ${ip} refused: ${code}`);
    }
    return d;
  }

  sendMqtt(bytes) {
    this.record?.push({ kind: 'mqtt', bytes: Buffer.from(bytes) });
    return this.mqtt.write(bytes);
  }

  /** Publishes JSON (object), text or bytes to the publish topic. */
  publish(message, opts) {
    const payload = Buffer.isBuffer(message) ? message : Buffer.from(typeof message === 'string' ? message : JSON.stringify(message));
    return this.sendMqtt(publishPacket(this.creds.publish_topic, payload, opts));
  }

  waitFor(pred, timeoutMs = 5000, what = 'a message') {
    const found = this.messages.find(pred);
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w.resolve !== done);
        reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}`));
      }, timeoutMs);
      const done = (m) => {
        clearTimeout(t);
        resolve(m);
      };
      this.waiters.push({ pred, resolve: done });
    });
  }

  helloMessage() {
    return { type: 'hello', version: 3, transport: 'udp', features: { mcp: true }, audio_params: { format: 'opus', sample_rate: 16000, channels: 1, frame_duration: 60 } };
  }

  async openUdp() {
    if (this.udp) return;
    this.udp = dgram.createSocket('udp4');
    this.udp.on('message', (data) => this.datagrams.push({ at: performance.now(), data }));
    this.udp.on('error', () => {});
    await new Promise((r) => this.udp.bind(0, this.ip, () => r()));
  }

  async sayHello(timeoutMs = 5000) {
    const before = this.messages.length;
    await this.publish(this.helloMessage());
    const reply = await this.waitFor((m) => m.type === 'hello' && this.messages.indexOf(m) >= before, timeoutMs, 'the hello reply');
    this.hello = reply;
    this.seq = 0;
    await this.openUdp();
    return reply;
  }

  session() {
    return this.hello.session_id;
  }

  header(payloadLength, sequence, timestamp = 0, hello = this.hello) {
    const nonce = Buffer.from(hello.udp.nonce, 'hex');
    const h = Buffer.alloc(16);
    h[0] = nonce[0];
    h[1] = nonce[1];
    h.writeUInt16BE(payloadLength & 0xffff, 2);
    nonce.copy(h, 4, 4, 8);
    h.writeUInt32BE(timestamp >>> 0, 8);
    h.writeUInt32BE(sequence >>> 0, 12);
    return h;
  }

  /** A genuine datagram (header + AES-CTR(opus)); the header is the IV. */
  datagram(opus, sequence = ++this.seq, hello = this.hello) {
    const h = this.header(opus.length, sequence, 0, hello);
    return Buffer.concat([h, encrypt(hello.udp.key, h, opus)]);
  }

  sendUdp(data, socket = this.udp) {
    this.record?.push({ kind: 'udp', bytes: Buffer.from(data) });
    return new Promise((resolve) => socket.send(data, this.hello?.udp.port ?? this.gw.ports.udp, '127.0.0.1', () => resolve()));
  }

  decrypt(datagram) {
    const header = datagram.subarray(0, 16);
    return { header, opus: encrypt(this.hello.udp.key, header, datagram.subarray(16)) };
  }

  async close({ graceful = true } = {}) {
    try {
      this.udp?.close();
    } catch { /* closed */ }
    this.udp = null;
    if (this.mqtt && !this.mqtt.closed) {
      if (graceful) await this.mqtt.write(DISCONNECT);
      this.mqtt.destroy();
    }
  }
}

export function encrypt(keyHex, iv, data) {
  return createCipheriv('aes-128-ctr', Buffer.from(keyHex, 'hex'), iv).update(data);
}

// ---------------------------------------------------------------------------------------------
// The canary: a device that keeps talking to the echo agent, turn after turn, and checks each turn:
// tts start → every echoed datagram → tts stop, downlink sequences without gaps, and as many frames
// back as it said (so no uplink frame of its own was dropped anywhere).

export class Canary {
  constructor(gw, { framesPerTurn = 8, turnTimeoutMs = 10_000, ip = '127.0.0.1' } = {}) {
    this.gw = gw;
    this.framesPerTurn = framesPerTurn;
    this.turnTimeoutMs = turnTimeoutMs;
    this.ip = ip;
    this.turns = 0;
    this.failures = [];
    this.lastTurnAt = 0;
    this.running = false;
    this.activeCases = new Set();
    this.casesThisTurn = new Set();
    this.loop = null;
    this.echoShortfall = null;
  }

  async start() {
    this.frames = await speechFrames();
    this.device = await Device.connect(this.gw, { ip: this.ip, mac: '02:ca:4a:00:00:01' });
    await this.device.sayHello();
    this.running = true;
    // The first turn calibrates how many frames the echo returns for framesPerTurn (resampler delay).
    await this.turn(true);
    this.loop = (async () => {
      while (this.running) {
        try {
          await this.turn(false);
        } catch (err) {
          this.failures.push({ turn: this.turns, error: err.message, cases: [...this.casesThisTurn] });
          // Keep going: a later case must not be blamed for this one, but the tier fails on it.
          await sleep(200);
        }
        await sleep(50);
      }
    })();
    this.pinger = setInterval(() => void this.device.mqtt.write(PINGREQ), 60_000);
  }

  /** Marks a case as running (its name goes into any failure of an overlapping turn). */
  enter(name) {
    this.activeCases.add(name);
    this.casesThisTurn.add(name);
  }

  leave(name) {
    this.activeCases.delete(name);
  }

  async turn(calibrate) {
    const d = this.device;
    this.casesThisTurn = new Set(this.activeCases);
    const sid = d.session();
    const stopsBefore = d.messages.filter((m) => m.type === 'tts' && m.state === 'stop').length;
    const msgStart = d.messages.length;
    d.datagrams.length = 0;
    await d.publish({ session_id: sid, type: 'listen', state: 'start', mode: 'manual' });
    const t0 = performance.now();
    for (let i = 0; i < this.framesPerTurn; i++) {
      await d.sendUdp(d.datagram(this.frames[(this.turns * this.framesPerTurn + i) % this.frames.length]));
      const next = t0 + (i + 1) * 60;
      await sleep(Math.max(0, next - performance.now()));
    }
    await d.publish({ session_id: sid, type: 'listen', state: 'stop' });
    const stop = await d.waitFor((m) => m.type === 'tts' && m.state === 'stop' && d.messages.filter((x) => x.type === 'tts' && x.state === 'stop').indexOf(m) >= stopsBefore,
      this.turnTimeoutMs, `canary turn ${this.turns + 1}: tts stop (the echo)`);
    const msgs = d.messages.slice(msgStart);
    const start = msgs.find((m) => m.type === 'tts' && m.state === 'start');
    if (!start) throw new Error(`canary turn ${this.turns + 1}: tts stop without tts start`);
    if (msgs.some((m) => m.type === 'goodbye')) throw new Error(`canary turn ${this.turns + 1}: the gateway said goodbye`);
    await sleep(30);  // a straggler would show up as a datagram after tts stop
    const audio = d.datagrams.slice();
    if (audio.length === 0) throw new Error(`canary turn ${this.turns + 1}: no echoed audio`);
    if (audio[0].at < start.at) throw new Error(`canary turn ${this.turns + 1}: audio before tts start`);
    if (audio.at(-1).at > stop.phaseEnd) throw new Error(`canary turn ${this.turns + 1}: audio after tts stop (${(audio.at(-1).at - stop.at).toFixed(1)} ms after it)`);
    let last = null;
    for (const { data } of audio) {
      if (data[0] !== 1 || data.readUInt16BE(2) !== data.length - 16) throw new Error(`canary turn ${this.turns + 1}: malformed downlink datagram`);
      const seq = data.readUInt32BE(12);
      if (last !== null && seq !== last + 1) throw new Error(`canary turn ${this.turns + 1}: downlink sequence gap ${last} -> ${seq}`);
      last = seq;
    }
    if (calibrate) {
      this.expectedFrames = audio.length;
      if (audio.length < this.framesPerTurn - 1) throw new Error(`canary calibration: ${this.framesPerTurn} frames said, only ${audio.length} echoed`);
    } else if (audio.length !== this.expectedFrames) {
      throw new Error(`canary turn ${this.turns + 1}: ${audio.length} frames echoed, expected ${this.expectedFrames} (uplink or downlink frames lost)`);
    }
    this.turns++;
    this.lastTurnAt = performance.now();
  }

  /** Resolves once `n` more turns completed (throws on a failure or after timeoutMs). */
  async waitTurns(n = 1, timeoutMs = 25_000) {
    const target = this.turns + n;
    const deadline = performance.now() + timeoutMs;
    while (this.turns < target) {
      if (this.failures.length) throw new Error(this.describeFailures());
      if (performance.now() > deadline) throw new Error(`canary: no completed turn in ${timeoutMs} ms (stuck at ${this.turns})`);
      await sleep(50);
    }
  }

  describeFailures() {
    return this.failures.map((f) => `canary failure: ${f.error} (cases overlapping this turn: ${f.cases.join(', ') || 'none'})`).join('\n');
  }

  async stop() {
    this.running = false;
    clearInterval(this.pinger);
    await this.loop?.catch(() => {});
    await this.device?.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Leak checks

/** What must be back after every case's clients left: the canary's own footprint. */
export function footprint(s) {
  return {
    sessions: s.stats.sessions,
    connections: s.stats.connections,
    openStreams: s.openStreams,
    streamsOpen: s.streamsOpen,
    udpBindings: s.udpBindings,
    tcpSockets: s.resources.TCPSocketWrap ?? 0,
    udpSockets: s.resources.UDPWrap ?? 0,
    timers: s.resources.Timeout ?? 0,
  };
}

/** Counters that must never move (a non-zero value is a product bug). */
export const MUST_STAY_ZERO = ['udp_handler_errors', 'ota_errors', 'pipeline_callback_errors', 'agent_event_errors'];

/**
 * Polls the child until its footprint is back to `base` (timers within `timerSlack`), up to `timeoutMs`.
 * Returns null when clean, else a description of what stayed open.
 */
export async function waitClean(gw, base, { timeoutMs = 2500, timerSlack = 4 } = {}) {
  const deadline = performance.now() + timeoutMs;
  let last;
  for (;;) {
    const s = await gw.state();
    const f = footprint(s);
    const bad = [];
    for (const k of ['sessions', 'connections', 'openStreams', 'streamsOpen', 'udpBindings']) if (f[k] !== base[k]) bad.push(`${k} ${f[k]} (baseline ${base[k]})`);
    if (f.tcpSockets > base.tcpSockets) bad.push(`TCP sockets ${f.tcpSockets} (baseline ${base.tcpSockets})`);
    if (f.udpSockets > base.udpSockets) bad.push(`UDP sockets ${f.udpSockets} (baseline ${base.udpSockets})`);
    if (f.timers > base.timers + timerSlack) bad.push(`timers ${f.timers} (baseline ${base.timers} + ${timerSlack})`);
    last = { state: s, bad };
    if (bad.length === 0) return { clean: true, state: s };
    if (performance.now() > deadline) return { clean: false, state: s, bad };
    await sleep(100);
  }
}

export function counterValue(state, name) {
  return state.counters[name] ?? state.native[name] ?? 0;
}

// ---------------------------------------------------------------------------------------------
// Seeded PRNG (test/helpers/prng.mjs, shared with the vitest files), so a fuzz failure reproduces from its seed.

export { rng } from '../helpers/prng.mjs';
