// The device's downlink audio path for one simulated device: datagram rules (receiver.ts), the
// speaking-state gate (Application::OnIncomingAudio plays only in kDeviceStateSpeaking), the
// 40-packet decode queue (playback.ts) and its own Opus decoder (decoder.ts). It also measures what
// the firmware only logs: latency, loss/reorder, drops by reason, and audio that arrives after the
// turn's tts stop. The device state machine (device.ts) tells it about control events; every call
// takes the time, so tests drive it with hand-made datagrams and times.
import { ENVELOPE_BLOCKS_PER_FRAME, envelopeCorrelation } from './audio.js';
import type { DecodeResult, DecodeService } from './decoder.js';
import type { FirmwareRules } from './firmware.js';
import { PlaybackModel } from './playback.js';
import { DownlinkReceiver, HEADER_SIZE, SequenceTracker, type DropReason, type PacketCipher } from './receiver.js';
import type { DeviceStats } from './stats.js';

/** Why audio arriving outside the speaking state is dropped. */
export type IdlePhase = 'before-tts-start' | 'after-tts-stop' | 'after-abort';

export interface TurnRecord {
  id: number;
  listenStopAt: number | null;
  ttsStartAt: number | null;
  ttsStopAt: number | null;
  abortAt: number | null;
  firstAudioAt: number | null;
  lastAudioAt: number | null;
  /** Downlink packets queued for playback in this turn. */
  packets: number;
  /** Uplink frames sent in this turn and their envelope. */
  sentFrames: number;
  sentEnvelope: number[];
  receivedEnvelope: number[];
  pendingDecodes: number;
  finalized: boolean;
}

export interface AudioSinkOptions {
  rules: FirmwareRules;
  decoder: DecodeService;
  /** Index of the device (decoder key). */
  device: number;
  stats: DeviceStats;
  /** Server AEC: feed played timestamps back into the uplink. */
  recordTimestamps?: boolean;
  /** Audio later than abort + one frame + this is counted as late (ms, default 150). */
  abortToleranceMs?: number;
  decodeQueueCapacity?: number;
  /** Skip the Opus decode (no decode-failure drops, no fidelity). */
  decode?: boolean;
}

export class AudioSink {
  readonly options: AudioSinkOptions;
  readonly stats: DeviceStats;
  readonly playback: PlaybackModel;
  #receiver: DownlinkReceiver | null = null;
  #tracker = new SequenceTracker();
  #speaking = false;
  #phase: IdlePhase = 'before-tts-start';
  #sampleRate = 24000;
  #frameMs = 60;
  #turn: TurnRecord | null = null;
  #turns = new Map<number, TurnRecord>();
  /** The barge-in whose tail is still arriving (until the next reply or listen stop). */
  #abort: { at: number; lastAt: number | null } | null = null;

  constructor(options: AudioSinkOptions) {
    this.options = options;
    this.stats = options.stats;
    this.playback = new PlaybackModel({
      recordTimestamps: options.recordTimestamps ?? false,
      ...(options.decodeQueueCapacity !== undefined ? { decodeQueueCapacity: options.decodeQueueCapacity } : {}),
    });
  }

  get speaking(): boolean {
    return this.#speaking;
  }
  get phase(): IdlePhase {
    return this.#phase;
  }
  get turn(): TurnRecord | null {
    return this.#turn;
  }
  get sampleRate(): number {
    return this.#sampleRate;
  }
  get remoteSequence(): number {
    return this.#receiver?.remoteSequence ?? 0;
  }
  get channelOpen(): boolean {
    return this.#receiver !== null;
  }

  /**
   * An accepted hello: new key, remote sequence 0. Rate and frame duration persist from earlier
   * hellos when this one omits them (server_sample_rate_ is a member, defaults 24000/60).
   */
  openChannel(cipher: PacketCipher, sampleRate?: number, frameDuration?: number): void {
    this.#settleTracker();
    this.#receiver = new DownlinkReceiver(this.options.rules, cipher);
    if (sampleRate !== undefined) this.#sampleRate = sampleRate;
    if (frameDuration !== undefined && frameDuration > 0) this.#frameMs = frameDuration;
  }

  /** Re-key without re-opening the socket (a hello reply arriving while the channel is open). */
  rekey(cipher: PacketCipher, sampleRate?: number, frameDuration?: number): void {
    this.openChannel(cipher, sampleRate, frameDuration);
  }

  closeChannel(now: number): void {
    this.#settleTracker();
    this.#receiver = null;
    this.#speaking = false;
    this.#setPhase('before-tts-start');
    this.playback.reset(now);
  }

  #settleTracker(): void {
    this.stats.lost += this.#tracker.lost;
    this.stats.reordered += this.#tracker.reordered;
    this.stats.duplicates += this.#tracker.duplicates;
    this.#tracker = new SequenceTracker();
  }

  /** Network counters of the channel still open (for live progress). */
  get liveLoss(): { lost: number; reordered: number; duplicates: number } {
    return { lost: this.#tracker.lost, reordered: this.#tracker.reordered, duplicates: this.#tracker.duplicates };
  }

  beginTurn(id: number): TurnRecord {
    const t: TurnRecord = {
      id, listenStopAt: null, ttsStartAt: null, ttsStopAt: null, abortAt: null, firstAudioAt: null,
      lastAudioAt: null, packets: 0, sentFrames: 0, sentEnvelope: [],
      receivedEnvelope: [], pendingDecodes: 0, finalized: false,
    };
    this.#turn = t;
    this.#turns.set(id, t);
    return t;
  }

  /** One uplink frame of the current turn (its envelope, for the echo comparison). */
  noteSent(envelope: Float32Array, frame: number): void {
    const t = this.#turn;
    if (!t) return;
    t.sentFrames++;
    const base = frame * ENVELOPE_BLOCKS_PER_FRAME;
    for (let b = 0; b < ENVELOPE_BLOCKS_PER_FRAME; b++) t.sentEnvelope.push(envelope[base + b] ?? 0);
  }

  /** The device sent listen stop: the reply's latency clock starts; audio now belongs to the next reply. */
  listenStop(now: number): void {
    if (this.#turn && this.#turn.listenStopAt === null) this.#turn.listenStopAt = now;
    if (!this.#speaking) this.#setPhase('before-tts-start');
  }

  #setPhase(p: IdlePhase): void {
    if (this.#phase === 'after-abort' && p !== 'after-abort') this.#settleAbort();
    this.#phase = p;
  }

  #settleAbort(): void {
    const a = this.#abort;
    if (!a) return;
    this.#abort = null;
    this.stats.abortStopMs.push(a.lastAt !== null ? a.lastAt - a.at : 0);
  }

  /** tts start: kDeviceStateSpeaking, ResetDecoder(). Already speaking: a no-op (same-state transition). */
  ttsStart(now: number): void {
    if (this.#speaking) return;
    this.#speaking = true;
    if (this.#phase === 'after-abort') this.#setPhase('before-tts-start');
    this.playback.reset(now);
    if (this.options.decode !== false) this.options.decoder.reset(this.options.device);
    const t = this.#turn;
    if (t && t.ttsStartAt === null) {
      t.ttsStartAt = now;
      if (t.listenStopAt !== null) this.stats.ttsStartMs.push(now - t.listenStopAt);
    }
  }

  /** tts stop while speaking: leave the speaking state; queued audio keeps playing. */
  ttsStop(now: number): void {
    if (!this.#speaking) {
      this.stats.messages.ttsStopWhileNotSpeaking++;
      return;
    }
    this.#speaking = false;
    this.#setPhase('after-tts-stop');
    const t = this.#turn;
    if (t && t.ttsStopAt === null) {
      t.ttsStopAt = now;
      this.stats.turnsCompleted++;
    }
  }

  /**
   * Barge-in: abort sent and the device moved to listening (StartListening while speaking), which
   * resets the decoder: nothing more of this reply is played.
   */
  abort(now: number): void {
    const t = this.#turn;
    if (t && t.abortAt === null) t.abortAt = now;
    this.#speaking = false;
    this.#setPhase('after-abort');
    this.#abort = { at: now, lastAt: null };
    this.playback.reset(now);
    this.stats.bargeIns++;
  }

  /** The speaking state ended without tts stop (server goodbye, channel close, timeout). */
  leaveSpeaking(now: number): void {
    if (this.#speaking) this.#speaking = false;
    this.#setPhase('after-tts-stop');
    void now;
  }

  #drop(reason: DropReason): void {
    this.stats.drops[reason]++;
  }

  /** One datagram from the connected UDP socket. */
  datagram(d: Uint8Array, now: number): void {
    const s = this.stats;
    s.downlinkDatagrams++;
    s.downlinkBytes += d.length;
    const rx = this.#receiver;
    if (!rx) return;
    // The network's view (independent of the firmware's verdict): holes, reordering, duplicates.
    if (d.length >= HEADER_SIZE && d[0] === 0x01) {
      const seq = ((d[12]! << 24) | (d[13]! << 16) | (d[14]! << 8) | d[15]!) >>> 0;
      this.#tracker.observe(seq);
    }
    const v = rx.receive(d);
    if (!v.ok) {
      this.#drop(v.reason);
      return;
    }
    const t = this.#turn;
    if (t && t.listenStopAt !== null && t.firstAudioAt === null && now >= t.listenStopAt) {
      t.firstAudioAt = now;
      s.latencyMs.push(now - t.listenStopAt);
    }
    if (!this.#speaking) {
      this.#drop(this.#phase);
      if (this.#phase === 'after-tts-stop') s.ttsStopViolations++;
      else if (this.#phase === 'after-abort' && this.#abort) {
        this.#abort.lastAt = now;
        if (now - this.#abort.at > this.#frameMs + (this.options.abortToleranceMs ?? 150)) s.lateAfterAbort++;
      }
      return;
    }
    if (t) t.lastAudioAt = now;
    if (!this.playback.push(now, v.header.timestamp, this.#frameMs)) {
      this.#drop('queue-overflow');
      return;
    }
    s.downlinkQueued++;
    if (this.playback.maxDepth > s.maxQueueDepth) s.maxQueueDepth = this.playback.maxDepth;
    if (t) t.packets++;
    if (this.options.decode !== false) {
      if (t) t.pendingDecodes++;
      this.options.decoder.decode(this.options.device, t ? t.id : -1, this.#sampleRate, v.opus);
    }
  }

  /** A decode result for this device (from the decode service). */
  decoded(r: DecodeResult): void {
    if (!r.ok) this.#drop('decode');
    const t = this.#turns.get(r.tag);
    if (!t) return;
    t.pendingDecodes--;
    for (let b = 0; b < r.envelope.length; b++) t.receivedEnvelope.push(r.ok ? r.envelope[b]! : 0);
    if (t.finalized && t.pendingDecodes === 0) this.#score(t);
  }

  /** Closes the books on a turn (the next one starts or the run ends). */
  finalizeTurn(t: TurnRecord | null = this.#turn): void {
    if (!t || t.finalized) return;
    t.finalized = true;
    if (t.sentFrames > 0 && t.abortAt === null && t.ttsStopAt !== null) {
      this.stats.echoRatio.push(t.packets / t.sentFrames);
    }
    if (t.pendingDecodes <= 0) this.#score(t);
  }

  #score(t: TurnRecord): void {
    this.#turns.delete(t.id);
    if (this.options.decode === false || t.abortAt !== null || t.ttsStopAt === null) return;
    if (t.receivedEnvelope.length < 10 * ENVELOPE_BLOCKS_PER_FRAME || t.sentEnvelope.length < 10 * ENVELOPE_BLOCKS_PER_FRAME) return;
    const r = envelopeCorrelation(t.sentEnvelope, t.receivedEnvelope);
    if (Number.isFinite(r)) this.stats.fidelity.push(r);
  }

  /** Final accounting when the device shuts down. */
  close(now: number): void {
    this.#settleAbort();
    this.finalizeTurn();
    this.#settleTracker();
    this.stats.downlinkPlayed = this.playback.played;
    this.#receiver = null;
    void now;
  }
}
