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
// the source never fell below `standingTargetMs` during a whole second, the frames standing above
// the target are owed: each is shed as soon as a quiet frame (a pause between words) is pushed, so
// shedding costs no speech; if no quiet frame comes for a second (continuous speech or a noisy
// room), the frame pushed then is shed anyway, at most one a second, so the latency stays bounded.
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
  /** A frame dropped to shed standing latency; `quiet`: it was a pause, not speech. */
  onShed?(frames: number, quiet: boolean): void;
  /** A frame whose RMS is at most this is quiet: shed first (default 100, about -50 dBFS). */
  quietRms?: number;
}

const STANDING_WINDOW_MS = 1000;
/** Owed frames wait this long for a quiet frame before a speech frame is shed instead. */
const FORCED_SHED_AFTER_MS = 1000;
const DEFAULT_QUIET_RMS = 100;

/** Root mean square of the samples. */
function rms(pcm: Int16Array): number {
  let sum = 0;
  for (let i = 0; i < pcm.length; i++) sum += pcm[i]! * pcm[i]!;
  return Math.sqrt(sum / pcm.length);
}

export class UplinkCapture {
  readonly #o: UplinkCaptureOptions;
  readonly #queue: Array<{ frame: AudioFrame; at: number; sequence: number | undefined }> = [];
  #queuedSamples = 0;
  #busy = false;
  #captureStartedAt = 0;
  #paused = false;
  #closed = false;
  #windowStart = -1;
  #windowMinMs = Infinity;
  /** Frames standing above the target, to be shed (see the file comment), and since when. */
  #owed = 0;
  #owedSince = 0;
  dropped = 0;
  shed = 0;
  /** Of `shed`, the frames that were quiet (the rest were speech shed because no pause came). */
  shedQuiet = 0;

  constructor(options: UplinkCaptureOptions) {
    this.#o = options;
  }

  #now(): number {
    return this.#o.now?.() ?? performance.now();
  }

  /** How long the frame being captured has waited for the source to take it (0: none in flight). */
  get captureWaitMs(): number {
    return this.#busy ? this.#now() - this.#captureStartedAt : 0;
  }

  get bufferedMs(): number {
    return (this.#queuedSamples / this.#o.sampleRate) * 1000;
  }

  /** `sequence` only travels to onCaptured (latency probes). */
  push(pcm: Int16Array, sequence?: number): void {
    if (this.#closed || pcm.length === 0) return;
    if (this.#shedNow(pcm)) return;
    this.#queue.push({ frame: ownedAudioFrame(pcm, this.#o.sampleRate), at: this.#now(), sequence });
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

  /** True when this frame is shed to drain a standing backlog (see the file comment). */
  #shedNow(pcm: Int16Array): boolean {
    const sourceMs = this.#o.sourceQueuedMs;
    if (!sourceMs || this.#paused) {
      this.#windowStart = -1;
      this.#owed = 0;
      return false;
    }
    const now = this.#now();
    const backlog = this.bufferedMs + sourceMs();
    if (this.#windowStart < 0) {
      this.#windowStart = now;
      this.#windowMinMs = backlog;
    } else {
      this.#windowMinMs = Math.min(this.#windowMinMs, backlog);
      if (now - this.#windowStart >= STANDING_WINDOW_MS) {
        // What stood above the target the whole window, in frames of this size (a backlog that
        // dipped below the target drained by itself: nothing is owed).
        const frameMs = (pcm.length / this.#o.sampleRate) * 1000;
        const excess = this.#windowMinMs - (this.#o.standingTargetMs ?? 80);
        const owed = excess > 0 ? Math.ceil(excess / frameMs) : 0;
        if (owed > 0 && this.#owed === 0) this.#owedSince = now;
        this.#owed = owed;
        this.#windowStart = now;
        this.#windowMinMs = backlog;
      }
    }
    if (this.#owed === 0) return false;
    const quiet = rms(pcm) <= (this.#o.quietRms ?? DEFAULT_QUIET_RMS);
    if (!quiet && now - this.#owedSince < FORCED_SHED_AFTER_MS) return false;
    this.#owed--;
    this.#owedSince = now;
    this.shed++;
    if (quiet) this.shedQuiet++;
    this.#o.onShed?.(1, quiet);
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
    this.#captureStartedAt = this.#now();
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
