// One device session as a participant in a LiveKit room: the device's microphone is published as a
// normal microphone track, the agent's audio is subscribed and cut into turns for the downlink, the
// agent's state and transcriptions become device messages, device MCP tools are served over RPC.
// Everything created here (Room, AudioSource, LocalAudioTrack, AudioStream, RPC method, text
// stream handler, timers) is released by close(), whoever ends the session.
import { EventEmitter } from 'node:events';
import {
  AudioSource,
  AudioStream,
  ConnectionState,
  DisconnectReason,
  LocalAudioTrack,
  ParticipantKind,
  Room,
  RoomEvent,
  TrackKind,
  TrackPublishOptions,
  TrackSource,
  type RemoteParticipant,
  type RemoteTrack,
  type RemoteTrackPublication,
  type TextStreamReader,
} from '@livekit/rtc-node';
import { AgentDispatchClient } from 'livekit-server-sdk';
import type { Logger } from 'pino';
import type { AgentEvents, AgentSession, AgentSessionInfo, ListenMode } from '../agent/agent-backend.js';
import { CONNECT_BUCKETS, type LivekitStats } from '../metrics/livekit.js';
import { ATTR_AGENT_NAME, ATTR_AGENT_STATE, parseAgentState, RPC_END_TURN, RPC_START_TURN, TOPIC_CHAT, TOPIC_TRANSCRIPTION, type AgentState } from './conventions.js';
import { DownlinkGate, type DownlinkGateOptions } from './downlink-gate.js';
import { detachRoom, dropFfiLogEvents, releaseFfiHandle, releaseRoomHandles } from './ffi-release.js';
import { deviceToken, dispatchMetadata, participantIdentity, roomName } from './identity.js';
import { McpRelay } from './mcp-relay.js';
import { readTranscription } from './transcripts.js';
import { UplinkCapture } from './uplink-capture.js';

export interface LivekitSessionOptions {
  url: string;
  apiKey: string;
  apiSecret: string;
  roomTemplate: string;
  /** Explicit dispatch of this agent; '' relies on automatic dispatch. */
  agentName: string;
  dispatch: 'token' | 'api';
  agentJoinTimeoutMs: number;
  mcpMethod: string;
  mcpTimeoutMs: number;
  reconnectBufferMs: number;
  /** room.connect + publish must finish within this (ms). Default 15 000. */
  connectTimeoutMs?: number;
  /** RPC method on the agent for device `abort` ('' = none). Default start_turn (LiveKit's manual-turn convention). */
  interruptMethod?: string;
  /** Push-to-talk RPC methods on the agent for `listen` mode manual. */
  turnMethods?: { start: string; end: string };
  /** Agent audio frame size requested from rtc-node (ms). Default AGENT_FRAME_MS (60). */
  agentFrameMs?: number;
  /** Publish the microphone with RED (redundant audio). Default false: see micPublishOptions. */
  micRed?: boolean;
  /** After the agent leaves, the end of its last words still reaches the device (ms). Default 400. */
  agentLeaveGraceMs?: number;
  /**
   * The device's wake word goes to the agent as text on lk.chat once the agent reports a ready state
   * (listening / thinking / speaking); an agent that never sets lk.agent.state gets it this long
   * after it joined (ms). Default 3000.
   */
  wakeWordFallbackMs?: number;
  gate?: Partial<Omit<DownlinkGateOptions, 'audio' | 'end' | 'start' | 'sampleRate'>>;
  probe?: LivekitProbe;
}

/** Instrumentation hooks (benchmarks, tests); called on the hot path, keep them cheap. */
export interface LivekitProbe {
  uplinkCaptured?(sessionId: string, samples: number, pushedAt: number, capturedAt: number, sequence: number | undefined): void;
  agentFrame?(sessionId: string, samples: number, at: number): void;
  /** Agent audio handed to the downlink pipeline (a turn's audio, after the gate). */
  downlinkForwarded?(sessionId: string, samples: number, at: number): void;
}

export function newLivekitStats(): LivekitStats {
  return {
    sessions: 0, rooms: 0, sources: 0, tracks: 0, streams: 0, rpcPending: 0, uplinkDropped: 0, uplinkShed: 0, uplinkShedSpeech: 0, reconnects: 0,
    downlinkDropped: 0, ffiErrors: 0, connects: 0, connectFailures: 0,
    connectSeconds: { buckets: new Array<number>(CONNECT_BUCKETS.length + 1).fill(0), sum: 0, count: 0 },
    endings: {},
  };
}

/**
 * How a session ended: 'device' (closed by the gateway: goodbye, MQTT gone, shutdown),
 * 'agent_left', 'no_agent', 'agent_lost' (did not come back / came back without audio),
 * 'server_<DisconnectReason>' (the server or the connection ended the room), 'connect_failed',
 * 'connect_timeout', 'closed_while_connecting'.
 */
export type EndKind = string;

function observeConnect(stats: LivekitStats, seconds: number): void {
  const h = stats.connectSeconds;
  let i = CONNECT_BUCKETS.findIndex((b) => seconds <= b);
  if (i < 0) i = CONNECT_BUCKETS.length;
  h.buckets[i]!++;
  h.sum += seconds;
  h.count++;
}

const SAMPLE_RATE = 48000;

/**
 * How the device's microphone is published (shared with bench e2e's floor, which must do the same
 * LiveKit work). No RED: rtc-node turns it on unless told, and each packet then carries the
 * previous frames again, for a link (gateway → LiveKit, a server's) that rarely loses one; the
 * device's own Wi-Fi leg is before us and has its own concealment. DTX stated: silence costs few
 * packets.
 */
export function micPublishOptions(red = false): TrackPublishOptions {
  return new TrackPublishOptions({ source: TrackSource.SOURCE_MICROPHONE, dtx: true, red });
}

/**
 * Agent audio frame size read from LiveKit (ms), unless the options say otherwise: one device frame.
 * Every frame is one FFI event (protobuf-decoded, then handed to every listener of rtc-node's
 * process-wide event bus) and one pass through the gate, so 60 ms frames cost a third of 20 ms
 * ones on the main thread (bench e2e --ab frames20); a device frame completes no later, since the
 * downlink encodes whole 60 ms frames anyway.
 */
export const AGENT_FRAME_MS = 60;
/** A requested subscription to the agent's audio that has not arrived after this long is requested again. */
const SUBSCRIBE_RETRY_MS = 3000;

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([
    p.finally(() => clearTimeout(t)),
    new Promise<T>((_, reject) => {
      t = setTimeout(() => reject(Object.assign(new Error(`${what} timed out after ${ms} ms`), { code: 'ERR_LIVEKIT_TIMEOUT' })), ms);
    }),
  ]);
}

// Kept here too for existing importers (bench/e2e/agent.ts).
export { releaseFfiHandle } from './ffi-release.js';

function httpUrl(url: string): string {
  return url.replace(/^ws(s?):\/\//, 'http$1://');
}

export class LivekitSession extends EventEmitter<AgentEvents> implements AgentSession {
  readonly info: AgentSessionInfo;
  readonly roomName: string;
  readonly identity: string;
  readonly #o: LivekitSessionOptions;
  readonly #log: Logger;
  #droppedUnreported = 0;
  #droppedWarnedAt = -Infinity;
  readonly #stats: LivekitStats;
  readonly #room = new Room();
  #source: AudioSource | null = null;
  #track: LocalAudioTrack | null = null;
  #micSid: string | undefined;
  #agent: RemoteParticipant | null = null;
  #agentState: AgentState | null = null;
  #stream: { reader: ReadableStreamDefaultReader<{ data: Int16Array }>; trackSid: string | undefined } | null = null;
  #gate: DownlinkGate;
  #uplink: UplinkCapture;
  #mcp: McpRelay | null = null;
  #agentWait: ReturnType<typeof setTimeout> | null = null;
  #agentJoinedAt = 0;
  #wakeWord: string | null = null;
  #wakeTimer: ReturnType<typeof setTimeout> | null = null;
  /** room.connect() until it settles: close() must not leave a connect that completes later behind. */
  #connecting: Promise<void> | null = null;
  #leaveTimer: ReturnType<typeof setTimeout> | null = null;
  #subscribeRetry: ReturnType<typeof setTimeout> | null = null;
  #agentAudioWait: ReturnType<typeof setTimeout> | null = null;
  #listenMode: ListenMode = 'auto';
  #reconnecting = false;
  #lastReconnectAt = -Infinity;
  #reconnects = 0;
  #everHadAgent = false;
  #ending = false;
  /** open() completed. */
  #opened = false;
  /** Why the session ended, once known (see EndKind); 'device' when the gateway closes it first. */
  #endKind: EndKind | undefined;
  #closed = false;
  #counted = { room: false, source: false, track: false };

  constructor(info: AgentSessionInfo, options: LivekitSessionOptions, stats: LivekitStats) {
    super();
    this.info = info;
    this.#o = options;
    this.#stats = stats;
    this.#log = info.logger.child({ component: 'livekit' });
    this.roomName = roomName(options.roomTemplate, info);
    this.identity = participantIdentity(info);
    this.#gate = new DownlinkGate({
      sampleRate: SAMPLE_RATE,
      ...options.gate,
      audio: options.probe?.downlinkForwarded
        ? (pcm) => {
            options.probe!.downlinkForwarded!(info.sessionId, pcm.length, performance.now());
            this.emit('audio', pcm, SAMPLE_RATE);
          }
        : (pcm) => this.emit('audio', pcm, SAMPLE_RATE),
      start: () => this.emit('state', 'speaking'),
      late: (ms) => this.emit('audio-late', ms),
      discarded: () => {
        this.#stats.downlinkDropped++;
      },
      end: () => {
        this.emit('audio-end');
        if (this.#agentState !== 'speaking') this.emit('state', this.#agentState === 'thinking' ? 'thinking' : 'listening');
      },
    });
    this.#uplink = new UplinkCapture({
      sampleRate: info.inputSampleRate,
      // A stall of this event loop (a GC, a room's connect burst: up to 250 ms seen in a 10-minute
      // admission run on a quiet machine), of the machine, or a Wi-Fi burst from the device hands
      // several frames over at once. 240 ms dropped 74 frames of admitted sessions in that run, and
      // 480 ms dropped 8 in one CI run on a busier machine; 1 s (96 KB at 48 kHz, plus the
      // AudioSource's own 200 ms) holds such a stall, and shedding pauses (below) drains the
      // backlog afterwards, so a stall costs a moment of latency instead of words.
      maxBufferedMs: 1000,
      pausedMaxBufferedMs: options.reconnectBufferMs,
      capture: (frame) => {
        const s = this.#source;
        return s ? s.captureFrame(frame) : Promise.resolve();
      },
      onDrop: (n) => {
        this.#stats.uplinkDropped += n;
        this.#warnDropped(n);
      },
      sourceQueuedMs: () => this.#source?.queuedDuration ?? 0,
      onShed: (n, quiet) => {
        if (quiet) this.#stats.uplinkShed += n;
        else this.#stats.uplinkShedSpeech += n;
      },
      onCaptured: options.probe?.uplinkCaptured
        ? (samples, pushedAt, sequence) => options.probe!.uplinkCaptured!(info.sessionId, samples, pushedAt, performance.now(), sequence)
        : undefined,
      onError: (err) => this.#log.debug({ err }, 'captureFrame failed'),
    });
    stats.sessions++;
  }

  /** Joins the room, publishes the microphone, arranges the agent. Throws (after cleaning up) on failure. */
  async open(): Promise<void> {
    const o = this.#o;
    const hasMcp = this.info.features?.mcp === true;
    const room = this.#room;
    room.registerTextStreamHandler(TOPIC_TRANSCRIPTION, (reader: TextStreamReader, p: { identity: string }) => {
      if (this.#closed) return;
      readTranscription(reader, p.identity, {
        deviceIdentity: this.identity,
        micTrackSid: () => this.#micSid,
        emit: (t) => {
          if (!this.#closed) this.emit('transcript', t);
        },
      }).catch((err: unknown) => this.#log.debug({ err }, 'transcription stream failed'));
    });
    room.on(RoomEvent.ParticipantConnected, (p) => this.#considerAgent(p));
    room.on(RoomEvent.ParticipantDisconnected, (p) => this.#participantLeft(p));
    room.on(RoomEvent.ParticipantAttributesChanged, (_changed, p) => {
      if (this.#agent && p.identity === this.#agent.identity) this.#readAgentState();
      else if (!this.#agent && p.identity !== this.identity) this.#considerAgent(p as RemoteParticipant);
    });
    room.on(RoomEvent.TrackPublished, (pub, p) => this.#maybeSubscribe(pub, p));
    room.on(RoomEvent.TrackSubscribed, (track, pub, p) => this.#trackSubscribed(track, pub, p));
    room.on(RoomEvent.TrackUnsubscribed, (_track, pub) => {
      if (this.#stream && this.#stream.trackSid === pub.sid) this.#stopStream();
    });
    room.on(RoomEvent.Reconnecting, () => this.#onReconnecting());
    room.on(RoomEvent.Reconnected, () => this.#onReconnected());
    room.on(RoomEvent.Disconnected, (reason) => this.#onDisconnected(reason));

    const token = await deviceToken({
      apiKey: o.apiKey,
      apiSecret: o.apiSecret,
      room: this.roomName,
      info: this.info,
      mcpMethod: hasMcp ? o.mcpMethod : null,
      ...(o.dispatch === 'token' && o.agentName ? { dispatchAgentName: o.agentName } : {}),
    });
    const timeout = o.connectTimeoutMs ?? 15_000;
    const t0 = performance.now();
    try {
      // Closed while the token was made (gateway shutdown, the hello race): never connect at all,
      // or the room would join after close() and stay, connected, for good.
      if (this.#closed) throw Object.assign(new Error('session closed while joining the room'), { code: 'ERR_LIVEKIT_CLOSED' });
      this.#stats.rooms++;
      this.#counted.room = true;
      const connecting = room.connect(o.url, token, { autoSubscribe: false, dynacast: false });
      dropFfiLogEvents();  // the FfiClient exists now (see ffi-release.ts)
      this.#connecting = connecting;
      const settled = () => {
        if (this.#connecting === connecting) this.#connecting = null;
      };
      connecting.then(settled, settled);
      await withTimeout(connecting, timeout, `joining LiveKit room ${this.roomName}`);
      if (this.#closed) throw Object.assign(new Error('session closed while joining the room'), { code: 'ERR_LIVEKIT_CLOSED' });
      // A short native queue: captureFrame pushes back beyond it, and UplinkCapture drops the
      // oldest, so a network burst from the device does not turn into standing uplink latency.
      this.#source = new AudioSource(this.info.inputSampleRate, 1, 200);
      this.#stats.sources++;
      this.#counted.source = true;
      this.#track = LocalAudioTrack.createAudioTrack('xiaozhi-microphone', this.#source);
      this.#stats.tracks++;
      this.#counted.track = true;
      const pub = await withTimeout(
        room.localParticipant!.publishTrack(this.#track, micPublishOptions(o.micRed ?? false)),
        timeout,
        'publishing the microphone',
      );
      if (this.#closed) throw Object.assign(new Error('session closed while joining the room'), { code: 'ERR_LIVEKIT_CLOSED' });
      this.#micSid = pub.sid;
      if (hasMcp) {
        this.#mcp = new McpRelay({
          timeoutMs: o.mcpTimeoutMs,
          toDevice: (payload) => {
            if (!this.#closed) this.emit('mcp', payload);
          },
        });
        room.localParticipant!.registerRpcMethod(o.mcpMethod, this.#mcp.handle);
      }
      if (o.dispatch === 'api' && o.agentName) {
        await withTimeout(
          new AgentDispatchClient(httpUrl(o.url), o.apiKey, o.apiSecret).createDispatch(this.roomName, o.agentName, { metadata: dispatchMetadata(this.info) }),
          timeout,
          'creating the agent dispatch',
        );
      }
      if (this.#closed) throw Object.assign(new Error('session closed while joining the room'), { code: 'ERR_LIVEKIT_CLOSED' });
    } catch (err) {
      this.#stats.connectFailures++;
      this.#endKind ??= (err as { code?: string }).code === 'ERR_LIVEKIT_TIMEOUT' ? 'connect_timeout' : 'connect_failed';
      await this.close('failed to join LiveKit');
      throw err;
    }
    this.#opened = true;
    this.#stats.connects++;
    observeConnect(this.#stats, (performance.now() - t0) / 1000);
    for (const p of room.remoteParticipants.values()) this.#considerAgent(p);
    if (!this.#agent) this.#armAgentWait();
    this.#log.info({ room: this.roomName, identity: this.identity, agent: this.#agent?.identity }, 'joined LiveKit room');
  }

  get agentIdentity(): string | undefined {
    return this.#agent?.identity;
  }

  /** Connection losses this session has been through (each one held its microphone audio). */
  get reconnects(): number {
    return this.#reconnects;
  }

  get connectionState(): ConnectionState {
    return this.#room.connectionState;
  }

  /** The agent's audio reaches the downlink (its track is subscribed and read): the device can hear it. */
  get agentAudio(): boolean {
    return this.#stream !== null;
  }

  // --- AgentSession: device → agent ---

  pushAudio(pcm: Int16Array, _sampleRate: number, sequence?: number): void {
    if (this.#closed || !this.#source) return;
    this.#uplink.push(pcm, sequence);
  }

  listenStart(mode: ListenMode): void {
    this.#listenMode = mode;
    // Push-to-talk: the agent (turn_detection="manual") starts a user turn, interrupting itself.
    if (mode === 'manual') {
      this.#gate.interrupt();
      this.#callAgent(this.#o.turnMethods?.start ?? RPC_START_TURN);
    }
  }

  listenStop(): void {
    if (this.#listenMode === 'manual') this.#callAgent(this.#o.turnMethods?.end ?? RPC_END_TURN);
  }

  /**
   * The device woke up on its wake word (listen detect). It goes to the agent as user text on lk.chat,
   * what LiveKit Agents reads as a typed user turn (RoomIO text input: interrupt, then reply), so an
   * off-the-shelf agent answers the wake word like xiaozhi servers do. The device says it right
   * after hello, before the agent has joined or started: it is held (the latest one) until the agent
   * is ready to read it (see wakeWordFallbackMs).
   */
  wakeWord(text: string): void {
    const t = text.trim();
    if (this.#closed || !t) return;
    this.#wakeWord = t;
    this.#flushWakeWord();
  }

  /**
   * Says that microphone audio was lost (the uplink buffer overflowed): at most one line per 10 s
   * per session, with what was lost since the last line and what held the audio back.
   */
  #warnDropped(n: number): void {
    this.#droppedUnreported += n;
    const now = performance.now();
    if (now - this.#droppedWarnedAt < 10_000) return;
    this.#droppedWarnedAt = now;
    const u = this.#uplink;
    this.#log.warn(
      { room: this.roomName, frames: this.#droppedUnreported, bufferedMs: Math.round(u.bufferedMs), sourceQueuedMs: Math.round(this.#source?.queuedDuration ?? 0), captureWaitMs: Math.round(u.captureWaitMs), paused: this.#reconnecting },
      'microphone audio dropped: the LiveKit AudioSource did not take frames in time (uplink buffer full)',
    );
    this.#droppedUnreported = 0;
  }

  #flushWakeWord(): void {
    const agent = this.#agent;
    const lp = this.#room.localParticipant;
    const text = this.#wakeWord;
    if (this.#closed || !text || !agent || !lp) return;
    const ready = this.#agentState !== null && this.#agentState !== 'initializing';
    if (!ready) {
      // Before its session starts an agent has no lk.chat handler yet, and a text stream nobody
      // handles is dropped. Agents that never report a state get it after a grace period.
      if (this.#agentState === null && !this.#wakeTimer) {
        const wait = Math.max(0, this.#agentJoinedAt + (this.#o.wakeWordFallbackMs ?? 3000) - performance.now());
        this.#wakeTimer = setTimeout(() => {
          this.#wakeTimer = null;
          if (this.#agent === agent && this.#agentState === null) this.#sendWakeWord(agent.identity);
          else this.#flushWakeWord();
        }, wait);
      }
      return;
    }
    this.#sendWakeWord(agent.identity);
  }

  #sendWakeWord(agentIdentity: string): void {
    const lp = this.#room.localParticipant;
    const text = this.#wakeWord;
    if (this.#closed || !text || !lp) return;
    this.#wakeWord = null;
    if (this.#wakeTimer) clearTimeout(this.#wakeTimer);
    this.#wakeTimer = null;
    lp.sendText(text, { topic: TOPIC_CHAT, destinationIdentities: [agentIdentity] }).then(
      () => this.#log.debug({ agent: agentIdentity }, 'wake word sent to the agent (lk.chat)'),
      (err: unknown) => this.#log.debug({ err }, 'sending the wake word to the agent failed'),
    );
  }

  interrupt(): void {
    // The session has already dropped what was queued for the device; drop what is still arriving
    // from the agent for this turn, and ask the agent to stop (LiveKit's manual-turn convention:
    // start_turn interrupts). Agents without the method keep talking to nobody until they notice.
    this.#gate.interrupt();
    const m = this.#o.interruptMethod ?? RPC_START_TURN;
    if (m) this.#callAgent(m);
  }

  mcpFromDevice(payload: Record<string, unknown>): void {
    if (this.#mcp?.fromDevice(payload)) return;
    this.#log.debug({ method: payload.method, id: payload.id }, 'device MCP message that answers no agent call: ignored');
  }

  #callAgent(method: string): void {
    const agent = this.#agent;
    const lp = this.#room.localParticipant;
    if (!agent || !lp || this.#closed || !method) return;
    lp.performRpc({ destinationIdentity: agent.identity, method, payload: '', responseTimeout: 5000 }).catch((err: { code?: number; message?: string }) => {
      this.#log.debug({ method, code: err?.code, err: err?.message }, 'agent RPC failed (agent may not support it)');
    });
  }

  // --- the agent ---

  #isAgent(p: RemoteParticipant): boolean {
    if (p.kind !== ParticipantKind.AGENT) return false;
    const name = p.attributes[ATTR_AGENT_NAME];
    return !this.#o.agentName || name === undefined || name === '' || name === this.#o.agentName;
  }

  #considerAgent(p: RemoteParticipant): void {
    if (this.#closed || this.#agent || !this.#isAgent(p)) return;
    const returning = this.#everHadAgent;
    this.#agent = p;
    this.#agentJoinedAt = performance.now();
    this.#everHadAgent = true;
    this.#clearAgentWait();
    if (returning) this.#armAgentAudioWait(p);
    this.#log.info({ agent: p.identity, state: p.attributes[ATTR_AGENT_STATE] }, 'agent joined');
    this.#readAgentState();
    this.#flushWakeWord();
    for (const pub of p.trackPublications.values()) this.#maybeSubscribe(pub, p);
    // Audio an avatar publishes on the agent's behalf counts as the agent's.
    for (const other of this.#room.remoteParticipants.values()) {
      if (other !== p) for (const pub of other.trackPublications.values()) this.#maybeSubscribe(pub, other);
    }
  }

  #speaksForAgent(p: RemoteParticipant): boolean {
    const a = this.#agent;
    return a !== null && (p.identity === a.identity || p.attributes['lk.publish_on_behalf'] === a.identity);
  }

  #maybeSubscribe(pub: RemoteTrackPublication, p: RemoteParticipant): void {
    if (this.#closed || pub.kind !== TrackKind.KIND_AUDIO || !this.#speaksForAgent(p)) return;
    if (pub.subscribed) return;
    pub.setSubscribed(true);
    this.#armSubscribeRetry();
  }

  /**
   * Requests again every audio track of the agent (or published on its behalf) that is not
   * subscribed yet. A request can be lost: after a full reconnect (livekit-server restarted) rtc-node
   * announces the new server session's participants and tracks while it still sends signalling
   * through the old, closed session, until the new one's peer connection is up; an UpdateSubscription
   * sent in that window goes nowhere, and with autoSubscribe off nothing else subscribes: the device
   * would never hear the agent again. Reconnected comes after the switch, so asking there is safe.
   */
  #resubscribeAgentAudio(why: string): void {
    if (this.#closed || !this.#agent) return;
    const again: string[] = [];
    for (const p of this.#room.remoteParticipants.values()) {
      if (!this.#speaksForAgent(p)) continue;
      for (const pub of p.trackPublications.values()) {
        if (pub.kind !== TrackKind.KIND_AUDIO || pub.subscribed) continue;
        pub.setSubscribed(true);
        again.push(pub.sid ?? '?');
      }
    }
    if (again.length === 0) return;
    this.#log.info({ tracks: again, why }, "requested the agent's audio again");
    this.#armSubscribeRetry();
  }

  /** Until the agent's audio is subscribed, asks again now and then (while connected). */
  #armSubscribeRetry(): void {
    if (this.#subscribeRetry || this.#closed) return;
    this.#subscribeRetry = setTimeout(() => {
      this.#subscribeRetry = null;
      // While reconnecting a request would be lost again: Reconnected asks.
      if (this.#room.connectionState === ConnectionState.CONN_CONNECTED) this.#resubscribeAgentAudio(`not subscribed within ${SUBSCRIBE_RETRY_MS} ms`);
    }, SUBSCRIBE_RETRY_MS);
  }

  #clearSubscribeRetry(): void {
    if (this.#subscribeRetry) clearTimeout(this.#subscribeRetry);
    this.#subscribeRetry = null;
  }

  #trackSubscribed(track: RemoteTrack, pub: RemoteTrackPublication, p: RemoteParticipant): void {
    if (this.#closed || track.kind !== TrackKind.KIND_AUDIO || !this.#speaksForAgent(p)) return;
    this.#clearSubscribeRetry();
    this.#clearAgentAudioWait();
    this.#stopStream();
    // AGENT_FRAME_MS frames, not the default 10: every frame is one FFI event that rtc-node hands to
    // every listener of its (process-wide) event bus, so frame count × open rooms is the cost that grows.
    const stream = new AudioStream(track, { sampleRate: SAMPLE_RATE, numChannels: 1, frameSizeMs: this.#o.agentFrameMs ?? AGENT_FRAME_MS });
    const reader = stream.getReader();
    this.#stream = { reader, trackSid: pub.sid };
    this.#stats.streams++;
    void this.#readAgentAudio(reader);
  }

  async #readAgentAudio(reader: ReadableStreamDefaultReader<{ data: Int16Array }>): Promise<void> {
    const probe = this.#o.probe?.agentFrame;
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done || this.#closed || this.#stream?.reader !== reader) break;
        probe?.(this.info.sessionId, value.data.length, performance.now());
        this.#gate.frame(value.data);
      }
    } catch (err) {
      if (!this.#closed) this.#log.debug({ err }, 'agent audio stream ended with an error');
    }
  }

  #stopStream(): void {
    const s = this.#stream;
    if (!s) return;
    this.#stream = null;
    this.#stats.streams--;
    s.reader.cancel().catch(() => {});
  }

  #readAgentState(): void {
    const s = parseAgentState(this.#agent?.attributes[ATTR_AGENT_STATE]);
    if (!s || s === this.#agentState) return;
    this.#agentState = s;
    this.#gate.setAgentState(s);
    if (this.#wakeWord) this.#flushWakeWord();
    if (s === 'thinking') this.emit('state', 'thinking');
    // 'listening' after speaking is reported when the turn's audio tail is out (gate end()).
    else if (s === 'listening' && !this.#gate.inTurn) this.emit('state', 'listening');
  }

  #participantLeft(p: RemoteParticipant): void {
    if (this.#closed || !this.#agent || p.identity !== this.#agent.identity) return;
    this.#agent = null;
    this.#agentState = null;
    this.#clearAgentAudioWait();
    if (this.#wakeTimer) clearTimeout(this.#wakeTimer);
    this.#wakeTimer = null;
    this.#stopStream();
    // Around a reconnection the server may have lost the agent with the room; it can be
    // dispatched again: wait for it as at the start rather than ending the device's session.
    if (this.#reconnecting || performance.now() - this.#lastReconnectAt < 10_000) {
      this.#log.warn({ agent: p.identity }, 'agent lost around a reconnection: waiting for it to come back');
      this.#gate.finish();
      this.#armAgentWait();
      return;
    }
    this.#log.info({ agent: p.identity }, 'agent left the room');
    const speaking = this.#gate.inTurn;
    this.#gate.finish();
    // Its last words were received and are queued for the device: let them out before goodbye.
    const grace = speaking ? (this.#o.agentLeaveGraceMs ?? 400) : 0;
    this.#leaveTimer = setTimeout(() => this.#end('agent left the room', 'agent_left'), grace);
  }

  #armAgentWait(): void {
    this.#clearAgentWait();
    this.#agentWait = setTimeout(() => {
      this.#agentWait = null;
      if (this.#closed || this.#agent) return;
      this.#log.warn({ room: this.roomName, agentName: this.#o.agentName, waitedMs: this.#o.agentJoinTimeoutMs }, 'no agent joined the room');
      this.emit('alert', { status: 'error', message: this.#everHadAgent ? 'voice agent lost' : 'no voice agent available', emotion: 'sad' });
      this.#end(this.#everHadAgent ? 'the agent did not come back' : 'no agent joined', this.#everHadAgent ? 'agent_lost' : 'no_agent');
    }, this.#o.agentJoinTimeoutMs);
  }

  #clearAgentWait(): void {
    if (this.#agentWait) clearTimeout(this.#agentWait);
    this.#agentWait = null;
  }

  /**
   * An agent that came back after a reconnection must bring its audio within the agent timeout.
   * After a server restart an agent can rejoin half-way (in the room, but its audio track never
   * republished and the device never announced to it): the device would stay connected and never
   * hear anything. It ends like an agent that did not come back: alert, then goodbye.
   */
  #armAgentAudioWait(agent: RemoteParticipant): void {
    this.#clearAgentAudioWait();
    this.#agentAudioWait = setTimeout(() => {
      this.#agentAudioWait = null;
      if (this.#closed || this.#agent !== agent || this.#stream) return;
      this.#log.warn({ agent: agent.identity, waitedMs: this.#o.agentJoinTimeoutMs, tracks: agent.trackPublications.size }, 'the agent came back without its audio');
      this.emit('alert', { status: 'error', message: 'voice agent lost', emotion: 'sad' });
      this.#end('the agent came back without its audio', 'agent_lost');
    }, this.#o.agentJoinTimeoutMs);
  }

  #clearAgentAudioWait(): void {
    if (this.#agentAudioWait) clearTimeout(this.#agentAudioWait);
    this.#agentAudioWait = null;
  }

  // --- connection ---

  #onReconnecting(): void {
    if (this.#closed) return;
    this.#reconnecting = true;
    this.#reconnects++;
    this.#stats.reconnects++;
    this.#uplink.pause();
    this.#log.warn({ room: this.roomName }, 'LiveKit connection lost: reconnecting (microphone audio held, bounded)');
  }

  #onReconnected(): void {
    if (this.#closed) return;
    this.#reconnecting = false;
    this.#lastReconnectAt = performance.now();
    this.#uplink.resume();
    this.#log.info({ room: this.roomName, held: Math.round(this.#uplink.bufferedMs) }, 'LiveKit connection restored');
    // A full reconnect (new server session) replaces the remote participants: find the agent again.
    if (this.#agent && !this.#room.remoteParticipants.has(this.#agent.identity)) this.#participantLeft(this.#agent);
    for (const p of this.#room.remoteParticipants.values()) this.#considerAgent(p);
    if (!this.#agent && !this.#agentWait) this.#armAgentWait();
    // The agent (and its track) may have been announced during the reconnection, when subscribing
    // could not work: ask again for what is not subscribed.
    this.#resubscribeAgentAudio('reconnected');
  }

  #onDisconnected(reason: DisconnectReason): void {
    if (this.#closed) return;
    this.#log.warn({ room: this.roomName, reason }, 'disconnected from LiveKit');
    this.#end(`disconnected from LiveKit (reason ${reason})`, `server_${DisconnectReason[reason] ?? reason}`);
  }

  /** The LiveKit side is over: the gateway says goodbye to the device and then calls close(). */
  #end(reason: string, kind: EndKind): void {
    if (this.#closed || this.#ending) return;
    this.#ending = true;
    this.#endKind = kind;
    this.emit('end', reason);
  }

  /**
   * Leaves the room if it is still connected, then releases everything it holds in the FFI, whoever
   * ended it: its listener on the FFI event bus (left behind by rtc-node when the server ended the
   * room, see ffi-release.ts) and the handles of its participants, publications and tracks. Never throws.
   */
  async #leaveRoom(timeoutMs: number): Promise<void> {
    const room = this.#room;
    try {
      if (room.isConnected) await withTimeout(room.disconnect(), timeoutMs, 'leaving the room');
    } catch (err) {
      this.#log.warn({ err }, 'leaving the LiveKit room failed');
    }
    detachRoom(room);
    room.removeAllListeners();
    const gone = releaseRoomHandles(room);
    if (gone > 0) {
      this.#stats.ffiErrors += gone;
      this.#log.warn({ room: this.roomName, handles: gone }, 'LiveKit handles were already gone (the FFI closed the room itself: its connect was handled too late, event loop overloaded?)');
    }
  }

  async close(reason: string): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#endKind ??= this.#opened ? 'device' : 'closed_while_connecting';
    this.#clearAgentWait();
    this.#clearAgentAudioWait();
    this.#clearSubscribeRetry();
    if (this.#leaveTimer) clearTimeout(this.#leaveTimer);
    this.#leaveTimer = null;
    if (this.#wakeTimer) clearTimeout(this.#wakeTimer);
    this.#wakeTimer = null;
    this.#gate.close();
    this.#uplink.close();
    this.#mcp?.close();
    this.#stopStream();
    this.removeAllListeners();
    const room = this.#room;
    try {
      if (this.#mcp && room.localParticipant) room.localParticipant.unregisterRpcMethod(this.#o.mcpMethod);
    } catch {}
    room.unregisterTextStreamHandler(TOPIC_TRANSCRIPTION);
    // The agent's tracks first: leaving the room drops their native handles on the FFI side (and
    // puts placeholders back), racing a finalizer that drops them at the same time.
    for (const p of room.remoteParticipants.values()) {
      for (const pub of p.trackPublications.values()) if (pub.track && !releaseFfiHandle(pub.track)) this.#stats.ffiErrors++;
    }
    const connecting = this.#connecting;
    const countedRoom = this.#counted.room;
    this.#counted.room = false;
    if (connecting) {
      // Joining timed out but is still under way: leave once it is done, whichever way it ends.
      // The room stays counted until then (stats().rooms is what is really alive).
      void connecting
        .catch(() => {})
        .then(() => this.#leaveRoom(5000))
        .catch(() => {})
        .finally(() => {
          if (countedRoom) this.#stats.rooms--;
        });
    } else {
      await this.#leaveRoom(5000);
      if (countedRoom) this.#stats.rooms--;
    }
    if (this.#track) {
      await this.#track.close(false).catch(() => {});
      this.#track = null;
    }
    if (this.#source) {
      await this.#source.close().catch(() => {});
      this.#source = null;
    }
    if (this.#counted.track) this.#stats.tracks--;
    if (this.#counted.source) this.#stats.sources--;
    this.#counted = { room: false, source: false, track: false };
    this.#stats.sessions--;
    const kind = this.#endKind;
    this.#stats.endings[kind] = (this.#stats.endings[kind] ?? 0) + 1;
    this.#log.debug({ reason, kind, room: this.roomName }, 'LiveKit session closed');
  }
}
