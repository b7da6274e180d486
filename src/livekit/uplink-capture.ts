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
}

export class UplinkCapture {
  readonly #o: UplinkCaptureOptions;
  readonly #queue: Array<{ frame: AudioFrame; at: number; sequence: number | undefined }> = [];
  #queuedSamples = 0;
  #busy = false;
  #paused = false;
  #closed = false;
  dropped = 0;

  constructor(options: UplinkCaptureOptions) {
    this.#o = options;
  }

  get bufferedMs(): number {
    return (this.#queuedSamples / this.#o.sampleRate) * 1000;
  }

  /** `sequence` only travels to onCaptured (latency probes). */
  push(pcm: Int16Array, sequence?: number): void {
    if (this.#closed || pcm.length === 0) return;
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
