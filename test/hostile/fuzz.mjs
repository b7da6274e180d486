// Live fuzzing against a running gateway child (loopback only, bounded in time and rate): records the
// traffic of a real device session (MQTT packets, UDP datagrams, the OTA request), then replays it
// mutated — bit flips, truncation, splicing, length-field edits, duplication, reordering, header field
// extremes, random JSON mutations — from fresh loopback addresses, while the canary keeps talking.
// At the end: cases run, crashes, canary loss, leftovers, must-stay-zero counter moves; all must be 0.
// Used by scripts/fuzz-live.mjs (npm run fuzz:live -- --minutes M) and test/hostile/fuzz-live.test.ts.
import {
  Canary, connectPacket, Device, footprint, ipAllocator, MUST_STAY_ZERO, otaBody, otaHeaders, publishPacket, rawHttp, RawMqtt,
  rng as makeRng, sleep, speechFrames, splitPackets, startGateway, uuidFor, waitClean, nextMac, encrypt,
} from './harness.mjs';

// ---- byte mutations ----------------------------------------------------------------------------

const EXTREMES = [0x00, 0x01, 0x7f, 0x80, 0xfe, 0xff];

export function mutateBytes(buf, r, other) {
  let b = Buffer.from(buf);
  const ops = r.int(1, 3);
  for (let k = 0; k < ops; k++) {
    switch (r.int(0, 8)) {
      case 0: {  // bit flips
        const n = r.int(1, 8);
        for (let i = 0; i < n && b.length; i++) b[r.int(0, b.length - 1)] ^= 1 << r.int(0, 7);
        break;
      }
      case 1:  // extreme bytes
        for (let i = 0, n = r.int(1, 4); i < n && b.length; i++) b[r.int(0, b.length - 1)] = r.pick(EXTREMES);
        break;
      case 2:  // truncation
        b = b.subarray(0, r.int(0, b.length));
        break;
      case 3:  // extension with random bytes
        b = Buffer.concat([b, r.bytes(r.int(1, r.float() < 0.1 ? 3000 : 64))]);
        break;
      case 4: {  // splice with another message
        const o = other ?? b;
        b = Buffer.concat([b.subarray(0, r.int(0, b.length)), o.subarray(r.int(0, o.length))]);
        break;
      }
      case 5: {  // duplicate a slice in place
        const i = r.int(0, b.length);
        const j = r.int(i, Math.min(b.length, i + 200));
        b = Buffer.concat([b.subarray(0, j), b.subarray(i, j), b.subarray(j)]);
        break;
      }
      case 6: {  // delete a slice
        const i = r.int(0, b.length);
        b = Buffer.concat([b.subarray(0, i), b.subarray(Math.min(b.length, i + r.int(1, 16)))]);
        break;
      }
      case 7: {  // 16/32-bit field to an extreme
        if (b.length >= 4) {
          const at = r.int(0, b.length - 2);
          const v = r.pick([0, 1, 0x7fff, 0x8000, 0xffff]);
          b.writeUInt16BE(v, at);
        }
        break;
      }
      default: {  // swap two bytes
        if (b.length >= 2) {
          const i = r.int(0, b.length - 1), j = r.int(0, b.length - 1);
          const t = b[i];
          b[i] = b[j];
          b[j] = t;
        }
      }
    }
  }
  return b;
}

/** MQTT-aware: edits a packet's fixed header (type/flags, remaining length). */
export function mutateMqttHeader(pkt, r) {
  const b = Buffer.from(pkt);
  switch (r.int(0, 4)) {
    case 0: b[0] = (r.int(0, 15) << 4) | (b[0] & 0x0f); return b;  // type
    case 1: b[0] = (b[0] & 0xf0) | r.int(0, 15); return b;  // flags (QoS 3, dup, retain...)
    case 2: if (b.length > 1) b[1] = r.int(0, 255); return b;  // remaining length byte
    case 3: return Buffer.concat([b.subarray(0, 1), Buffer.from([0xff, 0xff, 0xff, r.pick([0x7f, 0xff])]), b.subarray(2)]);  // huge / malformed length
    default: return Buffer.concat([b.subarray(0, 1), Buffer.from([(b[1] ?? 0) | 0x80, 0x00]), b.subarray(2)]);  // non-minimal length encoding
  }
}

/** Sequence-level: duplicate, drop, reorder packets. */
export function mutateSequence(list, r) {
  const out = list.slice();
  const n = r.int(1, 3);
  for (let k = 0; k < n && out.length; k++) {
    const i = r.int(0, out.length - 1);
    switch (r.int(0, 2)) {
      case 0: out.splice(i, 0, out[i]); break;
      case 1: if (out.length > 1) out.splice(i, 1); break;
      default: {
        const j = r.int(0, out.length - 1);
        [out[i], out[j]] = [out[j], out[i]];
      }
    }
  }
  return out;
}

// ---- JSON mutations ----------------------------------------------------------------------------

const WEIRD_VALUES = () => [null, true, false, 0, -1, 1e308, -0, '', 'x'.repeat(2000), [], {}, [[[[]]]], { __proto__: null }, '\u0000', '\ud800', 'hello', 'udp', 3, 16000, 60, '__proto__'];

function randomValue(r, depth = 0) {
  const v = r.pick(WEIRD_VALUES());
  if (depth < 3 && r.float() < 0.15) return { [r.pick(['type', 'state', 'payload', 'a', '__proto__', 'constructor'])]: randomValue(r, depth + 1) };
  return v;
}

export function mutateJson(obj, r) {
  const o = JSON.parse(JSON.stringify(obj));
  const ops = r.int(1, 3);
  for (let k = 0; k < ops; k++) {
    const keys = Object.keys(o);
    switch (r.int(0, 6)) {
      case 0: if (keys.length) delete o[r.pick(keys)]; break;
      case 1: if (keys.length) o[r.pick(keys)] = randomValue(r); break;
      case 2: o[r.pick(['type', 'session_id', 'state', 'mode', 'payload', 'text', 'reason', 'audio_params', 'features', 'transport', 'version', 'x'])] = randomValue(r); break;
      case 3: o.type = r.pick(['hello', 'listen', 'abort', 'mcp', 'goodbye', 'iot', 'HELLO', '', 'tts', 'constructor']); break;
      case 4: {  // nest deeper
        let v = {};
        const d = r.int(20, 40);
        for (let i = 0; i < d; i++) v = { a: v };
        o[r.pick(['payload', 'features', 'x'])] = v;
        break;
      }
      case 5: if (o.audio_params && typeof o.audio_params === 'object') o.audio_params[r.pick(['format', 'sample_rate', 'channels', 'frame_duration'])] = randomValue(r); break;
      default: o.pad = 'p'.repeat(r.int(0, r.float() < 0.1 ? 66_000 : 4000));
    }
  }
  let text = JSON.stringify(o);
  if (r.float() < 0.2) text = mutateBytes(Buffer.from(text), r).toString('latin1');  // then break the text itself
  return text;
}

// ---- the fuzzer ------------------------------------------------------------------------------

const FUZZ_GATEWAY = { connectsPerIpPerMinute: 1_000_000, otaRequestsPerIpPerMinute: 1_000_000, maxConnectionsPerIp: 100_000 };

/**
 * Runs the live fuzzer for `minutes`. Resolves with the summary (never throws for findings: they are
 * in the summary). `log` gets progress lines (default: none).
 */
export async function runFuzz({ minutes = 1, seed = 0x5eed, workers = 3, log = () => {} } = {}) {
  const started = performance.now();
  const deadline = started + minutes * 60_000;
  const r = makeRng(seed);
  const nextIp = ipAllocator(31);
  const summary = { seed, cases: 0, byKind: { mqtt: 0, json: 0, udp: 0, http: 0 }, crashes: 0, canaryLoss: 0, leftovers: 0, errors: 0, details: [], seconds: 0 };
  const gw = await startGateway(FUZZ_GATEWAY);
  const canary = new Canary(gw);
  const open = new Set();
  let base;
  let zeroBefore;
  try {
    await canary.start();
    const frames = await speechFrames();
    // Baseline (timers at their maximum over a canary turn).
    let s = await gw.state();
    let timers = 0;
    for (let t0 = performance.now(); performance.now() - t0 < 1500; await sleep(100)) {
      s = await gw.state();
      timers = Math.max(timers, s.resources.Timeout ?? 0);
    }
    base = { ...footprint(s), timers };
    zeroBefore = Object.fromEntries(MUST_STAY_ZERO.map((k) => [k, s.counters[k] ?? 0]));

    // ---- record a real session ----
    const rec = await Device.connect(gw, { ip: nextIp(), record: true });
    const connectBytes = connectPacket({ clientId: rec.creds.client_id, username: rec.creds.username, password: rec.creds.password, keepalive: rec.creds.keepalive });
    await rec.sayHello();
    const sid = rec.session();
    await rec.publish({ session_id: sid, type: 'listen', state: 'start', mode: 'manual' });
    for (let i = 0; i < 8; i++) {
      await rec.sendUdp(rec.datagram(frames[i]));
      await sleep(60);
    }
    await rec.publish({ session_id: sid, type: 'listen', state: 'stop' });
    await rec.waitFor((m) => m.type === 'tts' && m.state === 'stop', 10_000, 'recording: tts stop');
    await rec.publish({ session_id: sid, type: 'listen', state: 'detect', text: '你好小智' });
    await rec.publish({ session_id: sid, type: 'mcp', payload: { jsonrpc: '2.0', id: 1, result: { tools: [{ name: 'self.get_device_status', description: 'x', inputSchema: { type: 'object', properties: {} } }] } } });
    await rec.publish({ session_id: sid, type: 'abort', reason: 'wake_word_detected' });
    await rec.publish({ session_id: sid, type: 'goodbye' });
    await sleep(100);
    await rec.close();
    const mqttPackets = rec.record.filter((x) => x.kind === 'mqtt').map((x) => x.bytes);
    const publishes = mqttPackets.flatMap((b) => splitPackets(b)[0]).filter((p) => p.type === 3);
    const jsonMessages = publishes.map((p) => JSON.parse(p.body.subarray(2 + p.body.readUInt16BE(0)).toString()));
    const datagrams = rec.record.filter((x) => x.kind === 'udp').map((x) => x.bytes);
    const recMac = nextMac(0x0a);
    const otaRequest = Buffer.from(`POST /xiaozhi/ota/ HTTP/1.1\r\nHost: 127.0.0.1\r\n${Object.entries(otaHeaders(recMac, uuidFor(recMac))).map(([k, v]) => `${k}: ${v}`).join('\r\n')}\r\nContent-Length: ${Buffer.byteLength(otaBody(recMac, uuidFor(recMac)))}\r\nConnection: close\r\n\r\n${otaBody(recMac, uuidFor(recMac))}`);
    log(`recorded: ${publishes.length} PUBLISH, ${datagrams.length} datagrams, OTA request of ${otaRequest.length} bytes`);

    const track = (closeable) => {
      open.add(closeable);
      return closeable;
    };
    const release = async (closeable) => {
      open.delete(closeable);
      try {
        await closeable.close?.({ graceful: false });
        closeable.destroy?.();
      } catch { /* best effort */ }
    };

    // ---- one fuzz case per kind ----
    const cases = {
      // Raw MQTT stream: a real CONNECT (fresh credentials) + recorded PUBLISHes, mutated at byte,
      // header and sequence level.
      async mqtt(cr) {
        const d = track(await Device.connect(gw, { ip: nextIp() }));
        d.mqtt.destroy();  // we only wanted fresh credentials
        const m = track(await RawMqtt.connect(gw.ports.mqtt, d.ip));
        const connect = connectPacket({ clientId: d.creds.client_id, username: d.creds.username, password: d.creds.password, keepalive: 60 });
        let list = [connect, ...publishes.map((p) => publishPacket(d.creds.publish_topic, p.body.subarray(2 + p.body.readUInt16BE(0))))];
        if (cr.float() < 0.5) list = mutateSequence(list, cr);
        const n = cr.int(1, 3);
        for (let k = 0; k < n; k++) {
          const i = cr.float() < 0.2 ? 0 : cr.int(0, list.length - 1);
          list[i] = cr.float() < 0.4 ? mutateMqttHeader(list[i], cr) : mutateBytes(list[i], cr, list[cr.int(0, list.length - 1)]);
        }
        await m.write(Buffer.concat(list));
        await sleep(cr.int(10, 120));
        await release(m);
        await release(d);
        void connectBytes;
      },
      // JSON: a device with a session sends mutated recorded messages (its own session_id mostly).
      async json(cr) {
        const d = track(await Device.connect(gw, { ip: nextIp() }));
        await d.sayHello();
        const n = cr.int(3, 12);
        const burst = [];
        for (let k = 0; k < n; k++) {
          const msg = { ...cr.pick(jsonMessages) };
          if ('session_id' in msg && cr.float() < 0.8) msg.session_id = d.session();
          burst.push(publishPacket(d.creds.publish_topic, cr.float() < 0.85 ? mutateJson(msg, cr) : JSON.stringify(msg)));
        }
        await d.sendMqtt(Buffer.concat(burst));
        await sleep(cr.int(20, 150));
        await release(d);
      },
      // UDP: a bound session receives mutated genuine datagrams (its own key), from its own address
      // and from others; some target the canary's ssrc.
      async udp(cr) {
        const d = track(await Device.connect(gw, { ip: nextIp() }));
        await d.sayHello();
        for (let i = 0; i < 3; i++) await d.sendUdp(d.datagram(frames[i]));
        await sleep(40);
        const genuine = Array.from({ length: 8 }, (_, i) => d.datagram(frames[(i + 3) % frames.length]));
        let list = genuine.map((g) => {
          const x = cr.float();
          if (x < 0.3) return g;
          if (x < 0.55) {  // header field extremes, re-encrypted under the new header
            const h = Buffer.from(g.subarray(0, 16));
            const field = cr.pick([[0, 1], [1, 1], [2, 2], [4, 4], [8, 4], [12, 4]]);
            const v = cr.pick([0, 1, 0xff, 0xffff, 0xffffffff, cr.u32()]);
            if (field[1] === 1) h[field[0]] = v & 0xff;
            else if (field[1] === 2) h.writeUInt16BE(v & 0xffff, field[0]);
            else h.writeUInt32BE(v >>> 0, field[0]);
            const opus = encrypt(d.hello.udp.key, g.subarray(0, 16), g.subarray(16));
            return Buffer.concat([h, encrypt(d.hello.udp.key, h, opus)]);
          }
          return mutateBytes(g, cr, cr.pick(datagrams));
        });
        if (cr.float() < 0.5) list = mutateSequence(list, cr);
        const other = cr.float() < 0.2 ? track(await RawUdp.open(nextIp())) : null;
        for (const b of list) {
          if (other && cr.float() < 0.5) await other.send(b, gw.ports.udp);
          else await d.sendUdp(b);
        }
        if (cr.float() < 0.1) {  // the canary's ssrc from elsewhere
          const sock = track(await RawUdp.open(nextIp()));
          const h = canary.device.header(80, cr.u32());
          for (let i = 0; i < 20; i++) await sock.send(Buffer.concat([h, cr.bytes(80)]), gw.ports.udp);
          await release(sock);
        }
        await sleep(cr.int(20, 80));
        if (other) await release(other);
        await release(d);
      },
      // OTA/HTTP: the recorded request, mutated.
      async http(cr) {
        const bytes = mutateBytes(otaRequest, cr);
        await rawHttp({ port: gw.ports.http, localAddress: nextIp(), chunks: [bytes], timeoutMs: 250 });
      },
    };
    const weights = [['mqtt', 3], ['json', 3], ['udp', 3], ['http', 1]];
    const total = weights.reduce((a, [, w]) => a + w, 0);
    const pickKind = (cr) => {
      let x = cr.float() * total;
      for (const [k, w] of weights) if ((x -= w) < 0) return k;
      return 'mqtt';
    };

    let stop = false;
    const check = () => {
      const p = gw.problem();
      if (p) {
        summary.details.push(p.slice(0, 2000));
        stop = true;
      }
    };
    const worker = async (w) => {
      const cr = makeRng((seed ^ Math.imul(w + 1, 0x9e3779b1)) >>> 0);
      while (!stop && performance.now() < deadline) {
        const kind = pickKind(cr);
        const caseSeed = cr.u32();
        const name = `${kind} #${summary.cases + 1} (worker ${w}, case seed ${caseSeed})`;
        canary.enter(name);
        try {
          await cases[kind](makeRng(caseSeed));
        } catch (err) {
          // A client-side step failing (e.g. the gateway refusing a mutated CONNECT) is not a finding;
          // the gateway's health is judged by the child, the canary and the counters.
          if (!/timed out|refused|closed|ECONNRESET|EPIPE|socket hang up|OTA/.test(err.message)) summary.details.push(`${name}: harness error ${err.message}`);
        } finally {
          canary.leave(name);
        }
        summary.cases++;
        summary.byKind[kind]++;
        check();
        await sleep(15);  // rate bound: at most ~60 cases/s per worker
      }
    };
    let lastLog = performance.now();
    const progress = setInterval(() => {
      if (performance.now() - lastLog > 10_000) {
        lastLog = performance.now();
        log(`${summary.cases} cases, canary ${canary.turns} turns, ${((performance.now() - started) / 1000).toFixed(0)} s`);
      }
    }, 1000);
    await Promise.all(Array.from({ length: workers }, (_, w) => worker(w)));
    clearInterval(progress);
    for (const c of [...open]) await release(c);

    // ---- verdict ----
    check();
    if (!gw.problem()) {
      try {
        await canary.waitTurns(1, 25_000);
      } catch (err) {
        summary.details.push(err.message);
        if (!canary.failures.length) summary.canaryLoss++;
      }
      const clean = await waitClean(gw, base, { timeoutMs: 5000, timerSlack: 4 });
      if (!clean.clean) {
        summary.leftovers = clean.bad.length;
        summary.details.push(`leftovers: ${clean.bad.join('; ')}`);
      }
      for (const k of MUST_STAY_ZERO) {
        const moved = (clean.state.counters[k] ?? 0) - zeroBefore[k];
        if (moved) {
          summary.errors += moved;
          summary.details.push(`${k} moved by ${moved} (must stay 0)`);
        }
      }
    }
    summary.canaryLoss += canary.failures.length;
    if (canary.failures.length) summary.details.push(canary.describeFailures());
  } finally {
    summary.crashes = gw.fatal.length + (gw.exit && !gw.stopping ? 1 : 0);
    await canary.stop().catch(() => {});
    for (const c of [...open]) {
      try {
        await c.close?.({ graceful: false });
        c.destroy?.();
      } catch { /* best effort */ }
    }
    await gw.stop().catch(() => {});
    summary.seconds = (performance.now() - started) / 1000;
  }
  summary.line = `fuzz-live: ${summary.cases} cases in ${summary.seconds.toFixed(1)} s (mqtt ${summary.byKind.mqtt}, json ${summary.byKind.json}, udp ${summary.byKind.udp}, http ${summary.byKind.http}), `
    + `crashes ${summary.crashes}, canary loss ${summary.canaryLoss}, leftovers ${summary.leftovers}, must-stay-zero counter moves ${summary.errors}, seed ${seed}`;
  summary.ok = summary.crashes === 0 && summary.canaryLoss === 0 && summary.leftovers === 0 && summary.errors === 0;
  return summary;
}

/** A bare UDP socket on a chosen loopback address. */
class RawUdp {
  static async open(ip) {
    const { default: dgram } = await import('node:dgram');
    const u = new RawUdp();
    u.socket = dgram.createSocket('udp4');
    u.socket.on('error', () => {});
    await new Promise((r) => u.socket.bind(0, ip, () => r()));
    return u;
  }

  send(b, port) {
    return new Promise((r) => this.socket.send(b, port, '127.0.0.1', () => r()));
  }

  close() {
    try {
      this.socket.close();
    } catch { /* closed */ }
  }
}
