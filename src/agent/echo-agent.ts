// The built-in agent: after the device stops talking (listen stop, or end of speech detected by a
// simple energy detector in auto/realtime mode), it plays back what the device said. The audio
// goes through the full native pipeline both ways (uplink decode + resample, downlink resample +
// encode), so a device talking to the echo agent exercises everything but an AI.
import { EventEmitter } from 'node:events';
import type { AgentBackend, AgentEvents, AgentSession, AgentSessionInfo, ListenMode } from './agent-backend.js';

export interface EchoAgentOptions {
  /** Longest utterance kept, in seconds (older audio is dropped). Default 30. */
  maxUtteranceSeconds?: number;
  /** In auto/realtime mode, this much silence ends the utterance. Default 700 ms. */
  endOfSpeechMs?: number;
  /** RMS (Int16 units) above which a frame counts as speech. Default 500 (about -36 dBFS). */
  speechRms?: number;
  /** Playback is fed this far ahead of real time (the pacer sends it at real time). Default 600 ms. */
  feedAheadMs?: number;
  /** Injectable timers, for tests. */
  timers?: { setInterval: typeof setInterval; clearInterval: typeof clearInterval; now: () => number };
}

const CHUNK_MS = 20;

class EchoSession extends EventEmitter<AgentEvents> implements AgentSession {
  readonly #info: AgentSessionInfo;
  readonly #opts: Required<Omit<EchoAgentOptions, 'timers'>>;
  readonly #timers: NonNullable<EchoAgentOptions['timers']>;
  #recording: Int16Array[] = [];
  #recordedSamples = 0;
  #listening = false;
  #mode: ListenMode = 'auto';
  #heardSpeech = false;
  #silentMs = 0;
  #playback: { pcm: Int16Array; offset: number; started: number; rate: number } | null = null;
  #timer: ReturnType<typeof setInterval> | null = null;
  #closed = false;

  constructor(info: AgentSessionInfo, opts: Required<Omit<EchoAgentOptions, 'timers'>>, timers: NonNullable<EchoAgentOptions['timers']>) {
    super();
    this.#info = info;
    this.#opts = opts;
    this.#timers = timers;
  }

  pushAudio(pcm: Int16Array, sampleRate: number): void {
    if (this.#closed || !this.#listening) return;
    // Copy: the frame is a view into a pipeline batch buffer.
    this.#recording.push(pcm.slice());
    this.#recordedSamples += pcm.length;
    const max = this.#opts.maxUtteranceSeconds * sampleRate;
    while (this.#recordedSamples > max && this.#recording.length > 1) this.#recordedSamples -= this.#recording.shift()!.length;
    if (this.#mode === 'manual') return;
    let sum = 0;
    for (let i = 0; i < pcm.length; i++) sum += pcm[i]! * pcm[i]!;
    const rms = Math.sqrt(sum / Math.max(1, pcm.length));
    if (rms >= this.#opts.speechRms) {
      this.#heardSpeech = true;
      this.#silentMs = 0;
    } else if (this.#heardSpeech) {
      this.#silentMs += (pcm.length / sampleRate) * 1000;
      if (this.#silentMs >= this.#opts.endOfSpeechMs) this.#endOfUtterance(sampleRate);
    }
  }

  listenStart(mode: ListenMode): void {
    if (this.#closed) return;
    this.#stopPlayback(false);
    this.#mode = mode;
    this.#rearm();
    this.emit('state', 'listening');
  }

  #rearm(): void {
    this.#listening = true;
    this.#recording = [];
    this.#recordedSamples = 0;
    this.#heardSpeech = false;
    this.#silentMs = 0;
  }

  listenStop(): void {
    if (this.#closed || !this.#listening) return;
    this.#endOfUtterance(this.#info.inputSampleRate);
  }

  wakeWord(text: string): void {
    this.emit('transcript', { role: 'user', text, final: true });
  }

  interrupt(): void {
    this.#stopPlayback(true);
  }

  mcpFromDevice(): void {
    // The echo agent calls no tools.
  }

  #endOfUtterance(rate: number): void {
    this.#listening = false;
    const total = this.#recordedSamples;
    const pcm = new Int16Array(total);
    let o = 0;
    for (const c of this.#recording) {
      pcm.set(c, o);
      o += c.length;
    }
    this.#recording = [];
    this.#recordedSamples = 0;
    if (total === 0) {
      this.emit('state', 'listening');
      return;
    }
    this.emit('transcript', { role: 'user', text: `(echo: ${(total / rate).toFixed(1)} s of audio)`, final: true });
    this.emit('state', 'speaking');
    this.emit('transcript', { role: 'agent', text: '(echo playback)', final: true });
    this.#playback = { pcm, offset: 0, started: this.#timers.now(), rate };
    this.#feed();
    this.#timer = this.#timers.setInterval(() => this.#feed(), CHUNK_MS);
  }

  // Feeds playback at real time plus a lead, the way a TTS/agent track arrives over LiveKit.
  #feed(): void {
    const p = this.#playback;
    if (!p || this.#closed) return;
    const dueSamples = Math.min(
      p.pcm.length,
      Math.floor(((this.#timers.now() - p.started + this.#opts.feedAheadMs) / 1000) * p.rate),
    );
    const chunk = Math.round((CHUNK_MS / 1000) * p.rate);
    while (p.offset < dueSamples) {
      const end = Math.min(dueSamples, p.offset + chunk);
      this.emit('audio', p.pcm.subarray(p.offset, end), p.rate);
      p.offset = end;
    }
    if (p.offset >= p.pcm.length) {
      this.#stopPlayback(false);
      this.emit('audio-end');
      this.emit('state', 'listening');
      // Realtime mode: the firmware sends one `listen start` per channel and never `listen stop`,
      // so the next utterance starts without another message.
      if (this.#mode === 'realtime') this.#rearm();
    }
  }

  #stopPlayback(interrupted: boolean): void {
    if (this.#timer) this.#timers.clearInterval(this.#timer);
    this.#timer = null;
    const wasPlaying = this.#playback !== null;
    this.#playback = null;
    if (interrupted && wasPlaying) this.emit('state', 'listening');
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#stopPlayback(false);
    this.#closed = true;
    this.#recording = [];
    this.removeAllListeners();
  }
}

export class EchoAgentBackend implements AgentBackend {
  readonly name = 'echo';
  readonly #opts: Required<Omit<EchoAgentOptions, 'timers'>>;
  readonly #timers: NonNullable<EchoAgentOptions['timers']>;

  constructor(options: EchoAgentOptions = {}) {
    this.#opts = {
      maxUtteranceSeconds: options.maxUtteranceSeconds ?? 30,
      endOfSpeechMs: options.endOfSpeechMs ?? 700,
      speechRms: options.speechRms ?? 500,
      feedAheadMs: options.feedAheadMs ?? 600,
    };
    this.#timers = options.timers ?? { setInterval, clearInterval, now: () => performance.now() };
  }

  async createSession(info: AgentSessionInfo): Promise<AgentSession> {
    return new EchoSession(info, this.#opts, this.#timers);
  }

  async close(): Promise<void> {}
}
