// A stand-in for a LiveKit Agents voice agent, written with @livekit/rtc-node only:
// - TestAgentWorker registers with livekit-server over the agent worker protocol (/agent websocket,
//   protobuf WorkerMessage/ServerMessage, as LiveKit Agents workers do) under an agent name, accepts
//   the jobs the server dispatches, and joins the room with the token from the job assignment (so
//   the participant is of kind AGENT and carries lk.agent_name, exactly like a real agent);
// - TestAgent behaves like an AgentSession in a room: `lk.agent.state` attribute, transcriptions on
//   `lk.transcription` (user: one stream per update, final flagged; agent: one delta stream per
//   segment), speaks by publishing audio, listens to the device's microphone, registers the
//   manual-turn RPCs (start_turn interrupts), and calls the device's MCP tool over RPC.
import {
  AudioFrame,
  AudioSource,
  AudioStream,
  LocalAudioTrack,
  ParticipantKind,
  Room,
  type RemoteTrackPublication,
  RoomEvent,
  TrackKind,
  TrackPublishOptions,
  TrackSource,
  type RemoteParticipant,
} from '@livekit/rtc-node';
import {
  AvailabilityResponse,
  JobStatus,
  JobType,
  RegisterWorkerRequest,
  ServerMessage,
  UpdateJobStatus,
  WorkerMessage,
  WorkerPing,
} from '@livekit/protocol';
import { AccessToken } from 'livekit-server-sdk';
import WebSocket from 'ws';
import { concat } from './signal.js';

export type AgentState = 'initializing' | 'listening' | 'thinking' | 'speaking';

export interface WorkerOptions {
  url: string;
  apiKey: string;
  apiSecret: string;
  agentName: string;
  /** Called for every agent that joined a room (after it set its initial state). */
  onAgent?(agent: TestAgent): void;
}

export class TestAgentWorker {
  readonly agents: TestAgent[] = [];
  jobs = 0;
  #ws: WebSocket | null = null;
  #stopped = false;
  #ping: ReturnType<typeof setInterval> | null = null;
  #waiters: Array<(a: TestAgent) => void> = [];
  #registered: Promise<void> = Promise.resolve();
  readonly #o: WorkerOptions;

  private constructor(o: WorkerOptions) {
    this.#o = o;
  }

  static async start(o: WorkerOptions): Promise<TestAgentWorker> {
    const w = new TestAgentWorker(o);
    await w.#connect();
    return w;
  }

  /** Resolves when the server has (re)registered this worker. */
  get registered(): Promise<void> {
    return this.#registered;
  }

  async #connect(): Promise<void> {
    const at = new AccessToken(this.#o.apiKey, this.#o.apiSecret, { identity: `worker-${this.#o.agentName}` });
    at.addGrant({ agent: true });
    const token = await at.toJwt();
    const ws = new WebSocket(`${this.#o.url.replace(/^http/, 'ws')}/agent?protocol=1`, { headers: { Authorization: `Bearer ${token}` } });
    this.#ws = ws;
    ws.binaryType = 'nodebuffer';
    this.#registered = new Promise<void>((resolve, reject) => {
      ws.once('error', reject);
      ws.on('message', (data: Buffer) => {
        const msg = ServerMessage.fromBinary(new Uint8Array(data));
        if (msg.message.case === 'register') resolve();
        void this.#onServerMessage(msg, ws);
      });
      ws.once('open', () => {
        this.#send(ws, new WorkerMessage({ message: { case: 'register', value: new RegisterWorkerRequest({ type: JobType.JT_ROOM, agentName: this.#o.agentName, version: 'test' }) } }));
      });
    });
    ws.on('close', () => {
      if (this.#ws !== ws) return;
      if (this.#ping) clearInterval(this.#ping);
      this.#ping = null;
      // A worker reconnects when the server goes away (e.g. restarts), like LiveKit Agents workers.
      if (!this.#stopped && !this.#reconnecting) setTimeout(() => void this.#reconnect(), 300);
    });
    ws.on('error', () => {});
    await this.#registered;
    this.#ping = setInterval(() => this.#send(ws, new WorkerMessage({ message: { case: 'ping', value: new WorkerPing({ timestamp: BigInt(Date.now()) }) } })), 5000);
  }

  #reconnecting = false;

  async #reconnect(): Promise<void> {
    if (this.#reconnecting) return;
    this.#reconnecting = true;
    try {
      while (!this.#stopped) {
        try {
          await this.#connect();
          return;
        } catch {
          this.#ws?.terminate();
          await new Promise((r) => setTimeout(r, 300));
        }
      }
    } finally {
      this.#reconnecting = false;
    }
  }

  // Replies go on the connection the request came from (a worker may briefly have two).
  #send(ws: WebSocket, m: WorkerMessage): void {
    if (ws.readyState === WebSocket.OPEN) ws.send(m.toBinary());
  }

  async #onServerMessage(msg: ServerMessage, ws: WebSocket): Promise<void> {
    const m = msg.message;
    if (m.case === 'availability') {
      const job = m.value.job!;
      this.#send(ws, new WorkerMessage({
        message: { case: 'availability', value: new AvailabilityResponse({ jobId: job.id, available: true, participantIdentity: `agent-${job.id}`, participantName: 'test agent' }) },
      }));
    } else if (m.case === 'assignment') {
      const job = m.value.job!;
      this.jobs++;
      const agent = await TestAgent.join(m.value.url || this.#o.url, m.value.token, job.id);
      agent.onLeave = () => this.#send(ws, new WorkerMessage({ message: { case: 'updateJob', value: new UpdateJobStatus({ jobId: job.id, status: JobStatus.JS_SUCCESS }) } }));
      this.agents.push(agent);
      this.#o.onAgent?.(agent);
      const w = this.#waiters;
      this.#waiters = [];
      for (const r of w) r(agent);
    } else if (m.case === 'termination') {
      await this.agents.find((a) => a.jobId === m.value.jobId)?.leave();
    }
  }

  /** The next agent to join (or the latest one, if `existing` and there is one). */
  nextAgent(timeoutMs = 15000): Promise<TestAgent> {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no job dispatched to agent '${this.#o.agentName}' within ${timeoutMs} ms`)), timeoutMs);
      this.#waiters.push((a) => {
        clearTimeout(t);
        resolve(a);
      });
    });
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#ping) clearInterval(this.#ping);
    this.#ws?.close();
    await Promise.allSettled(this.agents.map((a) => a.leave()));
  }
}

export class TestAgent {
  readonly room = new Room();
  readonly jobId: string;
  readonly source = new AudioSource(48000, 1);
  state: AgentState = 'initializing';
  /** What the agent heard from the device's microphone (48 kHz), with arrival times. */
  readonly heard: Array<{ at: number; pcm: Int16Array }> = [];
  readonly rpcCalls: Array<{ method: string; at: number }> = [];
  /** User text input received on lk.chat (what LiveKit Agents' RoomIO reads as a typed user turn). */
  readonly chat: Array<{ from: string; text: string; at: number }> = [];
  onLeave: (() => void) | null = null;
  #speaking: { interrupted: boolean } | null = null;
  #left = false;
  #segment = 0;

  private constructor(jobId: string) {
    this.jobId = jobId;
  }

  /** Times this agent's connection was restored after a loss (RoomEvent.Reconnected). */
  reconnects = 0;

  static async join(url: string, token: string, jobId: string): Promise<TestAgent> {
    const a = new TestAgent(jobId);
    a.room.on(RoomEvent.Reconnected, () => a.reconnects++);
    a.room.on(RoomEvent.TrackSubscribed, (track, _pub, p) => {
      if (track.kind !== TrackKind.KIND_AUDIO || p.kind === ParticipantKind.AGENT) return;
      void (async () => {
        const reader = new AudioStream(track, { sampleRate: 48000, numChannels: 1 }).getReader();
        for (;;) {
          const { value, done } = await reader.read();
          if (done || a.#left) break;
          a.heard.push({ at: performance.now(), pcm: value.data });
        }
        await reader.cancel().catch(() => {});
      })();
    });
    // Like RoomIO (text_enabled): registered before the agent reports a ready state.
    a.room.registerTextStreamHandler('lk.chat', (reader, p) => {
      void reader.readAll().then((text) => a.chat.push({ from: p.identity, text, at: performance.now() }));
    });
    await a.room.connect(url, token, { autoSubscribe: true, dynacast: false });
    const track = LocalAudioTrack.createAudioTrack('agent-voice', a.source);
    await a.room.localParticipant!.publishTrack(track, new TrackPublishOptions({ source: TrackSource.SOURCE_MICROPHONE }));
    for (const method of ['start_turn', 'end_turn', 'cancel_turn']) {
      a.room.localParticipant!.registerRpcMethod(method, async () => {
        a.rpcCalls.push({ method, at: performance.now() });
        if (method === 'start_turn') await a.interrupt();
        return 'ok';
      });
    }
    await a.setState('listening');
    return a;
  }

  get identity(): string {
    return this.room.localParticipant!.identity;
  }

  /** The device's participant (the first non-agent participant). */
  device(): RemoteParticipant | undefined {
    for (const p of this.room.remoteParticipants.values()) if (p.kind !== ParticipantKind.AGENT) return p;
    return undefined;
  }

  async waitForDevice(timeoutMs = 10000): Promise<RemoteParticipant> {
    const deadline = performance.now() + timeoutMs;
    let lastAsk = performance.now();
    for (;;) {
      const d = this.device();
      // Subscribed (the track is there), not only published: after a server restart the
      // publication can be back before the subscription is, and audio sent then is not heard.
      const mics = d ? [...d.trackPublications.values()].filter((p) => p.kind === TrackKind.KIND_AUDIO) : [];
      if (d && mics.some((p) => p.track !== undefined)) return d;
      if (performance.now() > deadline) {
        throw new Error(`the device participant (with a subscribed microphone track) never showed up: ${d ? `${d.identity} with ${mics.length} audio publication(s), ${mics.filter((p) => (p as RemoteTrackPublication).subscribed).length} subscribed` : 'no device participant'}; agent connected ${this.room.isConnected}`);
      }
      // An automatic subscription made while the agent was reconnecting can be lost (the gateway
      // asks again for the same reason, src/livekit/livekit-session.ts): ask again, once a second.
      if (performance.now() - lastAsk > 1000) {
        lastAsk = performance.now();
        for (const p of mics) if (p.track === undefined) (p as RemoteTrackPublication).setSubscribed(true);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  heardAudio(sinceMs = 0): Int16Array {
    return concat(this.heard.filter((h) => h.at >= sinceMs).map((h) => h.pcm));
  }

  async setState(s: AgentState): Promise<void> {
    this.state = s;
    await this.room.localParticipant!.setAttributes({ 'lk.agent.state': s });
  }

  /** A final user transcript, attributed to the device's participant and microphone track. */
  async userTranscript(text: string, final = true): Promise<void> {
    const d = this.device()!;
    const mic = [...d.trackPublications.values()].find((p) => p.kind === TrackKind.KIND_AUDIO);
    const w = await this.room.localParticipant!.streamText({
      topic: 'lk.transcription',
      senderIdentity: d.identity,
      attributes: { 'lk.segment_id': `SG_user_${++this.#segment}`, 'lk.transcribed_track_id': mic?.sid ?? '', 'lk.transcription_final': final ? 'true' : 'false' },
    });
    await w.write(text);
    await w.close();
  }

  /**
   * Speaks `pcm` (48 kHz) like an AgentSession: thinking → speaking, the transcript as a delta
   * stream paced with the audio, audio captured at real time, listening once played out.
   * Resolves with whether it was interrupted (start_turn RPC).
   */
  async say(pcm: Int16Array, text: string, opts: { thinkMs?: number } = {}): Promise<{ interrupted: boolean; startedAt: number }> {
    const turn = { interrupted: false };
    this.#speaking = turn;
    await this.setState('thinking');
    if (opts.thinkMs) await new Promise((r) => setTimeout(r, opts.thinkMs));
    const startedAt = performance.now();
    await this.setState('speaking');
    const writer = await this.room.localParticipant!.streamText({
      topic: 'lk.transcription',
      senderIdentity: this.identity,
      attributes: { 'lk.segment_id': `SG_agent_${++this.#segment}`, 'lk.transcribed_track_id': '', 'lk.transcription_final': 'false' },
    });
    const words = text.split(/(?<=\s)/);
    const frame = 480;
    const frames = Math.ceil(pcm.length / frame);
    let wordIdx = 0;
    for (let i = 0; i < frames && !turn.interrupted; i++) {
      const chunk = new Int16Array(frame);
      chunk.set(pcm.subarray(i * frame, Math.min(pcm.length, (i + 1) * frame)));
      await this.source.captureFrame(new AudioFrame(chunk, 48000, 1, frame));
      // Text follows the audio, the way synchronized transcription does.
      const due = Math.floor(((i + 1) / frames) * words.length);
      if (due > wordIdx) {
        await writer.write(words.slice(wordIdx, due).join(''));
        wordIdx = due;
      }
    }
    if (!turn.interrupted && wordIdx < words.length) await writer.write(words.slice(wordIdx).join(''));
    await writer.close();
    if (!turn.interrupted) await this.source.waitForPlayout();
    if (this.#speaking === turn) {
      this.#speaking = null;
      await this.setState('listening');
    }
    return { interrupted: turn.interrupted, startedAt };
  }

  async interrupt(): Promise<void> {
    const t = this.#speaking;
    if (!t) return;
    t.interrupted = true;
    this.#speaking = null;
    this.source.clearQueue();
    await this.setState('listening');
  }

  /** Calls the device's MCP RPC method with a JSON-RPC message; returns the raw response. */
  async callDevice(method: string, message: Record<string, unknown>, responseTimeout = 10000): Promise<string> {
    const d = this.device()!;
    return this.room.localParticipant!.performRpc({ destinationIdentity: d.identity, method, payload: JSON.stringify(message), responseTimeout });
  }

  async leave(): Promise<void> {
    if (this.#left) return;
    this.#left = true;
    // Bounded: a room that rejoined a restarted server half-way (see livekit-session.ts, "the agent
    // came back without its audio") can leave disconnect() pending forever, and the suite's teardown
    // with it.
    let t: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([this.room.disconnect().catch(() => {}), new Promise((r) => (t = setTimeout(r, 5000)))]);
    clearTimeout(t);
    await this.source.close().catch(() => {});
    this.onLeave?.();
  }
}
