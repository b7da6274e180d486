// Device microphone → LiveKit: frames from the uplink pipeline are copied into AudioFrames that
// rtc-node reads correctly and captured one at a time, in order, into the AudioSource.
//
// Why copy: pipeline frames are views into a shared batch buffer (nonzero byteOffset), and
// rtc-node's AudioFrame hands the FFI `data.buffer`, ignoring byteOffset/length: a view would
// publish the wrong samples (the batch's first frame, or garbage past the end).
// Why one at a time: each captureFrame is an async FFI request; overlapping requests are not
// guaranteed to be queued in order.
// Bounded: frames wait here while the source pushes back (at most `maxBufferedMs`, small) or the
// room reconnects (at most `pausedMaxBufferedMs`); beyond that the oldest are dropped, so a burst
// or an outage costs audio, not memory or standing latency. The AudioSource's own queue is kept
// short for the same reason (see livekit-session.ts).
// Standing latency: the device sends exactly real time and the source consumes exactly real time,
// so a backlog built by one stall (a busy event loop, a burst after Wi-Fi jitter) would never drain
// and every later word would reach the agent that much late. When the audio waiting here plus in
// the source never fell below `standingTargetMs` during a whole second, one frame is dropped.
import { AudioFrame } from '@livekit/rtc-node';

/** An AudioFrame that owns exactly its samples (byteOffset 0, buffer length = frame length). */
export function ownedAudioFrame(pcm: Int16Array, sampleRate: number, channels = 1): AudioFrame {
  const copy = new Int16Array(pcm.length);
  copy.set(pcm);
  return new AudioFrame(copy, sampleRate, channels, Math.floor(pcm.length / channels));
}

export interface UplinkCaptureOptions {
  sampleRate: number;
  /** Held at most while capturing normally: a burst from the network must not become standing latency. */
  maxBufferedMs: number;
  /** Held at most while paused (the room reconnecting). */
  pausedMaxBufferedMs?: number;
  capture(frame: AudioFrame): Promise<void>;
  /** Frames dropped (oldest first) because the buffer was full. */
  onDrop?(frames: number): void;
  /** A frame went into the source: its samples, when it was pushed (performance.now()), its tag. */
  onCaptured?(samples: number, pushedAt: number, sequence: number | undefined): void;
  onError?(err: unknown): void;
  now?(): number;
  /** Audio queued inside the AudioSource, in ms (its `queuedDuration`); enables standing-latency shedding. */
  sourceQueuedMs?(): number;
  /** Backlog (here + in the source) tolerated for good; above it for a whole second, a frame is dropped (default 80). */
  standingTargetMs?: number;
  /** Frames dropped to shed standing latency. */
  onShed?(frames: number): void;
}

const STANDING_WINDOW_MS = 1000;

export class UplinkCapture {
  readonly #o: UplinkCaptureOptions;
  readonly #queue: Array<{ frame: AudioFrame; at: number; sequence: number | undefined }> = [];
  #queuedSamples = 0;
  #busy = false;
  #paused = false;
  #closed = false;
  #windowStart = -1;
  #windowMinMs = Infinity;
  dropped = 0;
  shed = 0;

  constructor(options: UplinkCaptureOptions) {
    this.#o = options;
  }

  get bufferedMs(): number {
    return (this.#queuedSamples / this.#o.sampleRate) * 1000;
  }

  /** `sequence` only travels to onCaptured (latency probes). */
  push(pcm: Int16Array, sequence?: number): void {
    if (this.#closed || pcm.length === 0) return;
    if (this.#standing()) return;  // this frame is the one shed
    this.#queue.push({ frame: ownedAudioFrame(pcm, this.#o.sampleRate), at: this.#o.now?.() ?? performance.now(), sequence });
    this.#queuedSamples += pcm.length;
    const ms = this.#paused ? (this.#o.pausedMaxBufferedMs ?? this.#o.maxBufferedMs) : this.#o.maxBufferedMs;
    const max = (ms / 1000) * this.#o.sampleRate;
    let dropped = 0;
    // Keep at least the newest frame, whatever the limit.
    while (this.#queuedSamples > max && this.#queue.length > 1) {
      this.#queuedSamples -= this.#queue.shift()!.frame.samplesPerChannel;
      dropped++;
    }
    if (dropped) {
      this.dropped += dropped;
      this.#o.onDrop?.(dropped);
    }
    this.#pump();
  }

  /** True when this push should be shed to drain a standing backlog (see the file comment). */
  #standing(): boolean {
    const sourceMs = this.#o.sourceQueuedMs;
    if (!sourceMs || this.#paused) {
      this.#windowStart = -1;
      return false;
    }
    const now = this.#o.now?.() ?? performance.now();
    const backlog = this.bufferedMs + sourceMs();
    if (this.#windowStart < 0) {
      this.#windowStart = now;
      this.#windowMinMs = backlog;
      return false;
    }
    this.#windowMinMs = Math.min(this.#windowMinMs, backlog);
    if (now - this.#windowStart < STANDING_WINDOW_MS) return false;
    const standing = this.#windowMinMs > (this.#o.standingTargetMs ?? 80);
    this.#windowStart = now;
    this.#windowMinMs = backlog;
    if (!standing) return false;
    this.shed++;
    this.#o.onShed?.(1);
    return true;
  }

  /** Hold frames (room reconnecting). */
  pause(): void {
    this.#paused = true;
  }

  resume(): void {
    this.#paused = false;
    this.#pump();
  }

  /** Forget what is queued (nothing more will be captured). Idempotent. */
  close(): void {
    this.#closed = true;
    this.#queue.length = 0;
    this.#queuedSamples = 0;
  }

  #pump(): void {
    if (this.#busy || this.#paused || this.#closed) return;
    const next = this.#queue.shift();
    if (!next) return;
    this.#queuedSamples -= next.frame.samplesPerChannel;
    this.#busy = true;
    this.#o.capture(next.frame).then(
      () => {
        this.#busy = false;
        if (!this.#closed) this.#o.onCaptured?.(next.frame.samplesPerChannel, next.at, next.sequence);
        this.#pump();
      },
      (err: unknown) => {
        this.#busy = false;
        if (!this.#closed) this.#o.onError?.(err);
        this.#pump();
      },
    );
  }
}
