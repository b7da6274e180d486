// One scheduler for every session's downlink: datagrams leave at real-time cadence with a small
// lead, never in a burst that overflows the device's ~40-packet (2.4 s) queue. `tts start` goes out
// before a turn's first audio (with a head start, since MQTT/TCP and UDP race), `tts stop` only
// after the device has played the last packet plus a grace period (PROTOCOL.md §3.3).
//
// Cadence: datagram k of a turn is due at the turn's clock, audioFrom + (k - lead) × frame, not
// at "the device's playhead minus the lead". The playhead restarts after every underrun (the device
// ran dry while the agent's audio was late: a stalled event loop, frames delivered in a burst),
// so pacing against it held every later datagram of the turn for that gap again: the gateway's
// hold grew to the largest gap of the turn (p99 132 ms at 10 sessions). Against the turn's clock a
// late datagram leaves as soon as it is there. The device, which really did run dry, plays it no
// earlier (its playback is late by the gap either way), but the audio waits in its queue instead
// of ours (bounded by `maxAheadFrames`, 8, against the playhead estimate, well inside its ~40 packets),
// so the next stall of the same size costs it no gap at all; `tts stop` ends playback on barge-in.
// Audio that is late before it reaches us (the agent's first words, held until its 'speaking'
// state arrived, then released at once) is announced with catchUp(): the turn's clock starts that
// much earlier, so the burst does not become standing latency for the rest of the turn either.

export interface PacedSession {
  /** Sends one datagram to the device's proven UDP address; false if there is none yet. */
  sendDatagram(datagram: Buffer): boolean;
  /** Whether the device's UDP address is proven (nothing is sent before). */
  readonly udpBound: boolean;
  sendTtsStart(): void;
  sendTtsStop(): void;
  /** Counted drops (e.g. the pacer's backlog bound). */
  countDrop(reason: 'pacer_backlog' | 'pacer_send_failed'): void;
}

export interface PacerOptions {
  /** Device frame duration (ms). Default 60. */
  frameMs?: number;
  /** Frames sent ahead of real time (<= 2). Default 2. */
  leadFrames?: number;
  /** First audio packet no sooner than this after `tts start` (MQTT over TCP races UDP, and the
   *  firmware enters its speaking state from its main loop). Default 150 ms. */
  ttsStartHeadStartMs?: number;
  /** `tts stop` this long after the device has played the last packet. Default 100 ms. */
  ttsStopGraceMs?: number;
  /** Datagrams held per session at most (older ones dropped, counted). Default 1000 (60 s). */
  maxBacklog?: number;
  /** Frames the device may hold unplayed at most (estimated from the playhead); its queue takes ~40. Default 8 (480 ms). */
  maxAheadFrames?: number;
  tickMs?: number;
  timers?: { setInterval: typeof setInterval; clearInterval: typeof clearInterval; now: () => number };
}

interface State {
  session: PacedSession;
  queue: Buffer[];
  head: number;
  speaking: boolean;
  audioFrom: number;  // earliest send time of the turn's first packet (tts start's head start)
  clock: number;      // the turn's clock: datagram k is due at clock + (k - lead) × frame
  credit: number;     // ms of audio announced late (catchUp) before its turn started
  sent: number;       // datagrams sent in this turn
  playhead: number;   // when the device will have played everything sent so far
  turnEnded: boolean;
  stopAt: number | null;
}

export class DownlinkPacer {
  readonly #frameMs: number;
  readonly #lead: number;
  readonly #headStart: number;
  readonly #grace: number;
  readonly #maxBacklog: number;
  readonly #maxAhead: number;
  readonly #tickMs: number;
  readonly #timers: NonNullable<PacerOptions['timers']>;
  readonly #states = new Map<PacedSession, State>();
  #timer: ReturnType<typeof setInterval> | null = null;

  constructor(options: PacerOptions = {}) {
    this.#frameMs = options.frameMs ?? 60;
    this.#lead = Math.min(2, Math.max(0, options.leadFrames ?? 2));
    this.#headStart = options.ttsStartHeadStartMs ?? 150;
    this.#grace = options.ttsStopGraceMs ?? 100;
    this.#maxBacklog = options.maxBacklog ?? 1000;
    this.#maxAhead = options.maxAheadFrames ?? 8;
    this.#tickMs = options.tickMs ?? 5;
    this.#timers = options.timers ?? { setInterval, clearInterval, now: () => performance.now() };
  }

  #state(session: PacedSession): State {
    let s = this.#states.get(session);
    if (!s) {
      s = { session, queue: [], head: 0, speaking: false, audioFrom: 0, clock: 0, credit: 0, sent: 0, playhead: 0, turnEnded: false, stopAt: null };
      this.#states.set(session, s);
      if (!this.#timer) this.#timer = this.#timers.setInterval(() => this.tick(), this.#tickMs);
    }
    return s;
  }

  /** Queues one datagram (copied, since pipeline views die with their batch). */
  enqueue(session: PacedSession, datagram: Uint8Array): void {
    const s = this.#state(session);
    if (s.queue.length - s.head >= this.#maxBacklog) {
      s.head++;
      session.countDrop('pacer_backlog');
    }
    s.queue.push(Buffer.from(datagram));
    s.turnEnded = false;
    s.stopAt = null;
    // Only this session can have something new to send: the others wait for the timer (a tick of
    // every session per enqueued datagram made the pacer O(sessions²) per second).
    this.#tickOne(s, this.#timers.now());
  }

  /**
   * The audio about to be queued is already `ms` behind real time: it may leave that much sooner
   * (still after `tts start`'s head start, and within maxAheadFrames of the device's playhead).
   */
  catchUp(session: PacedSession, ms: number): void {
    if (!(ms > 0)) return;
    const s = this.#state(session);
    if (s.speaking) s.clock -= ms;
    else s.credit += ms;
  }

  /** The agent's turn is complete: `tts stop` follows once everything queued has played. */
  endTurn(session: PacedSession): void {
    const s = this.#states.get(session);
    if (!s) return;
    s.turnEnded = true;
    this.#tickOne(s, this.#timers.now());
  }

  /** Barge-in: nothing queued is sent any more; `tts stop` right away if a turn was playing. */
  clear(session: PacedSession): void {
    const s = this.#states.get(session);
    if (!s) return;
    const wasSpeaking = s.speaking;
    this.#remove(session);
    if (wasSpeaking) session.sendTtsStop();
  }

  /** The session is gone: forget it without sending anything. */
  remove(session: PacedSession): void {
    this.#remove(session);
  }

  /** Datagrams waiting for this session. */
  backlog(session: PacedSession): number {
    const s = this.#states.get(session);
    return s ? s.queue.length - s.head : 0;
  }

  isSpeaking(session: PacedSession): boolean {
    return this.#states.get(session)?.speaking ?? false;
  }

  #remove(session: PacedSession): void {
    this.#states.delete(session);
    if (this.#states.size === 0 && this.#timer) {
      this.#timers.clearInterval(this.#timer);
      this.#timer = null;
    }
  }

  tick(): void {
    const now = this.#timers.now();
    for (const s of this.#states.values()) {
      try {
        this.#tickOne(s, now);
      } catch {
        // A session whose send fails (its socket gone mid-shutdown) must not stop every other
        // session's audio, nor escape from the timer: it loses its pacing state, counted.
        this.#remove(s.session);
        s.session.countDrop('pacer_send_failed');
      }
    }
  }

  #tickOne(s: State, now: number): void {
    const pending = s.queue.length - s.head;
    if (pending > 0 && s.session.udpBound) {
      if (!s.speaking) {
        s.session.sendTtsStart();
        s.speaking = true;
        s.audioFrom = now + this.#headStart;
        s.clock = s.audioFrom - s.credit;
        s.credit = 0;
        s.sent = 0;
        s.playhead = s.audioFrom;
      }
      if (now >= s.audioFrom) {
        while (
          s.head < s.queue.length &&
          now >= s.clock + (s.sent - this.#lead) * this.#frameMs &&
          Math.max(s.playhead, now) - now <= (this.#maxAhead - 1) * this.#frameMs
        ) {
          s.session.sendDatagram(s.queue[s.head]!);
          s.queue[s.head++] = undefined as unknown as Buffer;
          s.sent++;
          // Underrun (the device ran dry): it plays this one on arrival.
          s.playhead = Math.max(s.playhead, now) + this.#frameMs;
        }
        if (s.head > 256 && s.head * 2 > s.queue.length) {
          s.queue = s.queue.slice(s.head);
          s.head = 0;
        }
      }
    }
    if (s.turnEnded && s.head === s.queue.length) {
      if (!s.speaking) {
        this.#remove(s.session);  // a turn that produced no audio: nothing to stop
        return;
      }
      if (s.stopAt === null) s.stopAt = Math.max(s.playhead, now) + this.#grace;
      if (now >= s.stopAt) {
        s.session.sendTtsStop();
        this.#remove(s.session);
      }
    }
  }

  close(): void {
    if (this.#timer) this.#timers.clearInterval(this.#timer);
    this.#timer = null;
    this.#states.clear();
  }
}
