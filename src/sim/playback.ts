// The device's playback path (AudioService): a decode queue of at most 40 packets (2400 ms / 60 ms)
// that PushPacketToDecodeQueue refuses to grow (the packet is dropped silently), a codec task that
// moves packets into a playback queue of at most 2 decoded frames, and an output task that plays
// one frame at a time in real time. Time-driven and lazy: state advances only when asked, with the
// caller's clock, so no timer runs per device.

export const MAX_DECODE_PACKETS_IN_QUEUE = 40;
export const MAX_PLAYBACK_TASKS_IN_QUEUE = 2;

interface Frame {
  /** Downlink header timestamp (server AEC reference). */
  timestamp: number;
  /** Play time in ms; 0 = decode failed, the frame never reaches the speaker. */
  durationMs: number;
}

export interface PlaybackOptions {
  decodeQueueCapacity?: number;
  playbackQueueCapacity?: number;
  /** Server AEC: remember played timestamps for the uplink (MAX_TIMESTAMPS_IN_QUEUE = 3). */
  recordTimestamps?: boolean;
}

export class PlaybackModel {
  readonly decodeCapacity: number;
  readonly playbackCapacity: number;
  readonly recordTimestamps: boolean;
  #decode: Frame[] = [];
  #decodeHead = 0;
  #playback: Frame[] = [];
  #current: Frame | null = null;
  #currentEnd = 0;
  #timestamps: number[] = [];
  /** Frames that reached the speaker. */
  played = 0;
  /** ms of audio played. */
  playedMs = 0;
  /** Largest decode-queue depth seen. */
  maxDepth = 0;

  constructor(options: PlaybackOptions = {}) {
    this.decodeCapacity = options.decodeQueueCapacity ?? MAX_DECODE_PACKETS_IN_QUEUE;
    this.playbackCapacity = options.playbackQueueCapacity ?? MAX_PLAYBACK_TASKS_IN_QUEUE;
    this.recordTimestamps = options.recordTimestamps ?? false;
  }

  get decodeDepth(): number {
    return this.#decode.length - this.#decodeHead;
  }

  /** Brings the model to `now`: finished frames leave the speaker, queued frames move on. */
  advance(now: number): void {
    for (;;) {
      this.#refill();
      if (this.#current) {
        if (this.#currentEnd > now) return;
        const finishedAt = this.#currentEnd;
        if (this.recordTimestamps && this.#current.timestamp > 0) this.#timestamps.push(this.#current.timestamp);
        this.#current = null;
        this.#startNext(finishedAt);
        if (!this.#current) return;
      } else {
        this.#startNext(now);
        if (!this.#current) return;
      }
    }
  }

  #refill(): void {
    while (this.#playback.length < this.playbackCapacity && this.#decodeHead < this.#decode.length) {
      const f = this.#decode[this.#decodeHead++]!;
      // A packet that fails to decode leaves the decode queue but never becomes a playback task.
      if (f.durationMs > 0) this.#playback.push(f);
    }
    if (this.#decodeHead > 64 && this.#decodeHead * 2 > this.#decode.length) {
      this.#decode = this.#decode.slice(this.#decodeHead);
      this.#decodeHead = 0;
    }
  }

  #startNext(at: number): void {
    const f = this.#playback.shift();
    if (!f) return;
    this.#current = f;
    this.#currentEnd = at + f.durationMs;
    this.played++;
    this.playedMs += f.durationMs;
    this.#refill();
  }

  /**
   * PushPacketToDecodeQueue(packet, wait = false): false when the decode queue already holds its
   * capacity (the packet is dropped).
   */
  push(now: number, timestamp: number, durationMs: number): boolean {
    this.advance(now);
    if (this.decodeDepth >= this.decodeCapacity) return false;
    this.#decode.push({ timestamp, durationMs });
    if (this.decodeDepth > this.maxDepth) this.maxDepth = this.decodeDepth;
    this.advance(now);
    return true;
  }

  /**
   * ResetDecoder(): empties the decode and playback queues and the AEC timestamps; the frame already
   * handed to the codec finishes playing.
   */
  reset(now: number): void {
    this.advance(now);
    this.#decode = [];
    this.#decodeHead = 0;
    this.#playback = [];
    this.#timestamps = [];
  }

  /** Nothing queued and nothing playing (IsPlaybackIdle). */
  isIdle(now: number): boolean {
    this.advance(now);
    return this.#current === null && this.#playback.length === 0 && this.decodeDepth === 0;
  }

  /** When everything queued now will have played (for the "playback drained" event). */
  drainedAt(now: number): number {
    this.advance(now);
    let t = this.#current ? this.#currentEnd : now;
    for (const f of this.#playback) t += f.durationMs;
    for (let i = this.#decodeHead; i < this.#decode.length; i++) t += this.#decode[i]!.durationMs;
    return t;
  }

  /**
   * The timestamp for the next uplink frame under server AEC (AudioService encode path): the oldest
   * played timestamp if at most 3 are waiting, else none; one is consumed either way.
   */
  takeUplinkTimestamp(now: number): number {
    this.advance(now);
    if (this.#timestamps.length === 0) return 0;
    const ts = this.#timestamps.length <= 3 ? this.#timestamps[0]! : 0;
    this.#timestamps.shift();
    return ts;
  }
}
