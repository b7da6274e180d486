// Which of the agent's audio is a spoken turn for the device. A subscribed LiveKit track delivers
// audio continuously (silence between replies), while the device protocol wants turns: `tts start`,
// the speech, `tts stop` after the last packet. The agent's `lk.agent.state` attribute says when it
// speaks, but attributes travel over signalling and audio over RTP, so they race:
// - 'speaking' may arrive after the first audio: audio received shortly before is kept (preroll)
//   and leading silence is trimmed;
// - 'listening' arrives while the last audio is still in flight (the agent flips state when its
//   own source has drained, before the network and our jitter buffer have delivered it): the turn
//   stays open until the tail goes quiet (`tailSilenceMs`) or `maxTailMs` passes.
// Agents that publish no state at all are served by the audio alone (non-silent audio opens a
// turn, `statelessEndSilenceMs` of silence closes it).
// Barge-in: after interrupt() nothing is forwarded until the agent leaves 'speaking'.
import type { AgentState } from './conventions.js';

export interface DownlinkGateOptions {
  sampleRate: number;
  tailSilenceMs?: number;
  maxTailMs?: number;
  prerollMs?: number;
  statelessEndSilenceMs?: number;
  /** Peak |sample| (Int16) at or below which a frame counts as silence. */
  silencePeak?: number;
  /** Audio of the current turn, in order. */
  audio(pcm: Int16Array): void;
  /** A turn began (its first audio follows). */
  start?(): void;
  /**
   * The audio about to follow is already `ms` behind real time: it arrived before the turn was
   * known (preroll) and comes out at once. Downstream pacing may send it that much sooner.
   */
  late?(ms: number): void;
  /** The turn is over: everything it said went to audio(). */
  end(): void;
  /** A frame of the agent's audio was discarded (the rest of an interrupted turn). */
  discarded?(): void;
  timers?: { setTimeout: typeof setTimeout; clearTimeout: typeof clearTimeout };
}

type Phase = 'idle' | 'speaking' | 'tail' | 'muted';

export function isSilent(pcm: Int16Array, peak: number): boolean {
  for (let i = 0; i < pcm.length; i++) {
    const v = pcm[i]!;
    if (v > peak || v < -peak) return false;
  }
  return true;
}

export class DownlinkGate {
  readonly #o: Required<Omit<DownlinkGateOptions, 'start' | 'timers' | 'discarded' | 'late'>> & Pick<DownlinkGateOptions, 'start' | 'discarded' | 'late'>;
  readonly #timers: NonNullable<DownlinkGateOptions['timers']>;
  #phase: Phase = 'idle';
  #agentState: AgentState | null = null;
  #preroll: Int16Array[] = [];
  #prerollSamples = 0;
  #turnHasAudio = false;
  #silentSamples = 0;
  #tailTimer: ReturnType<typeof setTimeout> | null = null;

  constructor(o: DownlinkGateOptions) {
    this.#o = {
      sampleRate: o.sampleRate,
      tailSilenceMs: o.tailSilenceMs ?? 120,
      maxTailMs: o.maxTailMs ?? 700,
      prerollMs: o.prerollMs ?? 300,
      statelessEndSilenceMs: o.statelessEndSilenceMs ?? 600,
      silencePeak: o.silencePeak ?? 24,
      audio: o.audio,
      start: o.start,
      late: o.late,
      end: o.end,
      discarded: o.discarded,
    };
    this.#timers = o.timers ?? { setTimeout, clearTimeout };
  }

  get phase(): Phase {
    return this.#phase;
  }

  get inTurn(): boolean {
    return this.#phase === 'speaking' || this.#phase === 'tail';
  }

  /** One frame of the agent's audio (owned by the caller's frame; kept by reference). */
  frame(pcm: Int16Array): void {
    const silent = isSilent(pcm, this.#o.silencePeak);
    switch (this.#phase) {
      case 'muted':
        if (!silent) this.#o.discarded?.();
        if (this.#agentState === null) this.#countSilence(pcm.length, silent, this.#o.statelessEndSilenceMs, () => this.#toIdle());
        return;
      case 'idle':
        if (this.#agentState === null && !silent) {
          this.#startTurn();
          this.#forward(pcm, silent);
          return;
        }
        this.#keepPreroll(pcm);
        return;
      case 'speaking':
        this.#forward(pcm, silent);
        if (this.#agentState === null) this.#countSilence(pcm.length, silent, this.#o.statelessEndSilenceMs, () => this.#endTurn());
        return;
      case 'tail':
        this.#forward(pcm, silent);
        this.#countSilence(pcm.length, silent, this.#o.tailSilenceMs, () => this.#endTurn());
        return;
    }
  }

  setAgentState(state: AgentState): void {
    const was = this.#agentState;
    this.#agentState = state;
    if (state === 'speaking') {
      if (this.#phase === 'idle') {
        this.#startTurn();
        // The turn's audio may have overtaken the attribute: keep what came just before.
        const pre = this.#preroll;
        this.#preroll = [];
        this.#prerollSamples = 0;
        const first = pre.findIndex((p) => !isSilent(p, this.#o.silencePeak));
        if (first >= 0) {
          // It arrived over the last few frames and leaves now: all but its newest frame is late.
          let samples = 0;
          for (let i = first; i < pre.length - 1; i++) samples += pre[i]!.length;
          if (samples > 0) this.#o.late?.((samples / this.#o.sampleRate) * 1000);
        }
        for (const p of pre) this.#forward(p, isSilent(p, this.#o.silencePeak));
      } else if (this.#phase === 'tail') {
        this.#clearTailTimer();
        this.#phase = 'speaking';
      }
      return;
    }
    if (was !== 'speaking' && was !== null) return;
    if (this.#phase === 'muted') {
      this.#toIdle();
    } else if (this.#phase === 'speaking') {
      if (!this.#turnHasAudio) {
        this.#endTurn();
        return;
      }
      this.#phase = 'tail';
      this.#silentSamples = 0;
      this.#tailTimer = this.#timers.setTimeout(() => this.#endTurn(), this.#o.maxTailMs);
    }
  }

  /** Barge-in: drop the rest of this turn (no end()), and anything until the agent stops speaking. */
  interrupt(): void {
    this.#clearTailTimer();
    this.#preroll = [];
    this.#prerollSamples = 0;
    this.#silentSamples = 0;
    this.#turnHasAudio = false;
    this.#phase = this.#agentState === 'speaking' || (this.#agentState === null && this.#phase === 'speaking') ? 'muted' : 'idle';
  }

  /** Ends an open turn now (e.g. the agent left): end() if it carried audio. */
  finish(): void {
    if (this.inTurn) this.#endTurn();
  }

  close(): void {
    this.#clearTailTimer();
    this.#preroll = [];
    this.#phase = 'idle';
  }

  #startTurn(): void {
    this.#phase = 'speaking';
    this.#turnHasAudio = false;
    this.#silentSamples = 0;
    this.#o.start?.();
  }

  #forward(pcm: Int16Array, silent: boolean): void {
    // Leading silence is not part of the turn (it would only delay `tts stop`, or start a turn early).
    if (!this.#turnHasAudio && silent) return;
    this.#turnHasAudio = true;
    this.#o.audio(pcm);
  }

  #countSilence(samples: number, silent: boolean, limitMs: number, then: () => void): void {
    if (!silent) {
      this.#silentSamples = 0;
      return;
    }
    this.#silentSamples += samples;
    if (this.#silentSamples >= (limitMs / 1000) * this.#o.sampleRate) then();
  }

  #keepPreroll(pcm: Int16Array): void {
    this.#preroll.push(pcm);
    this.#prerollSamples += pcm.length;
    const max = (this.#o.prerollMs / 1000) * this.#o.sampleRate;
    while (this.#prerollSamples > max && this.#preroll.length > 1) this.#prerollSamples -= this.#preroll.shift()!.length;
  }

  #endTurn(): void {
    const had = this.#turnHasAudio;
    this.#toIdle();
    if (had) this.#o.end();
  }

  #toIdle(): void {
    this.#clearTailTimer();
    this.#phase = 'idle';
    this.#turnHasAudio = false;
    this.#silentSamples = 0;
    this.#preroll = [];
    this.#prerollSamples = 0;
  }

  #clearTailTimer(): void {
    if (this.#tailTimer) this.#timers.clearTimeout(this.#tailTimer);
    this.#tailTimer = null;
  }
}
