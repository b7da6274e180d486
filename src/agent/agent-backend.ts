// What sits behind a device session: the gateway speaks the device protocol, an AgentBackend
// provides the conversation. The echo agent ships built in; the LiveKit bridge is another backend.
import type { Registry } from 'prom-client';
import type { EventEmitter } from 'node:events';
import type { Logger } from 'pino';

export interface AgentSessionInfo {
  /** Device MAC, lower case with colons. */
  deviceId: string;
  clientId: string;
  sessionId: string;
  /** Firmware version from the OTA User-Agent or hello, when known. */
  firmwareVersion?: string;
  /** hello.features (e.g. { mcp: true, aec: true }). */
  features: Record<string, unknown>;
  /** Rate of the PCM delivered to pushAudio (the uplink pipeline's output rate). */
  inputSampleRate: number;
  logger: Logger;
}

export type ListenMode = 'auto' | 'manual' | 'realtime';

export interface AgentEvents {
  /** Agent speech for the device: Int16 or Float32 mono PCM at `sampleRate`, any chunk size. */
  audio: [pcm: Int16Array | Float32Array, sampleRate: number];
  /**
   * The next 'audio' is already `ms` behind real time (held before the turn was known, emitted at
   * once): the device may be sent it that much sooner than real-time pacing would. Optional.
   */
  'audio-late': [ms: number];
  /** The agent finished a spoken turn: everything it said has been emitted as 'audio'. */
  'audio-end': [];
  /** The agent's conversational state (drives tts/llm messages to the device). */
  state: [state: 'listening' | 'thinking' | 'speaking'];
  /** Transcripts: user speech recognised (-> stt), agent sentence spoken (-> tts sentence_start). */
  transcript: [t: { role: 'user' | 'agent'; text: string; final: boolean }];
  /** An MCP JSON-RPC message for the device. */
  mcp: [payload: Record<string, unknown>];
  /** Something the device should show (alert message). */
  alert: [a: { status: string; message: string; emotion?: string }];
  /** The agent side ended (e.g. agent left): the gateway says goodbye to the device. */
  end: [reason: string];
}

export interface AgentSession extends EventEmitter<AgentEvents> {
  /** Device microphone audio, decoded, as Int16 mono PCM at info.inputSampleRate. */
  /** `sequence`: the device datagram the frame came from (or stands in for), for latency probes. */
  pushAudio(pcm: Int16Array, sampleRate: number, sequence?: number): void;
  listenStart(mode: ListenMode): void;
  listenStop(): void;
  /** Wake word detected on the device (listen detect). */
  wakeWord(text: string): void;
  /** Barge-in: stop speaking now. */
  interrupt(): void;
  /** MCP JSON-RPC from the device (replies to the agent's calls, notifications). */
  mcpFromDevice(payload: Record<string, unknown>): void;
  /** The device session is over; release everything. Idempotent. */
  close(reason: string): Promise<void>;
}

export interface AgentBackend {
  readonly name: string;
  createSession(info: AgentSessionInfo): Promise<AgentSession>;
  close(): Promise<void>;
  /** Adds the backend's own metrics to the gateway's Prometheus registry (optional). */
  registerMetrics?(registry: Registry): void;
  /**
   * Native objects the backend's library keeps after their sessions closed, which only a new
   * process gives back (rtc-node: audio sources of rooms the server ended). Optional; 0 if absent.
   */
  retainedNative?(): number;
}
