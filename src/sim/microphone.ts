// The user's voice into the device's microphone: one Opus frame every 60 ms on the simulated clock
// (silence first, then speech extended to the next pause, as a speaker finishes the word), taken
// from the uplink clip. Push to talk ends when the speech does (the user lets go); realtime (full
// duplex) keeps streaming silence after each utterance until the next one or stop().
import { FRAME_MS, silenceIndex, type UplinkClip } from './audio.js';
import type { Scheduler, TimerHandle } from './clock.js';

/** At most this many frames are added to a turn to end it in a pause rather than mid-word. */
const MAX_UTTERANCE_EXTENSION = 35;

/** Where the microphone's frames and moments go (the device's AudioService and Application). */
export interface MicListener {
  /** A captured frame, in order: the Opus payload, the clip's envelope for it and its index. */
  frame(payload: Buffer, envelope: Float32Array, index: number): void;
  /** Realtime: the utterance is over; the microphone keeps streaming silence. */
  endOfSpeech(): void;
  /** Push to talk: the speech is over and the user lets go of the button. */
  released(): void;
}

interface Capture {
  /** Frames of silence, then frames of speech (extended to the next pause). */
  silenceFrames: number;
  speechFrames: number;
  extended: number;
  lastWasPause: boolean;
  continuous: boolean;
  /** continuous: the end of the current utterance has been marked. */
  endMarked: boolean;
  sent: number;
  startAt: number;
  timer: TimerHandle | null;
}

export class Microphone {
  readonly #clip: UplinkClip;
  readonly #scheduler: Scheduler;
  readonly #listener: MicListener;
  #capture: Capture | null = null;
  #speechCursor: number;
  #silenceCursor = 0;

  /** `clipOffset`: start-up offset into the clip (frames), so devices do not say the same thing in unison. */
  constructor(clip: UplinkClip, scheduler: Scheduler, clipOffset: number, listener: MicListener) {
    this.#clip = clip;
    this.#scheduler = scheduler;
    this.#listener = listener;
    this.#speechCursor = clipOffset % Math.max(1, clip.speech.length);
  }

  get on(): boolean {
    return this.#capture !== null;
  }

  /** Realtime capture: it runs on between utterances. */
  get continuous(): boolean {
    return this.#capture?.continuous ?? false;
  }

  /** Realtime, between utterances: streaming silence, the last utterance ended. */
  get betweenUtterances(): boolean {
    return (this.#capture?.continuous ?? false) && this.#capture!.endMarked;
  }

  start(silenceFrames: number, speechFrames: number, continuous = false): void {
    this.stop();
    const now = this.#scheduler.now();
    const capture: Capture = { silenceFrames, speechFrames, extended: 0, lastWasPause: true, continuous, endMarked: false, sent: 0, startAt: now, timer: null };
    this.#capture = capture;
    this.#silenceCursor = 0;
    // The first frame leaves one frame time after capture starts.
    capture.timer = this.#scheduler.at(capture.startAt + FRAME_MS, () => this.#tick(capture));
  }

  /** Realtime: the next utterance into the running capture, from the next frame on. */
  speakAgain(speechFrames: number): void {
    const c = this.#capture;
    if (!c) return;
    c.silenceFrames = c.sent;
    c.speechFrames = speechFrames;
    c.extended = 0;
    c.endMarked = false;
    c.lastWasPause = true;
  }

  stop(): void {
    if (this.#capture) {
      this.#scheduler.cancel(this.#capture.timer);
      this.#capture = null;
    }
  }

  #tick(c: Capture): void {
    if (this.#capture !== c) return;
    const clip = this.#clip;
    // Catch up if the event loop was late, as the firmware's send queue would.
    const due = Math.floor((this.#scheduler.now() - c.startAt) / FRAME_MS);
    while (c.sent < due) {
      let trailing = false;
      if (c.sent >= c.silenceFrames + c.speechFrames) {
        if (!c.endMarked && !c.lastWasPause && c.extended < MAX_UTTERANCE_EXTENSION) {
          // The user finishes the word: keep talking until a pause.
          c.speechFrames++;
          c.extended++;
        } else if (!c.continuous) {
          break;
        } else {
          // Full duplex: the utterance is over, the microphone goes on (silence) until the next one.
          trailing = true;
          if (!c.endMarked) {
            c.endMarked = true;
            this.#listener.endOfSpeech();
            if (this.#capture !== c) return;
          }
        }
      }
      let payload: Buffer;
      let envelope: Float32Array;
      let index: number;
      if (c.sent < c.silenceFrames || trailing) {
        index = silenceIndex(clip, this.#silenceCursor++);
        payload = clip.silence[index]!;
        envelope = clip.silenceEnvelope;
      } else {
        index = this.#speechCursor;
        this.#speechCursor = (this.#speechCursor + 1) % clip.speech.length;
        payload = clip.speech[index]!;
        envelope = clip.speechEnvelope;
        c.lastWasPause = clip.pauseAfter[index] === 1;
      }
      c.sent++;
      this.#listener.frame(payload, envelope, index);
    }
    const total = c.silenceFrames + c.speechFrames;
    if (!c.continuous && c.sent >= total && (c.lastWasPause || c.extended >= MAX_UTTERANCE_EXTENSION)) {
      this.#capture = null;
      this.#listener.released();
      return;
    }
    c.timer = this.#scheduler.at(c.startAt + (c.sent + 1) * FRAME_MS, () => this.#tick(c));
  }
}
