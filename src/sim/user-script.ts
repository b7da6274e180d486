// What the simulated user does, as opposed to what the firmware does: how long each turn's speech
// lasts, the pause before the next (±25 %, seeded per device so devices do not talk in lockstep),
// which replies they interrupt, and after how many turns they end the conversation.
import { FRAME_MS, mulberry32 } from './audio.js';

export interface UserScriptOptions {
  /** Speech per turn (ms). */
  speakMs: number;
  /** Pause between turns (ms). */
  pauseMs: number;
  /** Every N-th turn the user barges in while the reply plays (0 = never). */
  abortEvery: number;
  /** Barge-in this long after tts start (ms). */
  abortAfterMs: number;
  /** End the session (goodbye) after this many turns (0 = never). */
  turnsPerSession: number;
}

export class UserScript {
  readonly #o: UserScriptOptions;
  readonly #rand: () => number;

  constructor(options: UserScriptOptions, deviceIndex: number) {
    this.#o = options;
    this.#rand = mulberry32(0x51d0 ^ Math.imul(deviceIndex + 1, 0x9e3779b1));
  }

  /** The pause before the next turn: pauseMs ± 25 %. */
  pauseMs(): number {
    return Math.round(this.#o.pauseMs * (0.75 + 0.5 * this.#rand()));
  }

  /** Frames of speech in a turn (the microphone extends it to the next pause in the clip). */
  speechFrames(): number {
    return Math.max(1, Math.round(this.#o.speakMs / FRAME_MS));
  }

  /** Milliseconds after tts start at which the user interrupts turn `turn` (1-based), or null. */
  bargeInAfterMs(turn: number): number | null {
    return this.#o.abortEvery > 0 && turn % this.#o.abortEvery === 0 ? this.#o.abortAfterMs : null;
  }

  /** After `turns` turns in this session, the user ends it. */
  endsSession(turns: number): boolean {
    return this.#o.turnsPerSession > 0 && turns >= this.#o.turnsPerSession;
  }
}
