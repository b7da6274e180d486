// The LiveKit agent backend: every device session joins a LiveKit room as a participant, where a
// LiveKit Agents voice agent (dispatched by name, or automatically) talks to it like to any other
// participant. Chosen with `--agent livekit` and LIVEKIT_URL / LIVEKIT_API_KEY / LIVEKIT_API_SECRET.
import type { AgentBackend, AgentSession, AgentSessionInfo } from '../agent/agent-backend.js';
import type { Registry } from 'prom-client';
import type { GatewayConfig } from '../config.js';
import { registerLivekitMetrics, type LivekitStats } from '../metrics/livekit.js';
import { ffiListenerCount } from './ffi-release.js';
import { LivekitSession, newLivekitStats, type LivekitSessionOptions } from './livekit-session.js';
import { retainedAudioSources } from './rtc-retention.js';

export type LivekitBackendOptions = LivekitSessionOptions;

export class LivekitAgentBackend implements AgentBackend {
  readonly name = 'livekit';
  readonly options: LivekitBackendOptions;
  readonly #sessions = new Set<LivekitSession>();
  readonly #stats: LivekitStats = newLivekitStats();

  constructor(options: LivekitBackendOptions) {
    if (!/^(wss?|https?):\/\//.test(options.url)) throw Object.assign(new Error(`LiveKit URL must start with ws://, wss://, http:// or https://, got "${options.url}"`), { code: 'ERR_CONFIG' });
    this.options = { ...options, url: options.url.replace(/^http(s?):\/\//, 'ws$1://') };
  }

  static fromConfig(config: GatewayConfig, extra: Partial<LivekitBackendOptions> = {}): LivekitAgentBackend {
    return new LivekitAgentBackend({
      url: config.livekitUrl!,
      apiKey: config.livekitApiKey!,
      apiSecret: config.livekitApiSecret!,
      roomTemplate: config.livekitRoomTemplate,
      agentName: config.livekitAgentName,
      dispatch: config.livekitDispatch,
      agentJoinTimeoutMs: config.livekitAgentJoinTimeoutMs,
      mcpMethod: config.livekitMcpMethod,
      mcpTimeoutMs: config.livekitMcpTimeoutMs,
      reconnectBufferMs: config.livekitReconnectBufferMs,
      ...extra,
    });
  }

  async createSession(info: AgentSessionInfo): Promise<AgentSession> {
    const s = new LivekitSession(info, this.options, this.#stats);
    this.#sessions.add(s);
    const close = s.close.bind(s);
    s.close = async (reason: string) => {
      try {
        await close(reason);
      } finally {
        this.#sessions.delete(s);
      }
    };
    try {
      await s.open();
    } catch (err) {
      this.#sessions.delete(s);
      throw err;
    }
    return s;
  }

  /**
   * The open sessions: room, agent, connection state, connection losses ridden out, and whether the
   * agent's audio is subscribed (agentAudio: what the agent says reaches the device) (operations, tests).
   */
  sessions(): Array<{ sessionId: string; deviceId: string; room: string; agent: string | undefined; connectionState: number; reconnects: number; agentAudio: boolean }> {
    return [...this.#sessions].map((s) => ({
      sessionId: s.info.sessionId,
      deviceId: s.info.deviceId,
      room: s.roomName,
      agent: s.agentIdentity,
      connectionState: s.connectionState,
      reconnects: s.reconnects,
      agentAudio: s.agentAudio,
    }));
  }

  /** Live objects (must all be 0 once every session is closed) and event counters. */
  stats(): LivekitStats & { ffiListeners: number } {
    return { ...this.#stats, ffiListeners: ffiListenerCount() };
  }

  /** Audio sources rtc-node keeps after their sessions closed (rooms the server ended; see rtc-retention.ts); 0 where not measurable. */
  retainedNative(): number {
    return retainedAudioSources(this.#stats.sources) ?? 0;
  }

  /** xiaozhi_livekit_* metrics (src/metrics/livekit.ts) in the gateway's registry. */
  registerMetrics(registry: Registry): void {
    registerLivekitMetrics(registry, () => this.stats(), () => retainedAudioSources(this.#stats.sources));
  }

  async close(): Promise<void> {
    await Promise.allSettled([...this.#sessions].map((s) => s.close('gateway shutdown')));
  }
}

export { ffiListenerCount };
