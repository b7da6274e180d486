// One device's life on the gateway: its MQTT connection (DeviceConnection) and, after each hello, an
// audio session (AudioSession) with fresh keys, a pair of pipeline streams, a UDP binding and an
// agent session behind it. Everything a session holds is released when it ends, whatever ends it:
// goodbye either way, a new hello, a takeover by a second connection, UDP silence, the device
// vanishing, or gateway shutdown.
//
// The connection is one state machine: no session → session (agent attaching) → session (agent
// attached) → no session. Every control message is handled to completion, synchronously, in the
// order it arrived, so no interleaving of messages can leave anything behind:
// - hello ends the current session at once (streams, UDP binding, pacer state released before the
//   handler returns; its agent is closed in the background) and opens the new one. A hello cancels
//   an agent that is still attaching: the attach finds its session closed and closes the agent.
// - goodbye ends the current session the same way.
// - listen, abort and mcp act on the current session at once. Before the agent is attached, listen
//   state and the wake word are remembered and handed over on attach; abort and mcp find no agent
//   and only clear the downlink.
// - nothing waits on the network: the only asynchronous step, the agent's attach, is cancel-safe.
import { randomBytes, randomUUID } from 'node:crypto';
import type { Logger } from 'pino';
import type { AgentBackend, AgentSession, ListenMode } from '../agent/agent-backend.js';
import type { AudioPipeline, DownlinkStream, UplinkStream } from '../native/pipeline.js';
import { normalizeIp } from '../net/address.js';
import { LogBudget } from '../net/log-budget.js';
import { TokenBucket } from '../net/rate-limit.js';
import type { DownlinkPacer, PacedSession } from './downlink-pacer.js';
import type { RefusalReason } from './admission.js';
import type { DeviceIdentity } from './identity.js';
import { helloReply, MessageError, parseDeviceMessage, type Hello } from './messages.js';
import type { UdpAudioServer, UdpPeer } from './udp-server.js';

export type { DeviceIdentity } from './identity.js';

export interface SessionConfig {
  /** What the hello reply tells devices to reach (public host / port of the UDP socket). */
  publicHost: string;
  publicUdpPort: number;
  /** Close the audio channel after this much UDP silence (ms). Default 120 000. */
  udpTimeoutMs: number;
  /** Accept UDP only from the IP of the device's MQTT connection (PROTOCOL.md §3.2). */
  udpRequireMqttIp: boolean;
  /** Per-session uplink datagrams per second (token bucket, burst 2 s) before decryption. */
  uplinkPacketsPerSecond: number;
  /** Hellos per connection per minute (each opens streams and an agent session); burst = the same number. */
  hellosPerMinute: number;
  /** Log lines per connection per minute about its rejected input; then one summary line. */
  logLinesPerMinute: number;
  /** Downlink sample rate and frame duration announced in the hello reply. */
  downlinkSampleRate: number;
  downlinkFrameMs: number;
  /** Rate of the PCM the agent hands us (and of the uplink PCM we hand it). */
  agentSampleRate: number;
}

export type GatewayCounter =
  | 'hello_accepted'
  | 'hello_rejected'
  | 'hello_rate_limited'
  | 'message_invalid'
  | 'message_ignored'
  | 'message_wrong_session'
  | 'message_without_session'
  | 'udp_rate_limited'
  | 'udp_address_rejected'
  | 'udp_rebound'
  | 'udp_timeout'
  | 'pacer_backlog'
  | 'pacer_send_failed'
  | 'downlink_after_abort'
  | 'agent_audio_wrong_rate'
  | 'agent_errors'
  | 'agent_event_errors'
  | 'agent_audio_invalid'
  | 'sessions_closed';

export interface SessionDeps {
  config: SessionConfig;
  pipeline: AudioPipeline;
  pacer: DownlinkPacer;
  udp: UdpAudioServer;
  agents: AgentBackend;
  /** Delivers a control message to the device's MQTT connection. */
  send(clientId: string, message: Record<string, unknown>): boolean;
  count(counter: GatewayCounter, n?: number): void;
  logger: Logger;
  now(): number;
  /** The device's firmware version as last seen at OTA (the hello does not carry it). */
  firmwareVersion?(mac: string): string | undefined;
  /** Admission control: whether a new session may open now (counts its refusals). */
  admit?(): { ok: true } | { ok: false; reason: RefusalReason };
  /** Session lifecycle for an embedding application (src/embed.ts). */
  onSession?(event: 'opened' | 'closed', session: SessionSummary, reason?: string): void;
}

/** What an embedding application learns about a session. */
export interface SessionSummary {
  /** Device MAC, lower case with colons. */
  deviceId: string;
  clientId: string;
  sessionId: string;
}

export type SessionState = 'opening' | 'idle' | 'listening' | 'speaking' | 'closed';

/**
 * An address that sent datagrams for this session but has not proven itself. Its datagrams are only
 * probed (validated without being used) until PROOF_PACKETS consecutive ones are genuine-looking with
 * increasing sequences; then it binds and the held datagrams are decoded. Any failed probe resets
 * the count, so a forger sending random payloads would need p^3 luck (p = chance that random bytes
 * decrypt to a well-formed 60 ms mono Opus packet), not 1 success in 1/p tries.
 */
interface Candidate {
  peer: UdpPeer;
  valid: number;
  lastSequence: number;
  held: Buffer[];
}

const PROOF_PACKETS = 3;
/** How long after `listen stop` trailing uplink datagrams are still expected. */
const LISTEN_STOP_GRACE_MS = 120;
const MAX_HELD = 8;
const MAX_CANDIDATES = 8;

export class AudioSession implements PacedSession {
  readonly sessionId = randomUUID();
  readonly key = randomBytes(16);
  readonly nonce = Buffer.alloc(16);
  readonly ssrc: number;
  readonly logger: Logger;
  state: SessionState = 'opening';
  lastUdpAt: number;
  #uplink: UplinkStream;
  #downlink: DownlinkStream;
  #agent: AgentSession | null = null;
  #bound: UdpPeer | null = null;
  #candidates = new Map<number, Candidate>();
  #nextTag = 1;
  /** Per-session uplink packet rate, checked before any decryption (after the address check). */
  #limiter: TokenBucket;
  #wrongRateLogged = false;
  #listenMode: ListenMode = 'auto';
  /** A wake word (listen detect) said before the agent was attached: handed over on attach. */
  #wakeWord: string | null = null;
  #listenEpoch = 0;
  /** From an abort until the agent's next turn (its 'speaking' state): no audio should leave (see abort()). */
  #aborted = false;
  /** Downlink datagrams sent in that window (0 when barge-in works; logged when the session closes). */
  #datagramsAfterAbort = 0;
  readonly #deps: SessionDeps;
  readonly #connection: DeviceConnection;
  readonly #onDatagram = (datagram: Buffer, from: UdpPeer): void => this.#receive(datagram, from);

  constructor(connection: DeviceConnection, hello: Hello, deps: SessionDeps) {
    this.#deps = deps;
    this.#connection = connection;
    this.ssrc = deps.udp.allocateSsrc();
    // Conventional nonce: 01 00 0000 <ssrc> 00000000 00000000 (flags 0: downlink flags differ).
    this.nonce[0] = 0x01;
    this.nonce.writeUInt32BE(this.ssrc, 4);
    this.logger = connection.logger.child({ sessionId: this.sessionId });
    this.lastUdpAt = deps.now();
    this.#limiter = new TokenBucket(deps.config.uplinkPacketsPerSecond, deps.config.uplinkPacketsPerSecond * 2, deps.now());
    this.#uplink = deps.pipeline.createUplink({
      key: this.key,
      nonce: this.nonce,
      decodeRate: hello.audio_params.sample_rate,
      frameMs: hello.audio_params.frame_duration,
      outputRate: deps.config.agentSampleRate,
      onFrame: (f) => {
        this.lastUdpAt = deps.now();
        this.#agent?.pushAudio(f.pcm, f.sampleRate, f.sequence);
      },
      onProbe: (p) => this.#probed(p.tag, p.valid, p.sequence),
      // Only if no new `listen start` came in between.
      onDrained: (epoch) => {
        if (epoch === this.#listenEpoch) this.#agent?.listenStop();
      },
    });
    this.#downlink = deps.pipeline.createDownlink({
      key: this.key,
      nonce: this.nonce,
      inputRate: deps.config.agentSampleRate,
      deviceRate: deps.config.downlinkSampleRate,
      frameMs: deps.config.downlinkFrameMs,
      onPacket: (p) => deps.pacer.enqueue(this, p.datagram),
      onTurnEnd: () => deps.pacer.endTurn(this),
    });
    deps.udp.register(this.ssrc, this.#onDatagram);
  }

  summary(): SessionSummary {
    return { deviceId: this.#connection.identity.mac, clientId: this.#connection.identity.clientId, sessionId: this.sessionId };
  }

  helloReply(): Record<string, unknown> {
    return helloReply({
      sessionId: this.sessionId,
      udpHost: this.#deps.config.publicHost,
      udpPort: this.#deps.config.publicUdpPort,
      key: this.key,
      nonce: this.nonce,
      sampleRate: this.#deps.config.downlinkSampleRate,
      frameDuration: this.#deps.config.downlinkFrameMs,
    });
  }

  get udpBound(): boolean {
    return this.#bound !== null;
  }

  get boundPeer(): UdpPeer | null {
    return this.#bound;
  }

  /** Connects the agent after the hello reply went out (the device waits only 10 s for it). */
  async attachAgent(hello: Hello): Promise<void> {
    const firmwareVersion = this.#deps.firmwareVersion?.(this.#connection.identity.mac);
    const agent = await this.#deps.agents.createSession({
      deviceId: this.#connection.identity.mac,
      clientId: this.#connection.identity.clientId,
      sessionId: this.sessionId,
      ...(firmwareVersion ? { firmwareVersion } : {}),
      features: hello.features ?? {},
      inputSampleRate: this.#deps.config.agentSampleRate,
      logger: this.logger,
    });
    if (this.state === 'closed') {
      await agent.close('session closed while the agent was starting');
      return;
    }
    this.#agent = agent;
    // The device may have started listening (and said its wake word) while the agent was connecting.
    if (this.#wakeWord !== null) agent.wakeWord(this.#wakeWord);
    this.#wakeWord = null;
    if (this.state === 'listening') agent.listenStart(this.#listenMode);
    // Agent events are input too (a remote agent's data, a custom backend's bugs): a listener that
    // fails drops that event, counted, and never throws back into the agent's emitter.
    const on = <A extends unknown[]>(event: string, listener: (...args: A) => void): void => {
      (agent.on as (e: string, l: (...args: A) => void) => void)(event, (...args: A) => {
        try {
          listener(...args);
        } catch (err) {
          this.#deps.count('agent_event_errors');
          this.#connection.log.warn({ event, err: (err as Error).message }, 'agent event dropped: its handler failed');
        }
      });
    };
    on('audio', (pcm: Int16Array | Float32Array, rate: number) => {
      if (rate !== this.#deps.config.agentSampleRate) {
        this.#deps.count('agent_audio_wrong_rate');
        if (!this.#wrongRateLogged) this.logger.error({ rate, expected: this.#deps.config.agentSampleRate }, 'agent audio at an unexpected sample rate dropped');
        this.#wrongRateLogged = true;
        return;
      }
      if (!(pcm instanceof Int16Array || pcm instanceof Float32Array) || pcm.length === 0) {
        this.#deps.count('agent_audio_invalid');
        return;
      }
      if (this.state !== 'closed') this.#downlink.push(pcm);
    });
    on('audio-late', (ms: number) => {
      if (this.state !== 'closed' && Number.isFinite(ms) && ms > 0) this.#deps.pacer.catchUp(this, ms);
    });
    on('audio-end', () => {
      if (this.state !== 'closed') this.#downlink.flush();
    });
    on('state', (s: string) => {
      // The agent's next turn: its audio is no longer the rest of the interrupted one.
      if (s === 'speaking') this.#aborted = false;
      if (s === 'thinking') this.send({ type: 'llm', emotion: 'thinking' });
      if (s === 'speaking' || s === 'listening') this.state = s;
    });
    on('transcript', (t: { final: boolean; role: string; text: string }) => {
      if (!t.final) return;
      if (t.role === 'user') this.send({ type: 'stt', text: t.text });
      else this.send({ type: 'tts', state: 'sentence_start', text: t.text });
    });
    on('mcp', (payload: Record<string, unknown>) => this.send({ type: 'mcp', payload }));
    on('alert', (a: { status: string; message: string; emotion?: string }) => this.send({ type: 'alert', status: a.status, message: a.message, emotion: a.emotion ?? 'neutral' }));
    on('end', (reason: string) => {
      if (this.state !== 'closed') void this.#connection.endSession(this, `agent ended: ${reason}`, true);
    });
    if (this.state === 'opening') this.state = 'idle';
  }

  send(message: Record<string, unknown>): boolean {
    return this.#deps.send(this.#connection.identity.clientId, { ...message, session_id: this.sessionId });
  }

  // --- device messages ---
  listen(state: 'start' | 'stop' | 'detect', mode: ListenMode | undefined, text: string | undefined): void {
    if (state === 'start') {
      this.state = 'listening';
      this.#listenEpoch = (this.#listenEpoch + 1) >>> 0;
      this.#listenMode = mode ?? 'auto';
      this.#agent?.listenStart(this.#listenMode);
    } else if (state === 'stop') {
      // The last datagrams of the utterance may still be on the network (UDP races the MQTT
      // message) or in the pipeline: the agent hears "stop" only after they have been decoded.
      const epoch = this.#listenEpoch;
      const timer = setTimeout(() => {
        if (this.state !== 'closed') this.#uplink.drain(epoch);
      }, LISTEN_STOP_GRACE_MS);
      timer.unref();
    } else if (this.#agent) {
      this.#agent.wakeWord(text ?? '');
    } else {
      this.#wakeWord = text ?? '';
    }
  }

  /**
   * Barge-in. Nothing more of the interrupted turn leaves for the device after this returns: the
   * pacer forgets what it held (and sends `tts stop` if the turn was playing), the downlink stream
   * discards every datagram produced before this call (its epoch), and the agent stops (the echo
   * agent at once; the LiveKit bridge's gate drops the rest of the turn). Datagrams handed to the
   * socket before the abort are already on their way and not counted; anything sent after it and
   * before the agent's next turn is (downlink_after_abort).
   */
  abort(): void {
    this.#deps.pacer.clear(this);
    this.#downlink.abort();
    this.#aborted = true;
    this.#agent?.interrupt();
  }

  mcpFromDevice(payload: Record<string, unknown>): void {
    this.#agent?.mcpFromDevice(payload);
  }

  // --- UDP ---
  #receive(datagram: Buffer, from: UdpPeer): void {
    const deps = this.#deps;
    // The address check comes first: a spoofed flood with a known ssrc from elsewhere must not
    // spend the real device's rate budget.
    if (deps.config.udpRequireMqttIp && normalizeIp(from.address) !== normalizeIp(this.#connection.identity.remoteAddress)) {
      deps.count('udp_address_rejected');
      return;
    }
    if (!this.#limiter.take(deps.now())) {
      deps.count('udp_rate_limited');
      return;
    }
    const b = this.#bound;
    if (b && b.address === from.address && b.port === from.port) {
      this.#uplink.push(datagram, 0);
      return;
    }
    // A new address must prove itself (PROTOCOL.md §3.2): its datagrams are probed, not used, until
    // PROOF_PACKETS consecutive ones check out (see Candidate).
    let tag = 0;
    for (const [t, c] of this.#candidates) if (c.peer.address === from.address && c.peer.port === from.port) tag = t;
    if (tag === 0) {
      if (this.#candidates.size >= MAX_CANDIDATES) this.#candidates.delete(this.#candidates.keys().next().value!);
      tag = this.#nextTag++;
      this.#candidates.set(tag, { peer: { address: from.address, port: from.port }, valid: 0, lastSequence: 0, held: [] });
    }
    const c = this.#candidates.get(tag)!;
    c.held.push(datagram);
    if (c.held.length > MAX_HELD) c.held.shift();
    this.#uplink.probe(datagram, tag);
  }

  #probed(tag: number, valid: boolean, sequence: number): void {
    const c = this.#candidates.get(tag);
    if (!c || this.state === 'closed') return;
    if (!valid) {
      c.valid = 0;
      return;
    }
    c.valid = sequence > c.lastSequence ? c.valid + 1 : 1;
    c.lastSequence = sequence;
    if (c.valid < PROOF_PACKETS) return;
    if (this.#bound) this.#deps.count('udp_rebound');
    this.logger.info({ peer: c.peer, rebind: this.#bound !== null }, this.#bound ? 'udp address rebound' : 'udp address bound');
    this.#bound = c.peer;
    this.#candidates.clear();
    // The datagrams that proved the address are audio too: decode them now, in order.
    for (const d of c.held) this.#uplink.push(d, 0);
  }

  sendDatagram(datagram: Buffer): boolean {
    if (!this.#bound || this.state === 'closed') return false;
    this.#deps.udp.send(datagram, this.#bound);
    if (this.#aborted) {
      this.#datagramsAfterAbort++;
      this.#deps.count('downlink_after_abort');
    }
    return true;
  }

  sendTtsStart(): void {
    this.state = 'speaking';
    this.send({ type: 'tts', state: 'start' });
  }

  sendTtsStop(): void {
    if (this.state === 'speaking') this.state = 'idle';
    this.send({ type: 'tts', state: 'stop' });
  }

  countDrop(reason: 'pacer_backlog' | 'pacer_send_failed'): void {
    this.#deps.count(reason);
  }

  /**
   * Releases everything local before it returns (UDP binding, pacer state, native streams); the
   * returned promise settles when the agent session has closed too, and never rejects. Idempotent.
   */
  close(reason: string): Promise<void> {
    if (this.state === 'closed') return Promise.resolve();
    this.state = 'closed';
    this.#deps.udp.unregister(this.ssrc, this.#onDatagram);
    this.#deps.pacer.remove(this);
    this.#candidates.clear();
    if (!this.#uplink.closed) this.#uplink.close();
    if (!this.#downlink.closed) this.#downlink.close();
    const agent = this.#agent;
    this.#agent = null;
    this.#deps.count('sessions_closed');
    this.logger.info({ reason, ...(this.#datagramsAfterAbort > 0 ? { datagramsAfterAbort: this.#datagramsAfterAbort } : {}) }, 'audio session closed');
    this.#deps.onSession?.('closed', this.summary(), reason);
    if (!agent) return Promise.resolve();
    return (async () => {
      try {
        await agent.close(reason);
      } catch (err) {
        this.#deps.count('agent_errors');
        this.logger.warn({ err }, 'agent session close failed');
      }
    })();
  }
}

/** A device's MQTT connection and its current audio session (the state machine described above). */
export class DeviceConnection {
  readonly identity: DeviceIdentity;
  readonly logger: Logger;
  /** Lines about this device's rejected input go through its budget: a device cannot flood the log. */
  readonly log: LogBudget;
  session: AudioSession | null = null;
  readonly #deps: SessionDeps;
  readonly #hellos: TokenBucket;
  #closed = false;

  constructor(identity: DeviceIdentity, deps: SessionDeps) {
    this.identity = identity;
    this.#deps = deps;
    this.logger = deps.logger.child({ deviceId: identity.mac, clientId: identity.clientId });
    this.log = new LogBudget(this.logger, deps.config.logLinesPerMinute, deps.now);
    this.#hellos = new TokenBucket(deps.config.hellosPerMinute / 60, deps.config.hellosPerMinute, deps.now());
  }

  onMessage(payload: Buffer): void {
    if (this.#closed) return;
    let parsed;
    try {
      parsed = parseDeviceMessage(payload);
    } catch (err) {
      const code = (err as MessageError).code;
      this.#deps.count(code === 'ERR_MESSAGE_INVALID' && isHello(payload) ? 'hello_rejected' : 'message_invalid');
      this.log.warn({ code, reason: (err as Error).message }, 'device message rejected');
      return;
    }
    if (parsed.kind === 'hello') {
      if (!this.#hellos.take(this.#deps.now())) {
        // No reply: the device shows "server timeout" and tries again later, which is the back-off we want.
        this.#deps.count('hello_rate_limited');
        this.log.warn({ hellosPerMinute: this.#deps.config.hellosPerMinute }, 'hello dropped: over the per-connection hello rate');
        return;
      }
      this.#startSession(parsed.message);
      return;
    }
    if (parsed.kind === 'ignored') {
      this.#deps.count('message_ignored');
      this.logger.debug({ type: parsed.type }, 'device message type ignored');
      return;
    }
    const s = this.session;
    if (!s) {
      this.#deps.count('message_without_session');
      this.logger.debug({ type: parsed.kind }, 'message before a hello: ignored');
      return;
    }
    const sid = parsed.message.session_id;
    if (sid !== undefined && sid !== s.sessionId) {
      this.#deps.count('message_wrong_session');
      this.log.warn({ type: parsed.kind, got: sid.slice(0, 64) }, 'message for another session_id ignored');
      return;
    }
    switch (parsed.kind) {
      case 'listen':
        s.listen(parsed.message.state, parsed.message.mode, parsed.message.text);
        return;
      case 'abort':
        s.abort();
        return;
      case 'mcp':
        s.mcpFromDevice(parsed.message.payload);
        return;
      case 'goodbye':
        // The device closed its audio channel; it expects no reply.
        void this.endSession(s, 'device goodbye', false);
        return;
    }
  }

  #startSession(hello: Hello): void {
    // Every hello installs new keys: the old session's streams, UDP binding and pacer state are
    // released right here, before the new session exists (its agent closes in the background).
    if (this.session) void this.endSession(this.session, 'new hello', false);
    const admitted = this.#deps.admit?.() ?? { ok: true };
    if (!admitted.ok) {
      this.#refuse(admitted.reason);
      return;
    }
    let session: AudioSession;
    try {
      session = new AudioSession(this, hello, this.#deps);
    } catch (err) {
      this.#deps.count('hello_rejected');
      this.logger.error({ err }, 'could not open an audio session');
      return;
    }
    this.session = session;
    this.#deps.count('hello_accepted');
    this.#deps.send(this.identity.clientId, session.helloReply());
    session.logger.info({ ssrc: session.ssrc, audio: hello.audio_params }, 'audio session opened');
    this.#deps.onSession?.('opened', session.summary());
    void this.#attach(session, hello);
  }

  /**
   * "Gateway busy": the device gets a hello reply (it waits 10 s for one and shows "server
   * timeout" otherwise), then an alert saying why and a goodbye for that session. Nothing is opened
   * for it: no streams, no UDP registration, no agent.
   */
  #refuse(reason: RefusalReason): void {
    const sessionId = randomUUID();
    const nonce = Buffer.alloc(16);
    nonce[0] = 0x01;
    randomBytes(4).copy(nonce, 4);
    const c = this.#deps.config;
    this.#deps.send(this.identity.clientId, helloReply({
      sessionId, udpHost: c.publicHost, udpPort: c.publicUdpPort, key: randomBytes(16), nonce,
      sampleRate: c.downlinkSampleRate, frameDuration: c.downlinkFrameMs,
    }));
    this.#deps.send(this.identity.clientId, { type: 'alert', status: 'busy', message: 'gateway busy, please try again in a moment', emotion: 'sad', session_id: sessionId });
    this.#deps.send(this.identity.clientId, { type: 'goodbye', session_id: sessionId });
    this.log.warn({ reason }, 'hello refused: gateway busy (admission control)');
  }

  async #attach(session: AudioSession, hello: Hello): Promise<void> {
    try {
      await session.attachAgent(hello);
    } catch (err) {
      this.#deps.count('agent_errors');
      session.logger.error({ err }, 'agent session failed to start');
      if (session.state === 'closed') return;  // a newer hello or a goodbye got there first
      session.send({ type: 'alert', status: 'error', message: 'voice agent unavailable', emotion: 'sad' });
      await this.endSession(session, 'agent failed to start', true);
    }
  }

  /**
   * Ends an audio session; with `sayGoodbye` the device is told (server goodbye with session_id).
   * Everything local is released before this returns; the promise settles once the agent is closed.
   */
  endSession(session: AudioSession, reason: string, sayGoodbye: boolean): Promise<void> {
    if (this.session === session) this.session = null;
    if (session.state === 'closed') return Promise.resolve();
    if (sayGoodbye) session.send({ type: 'goodbye' });
    return session.close(reason);
  }

  /** The MQTT connection is gone (disconnect, keepalive timeout, takeover): release everything. */
  async close(reason: string): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.log.close();
    if (this.session) await this.endSession(this.session, reason, false);
  }

  /** Gateway shutdown or UDP silence: goodbye to the device, then release. */
  async goodbye(reason: string): Promise<void> {
    if (this.session) await this.endSession(this.session, reason, true);
  }
}

function isHello(payload: Buffer): boolean {
  return payload.includes('"hello"');
}
