// The audio pipeline: every device session's audio, both directions, processed on the libuv
// threadpool by the addon (see native/pipeline/scheduler.h). The event loop only copies bytes in
// (push) and receives batches out: one dispatcher call per threadpool completion carries the
// results of many frames of many streams, which are routed here to each stream's callback.
import { availableParallelism } from 'node:os';
import { native, type NativePipelineHandle } from './addon.js';
import {

  expectBoolean,
  expectBytes,
  expectInteger,
  expectOneOf,
  expectOptions,
  rangeError,
  rejectUnknownKeys,
  typeError,
  describe,
} from './errors.js';
import { readMetrics, type MetricsLayout, type MetricsSnapshot } from './metrics.js';
import type { OpusApplication, OpusSignal } from './opus.js';

/** One rung of the downlink encoder ladder under load (cheaper with each rung). */
export interface EncoderRung {
  complexity: number;
  /** Force CELT-only coding (the cheapest Opus mode). */
  celtOnly: boolean;
  /** Bits/s on this rung (default: the stream's own). Bitrate costs bandwidth, hardly any CPU. */
  bitrate?: number;
}

/**
 * Default downlink encoder and ladder, chosen by the quality-vs-CPU study (bench/quality-study/run.ts,
 * results in bench/quality-study/RESULTS.md and the README): voip complexity 6 at 32 kbps scores
 * PESQ-WB 4.18 against the predecessor's 4.14 (audio, complexity 9, 25 kbps) for 0.74x its CPU.
 * Under load the ladder trades bandwidth for CPU, which keeps the quality at the predecessor's:
 * bitrate costs the encoder almost nothing, and forced CELT at 64 kbps scores above hybrid at 32.
 * Measured on the pipeline benchmark's speech (PESQ-WB; predecessor 3.77, level 0 3.83; CPU vs
 * level 0): hybrid c4 at 40 kbps 3.85 (0.8x), CELT c8 at 64 kbps 4.06 (~0.3x), CELT c0 at 64 kbps
 * 3.92 (0.14x). At 32 kbps the same CELT rungs score 3.1-3.2: the old ladder lost 0.6 MOS under load.
 */
export const DEFAULT_DOWNLINK_ENCODER = Object.freeze({
  application: 'voip' as OpusApplication,
  complexity: 6,
  bitrate: 32000,
  signal: 'voice' as OpusSignal,
});
export const DEFAULT_ENCODER_LADDER: readonly EncoderRung[] = Object.freeze([
  { complexity: 4, celtOnly: false, bitrate: 40000 },
  { complexity: 8, celtOnly: true, bitrate: 64000 },
  { complexity: 0, celtOnly: true, bitrate: 64000 },
]);

export interface AudioPipelineOptions {
  /** Threadpool tasks in flight at once (default: CPU count, at most 4 — libuv's default pool size). */
  maxWorkers?: number;
  /** Uplink datagrams queued per stream before the oldest is dropped (default 64 ≈ 3.8 s of 60 ms frames). */
  queueCapacity?: number;
  /** Downlink PCM chunks queued per stream before the oldest is dropped (default 256 ≈ 2.5 s of 10 ms chunks). */
  downlinkQueueCapacity?: number;
  /** Items of one stream processed per turn, for fairness between streams (default 8). */
  batchPerStream?: number;
  /** A threadpool task returns to the event loop after this much work (default 4 ms). */
  workerBudgetMs?: number;
  /** Frame queue wait above which the encoder ladder steps down (default 15 ms). */
  waitBudgetMs?: number;
  /**
   * A threadpool task out of work waits this long for more (within workerBudgetMs) before it ends
   * (default 1 ms; 0 = end at once): input pushed meanwhile wakes it directly, which costs the
   * event loop less than starting a task and handling its completion.
   */
  lingerMs?: number;
  /** Follow the encoder ladder under load (default true). */
  adaptive?: boolean;
  ladder?: readonly EncoderRung[];
}

export interface UplinkFrame {
  /** Int16 mono PCM at the stream's output rate. A view into the batch buffer (8-byte aligned offset). */
  pcm: Int16Array;
  sampleRate: number;
  /** Sequence number of the datagram this frame came from (or stands in for, when concealed). */
  sequence: number;
  /** The tag given to push() with the datagram. */
  tag: number;
  /** Produced by packet loss concealment for a missing datagram. */
  concealed: boolean;
  /** Stands in for the datagram just before the next one, decoded from that datagram's in-band FEC
   *  (libopus falls back to concealment when it carries none). */
  recovered: boolean;
}

export interface DownlinkPacket {
  /** Header + encrypted Opus: send as is. A view into the batch buffer. */
  datagram: Uint8Array;
  sequence: number;
  /** Header timestamp (media clock in ms). */
  timestamp: number;
  /** Last datagram of a turn ended by flush(), when it had not been delivered before the flush was
   *  processed (best effort: silence-gated tails or a late flush leave it unmarked; onTurnEnd is
   *  the reliable signal). */
  lastOfTurn: boolean;
}

export interface UplinkOptions {
  key: Uint8Array;
  nonce: Uint8Array;
  /** Device uplink rate (default 16000). */
  decodeRate?: number;
  /** Output PCM rate (default 48000, what LiveKit sources want). */
  outputRate?: number;
  /** Expected frame duration; packets of other durations are dropped (default 60; 0 = any). */
  frameMs?: number;
  /** Gaps up to this many frames are filled by PLC/FEC (default 3). */
  maxConcealedFrames?: number;
  /** Largest forward sequence jump accepted (default 1024). */
  maxSequenceJump?: number;
  onFrame: (frame: UplinkFrame) => void;
  /** Verdicts on datagrams passed to probe() (see UplinkStream.probe). */
  onProbe?: (probe: UplinkProbe) => void;
  /** Called after every datagram pushed before drain(tag) has produced its frames. */
  onDrained?: (tag: number) => void;
}

export interface UplinkProbe {
  tag: number;
  /** Fresh sequence, decrypts to a well-formed Opus packet of the stream's shape. */
  valid: boolean;
  /** The datagram's sequence (0 when invalid). */
  sequence: number;
}

export interface DownlinkEncoderOptions {
  application?: OpusApplication;
  /** bits/s (default 32000). */
  bitrate?: number;
  /** 0..10 (default 6). */
  complexity?: number;
  vbr?: boolean;
  inbandFec?: boolean;
  packetLossPercent?: number;
  signal?: OpusSignal;
  /** Start in CELT-only mode. */
  celtOnly?: boolean;
}

export interface DownlinkOptions {
  key: Uint8Array;
  nonce: Uint8Array;
  /** Rate of the PCM pushed in (default 48000). */
  inputRate?: number;
  /** Device decode rate from the hello reply (default 24000). */
  deviceRate?: number;
  /** Device frame duration (default 60). */
  frameMs?: number;
  encoder?: DownlinkEncoderOptions;
  /** Follow the pipeline's encoder ladder under load (default true). */
  adaptive?: boolean;
  /** Frames whose every |sample| is <= this are not sent (counted); 0 = off (default). */
  silenceThreshold?: number;
  onPacket: (packet: DownlinkPacket) => void;
  /** Every datagram of the turn ended by flush() has been delivered to onPacket. */
  onTurnEnd?: () => void;
}

const RESULT_UPLINK_PCM = 0;
const RESULT_DOWNLINK_DATAGRAM = 1;
const RESULT_TURN_END = 2;
const RESULT_UPLINK_PROBE = 3;
const RESULT_UPLINK_DRAINED = 4;
const FLAG_CONCEALED = 1;
const FLAG_RECOVERED = 2;
const FLAG_LAST_OF_TURN = 4;
const FLAG_PROBE_VALID = 8;
const META_FIELDS = 8;
const U32_MAX = 0xffffffff;

type NativePipeline = NativePipelineHandle;

interface Route {
  uplink: boolean;
  rate: number;
  epoch: number;
  deliver(meta: Uint32Array, i: number, data: ArrayBuffer): void;
}

const APPLICATIONS: readonly OpusApplication[] = ['voip', 'audio', 'restricted-lowdelay'];
const SIGNALS: readonly OpusSignal[] = ['auto', 'voice', 'music'];

function expectCallback(name: string, value: unknown): (...args: never[]) => void {
  if (typeof value !== 'function') throw typeError('ERR_INVALID_ARG_TYPE', `${name}: expected a function, got ${describe(value)}`);
  return value as (...args: never[]) => void;
}

function closedError(what: string): Error {
  return typeError('ERR_CLOSED', `${what} is closed`);
}

export class AudioPipeline {
  readonly options: Readonly<Required<Omit<AudioPipelineOptions, 'ladder'>>> & { ladder: readonly EncoderRung[] };
  #native: NativePipeline;
  #routes = new Map<number, Route>();
  #layout: MetricsLayout;
  #words: BigUint64Array;
  #closed = false;
  /** Errors thrown by stream callbacks; they are reported, never allowed to break the batch. */
  onCallbackError: (err: unknown) => void = (err) => {
    queueMicrotask(() => {
      throw err;
    });
  };

  constructor(options: AudioPipelineOptions = {}) {
    const o = expectOptions('options', options);
    rejectUnknownKeys('AudioPipeline options', o, ['maxWorkers', 'queueCapacity', 'downlinkQueueCapacity', 'batchPerStream', 'workerBudgetMs', 'waitBudgetMs', 'lingerMs', 'adaptive', 'ladder']);
    const ladder = o.ladder === undefined ? DEFAULT_ENCODER_LADDER : validateLadder(o.ladder);
    this.options = Object.freeze({
      maxWorkers: o.maxWorkers === undefined ? Math.min(availableParallelism(), 4) : expectInteger('options.maxWorkers', o.maxWorkers, 1, 64),
      queueCapacity: o.queueCapacity === undefined ? 64 : expectInteger('options.queueCapacity', o.queueCapacity, 1, 4096),
      downlinkQueueCapacity: o.downlinkQueueCapacity === undefined ? 256 : expectInteger('options.downlinkQueueCapacity', o.downlinkQueueCapacity, 1, 16384),
      batchPerStream: o.batchPerStream === undefined ? 8 : expectInteger('options.batchPerStream', o.batchPerStream, 1, 256),
      workerBudgetMs: o.workerBudgetMs === undefined ? 4 : expectFiniteRange('options.workerBudgetMs', o.workerBudgetMs, 0.1, 1000),
      waitBudgetMs: o.waitBudgetMs === undefined ? 15 : expectFiniteRange('options.waitBudgetMs', o.waitBudgetMs, 0.1, 10000),
      lingerMs: o.lingerMs === undefined ? 1 : expectFiniteRange('options.lingerMs', o.lingerMs, 0, 1000),
      adaptive: o.adaptive === undefined ? true : expectBoolean('options.adaptive', o.adaptive),
      ladder,
    });
    this.#native = new native.NativePipeline(
      {
        maxWorkers: this.options.maxWorkers,
        queueCapacity: this.options.queueCapacity,
        downlinkQueueCapacity: this.options.downlinkQueueCapacity,
        batchPerStream: this.options.batchPerStream,
        workerBudgetUs: Math.round(this.options.workerBudgetMs * 1000),
        waitBudgetUs: Math.round(this.options.waitBudgetMs * 1000),
        lingerUs: Math.round(this.options.lingerMs * 1000),
        adaptive: this.options.adaptive,
        baseComplexity: DEFAULT_DOWNLINK_ENCODER.complexity,
        ladder: ladder.map((r) => ({ complexity: r.complexity, celtOnly: r.celtOnly, bitrate: r.bitrate ?? 0 })),
      },
      (meta, data, count) => this.#dispatch(meta, data, count),
    );
    this.#layout = this.#native.metricsLayout();
    this.#words = new BigUint64Array(this.#native.metrics());
  }

  /** `meta` is reused by the next delivery: its first `n` results are read here, never kept. */
  #dispatch(meta: Uint32Array, data: ArrayBuffer, n: number): void {
    for (let i = 0; i < n; i++) {
      const route = this.#routes.get(meta[i * META_FIELDS]!);
      if (!route) continue;  // closed between production and delivery
      try {
        route.deliver(meta, i * META_FIELDS, data);
      } catch (err) {
        this.onCallbackError(err);
      }
    }
  }

  #check(): NativePipeline {
    if (this.#closed) throw closedError('AudioPipeline');
    return this.#native;
  }

  createUplink(options: UplinkOptions): UplinkStream {
    const p = this.#check();
    const o = expectOptions('options', options);
    rejectUnknownKeys('uplink options', o, ['key', 'nonce', 'decodeRate', 'outputRate', 'frameMs', 'maxConcealedFrames', 'maxSequenceJump', 'onFrame', 'onProbe', 'onDrained']);
    const key = expectBytes('options.key', o.key, 16);
    const nonce = expectBytes('options.nonce', o.nonce, 16);
    const onFrame = expectCallback('options.onFrame', o.onFrame) as UplinkOptions['onFrame'];
    const onProbe = (o.onProbe === undefined ? () => {} : expectCallback('options.onProbe', o.onProbe)) as NonNullable<UplinkOptions['onProbe']>;
    const onDrained = (o.onDrained === undefined ? () => {} : expectCallback('options.onDrained', o.onDrained)) as NonNullable<UplinkOptions['onDrained']>;
    const n: Record<string, number> = {};
    const rate = (name: string, v: unknown, d: number): number => {
      const r = v === undefined ? d : expectInteger(`options.${name}`, v, 8000, 48000);
      if (![8000, 12000, 16000, 24000, 48000].includes(r)) throw rangeError('ERR_OUT_OF_RANGE', `options.${name}: expected 8000, 12000, 16000, 24000 or 48000, got ${r}`);
      return r;
    };
    n.decodeRate = rate('decodeRate', o.decodeRate, 16000);
    n.outputRate = rate('outputRate', o.outputRate, 48000);
    n.frameMs = o.frameMs === undefined ? 60 : expectOneOfNumbers('options.frameMs', o.frameMs, [0, 10, 20, 40, 60]);
    n.maxConcealedFrames = o.maxConcealedFrames === undefined ? 3 : expectInteger('options.maxConcealedFrames', o.maxConcealedFrames, 0, 50);
    n.maxSequenceJump = o.maxSequenceJump === undefined ? 1024 : expectInteger('options.maxSequenceJump', o.maxSequenceJump, 1, 2 ** 30);
    const id = p.createUplink(key, nonce, n);
    const stream = new UplinkStream(this, p, id);
    const outputRate = n.outputRate;
    this.#routes.set(id, {
      uplink: true,
      rate: outputRate,
      epoch: 0,
      deliver(meta, i, data) {
        const kind = meta[i + 1];
        const flags = meta[i + 2]!;
        if (kind === RESULT_UPLINK_PROBE) {
          onProbe({ tag: meta[i + 5]!, valid: (flags & FLAG_PROBE_VALID) !== 0, sequence: meta[i + 6]! });
          return;
        }
        if (kind === RESULT_UPLINK_DRAINED) {
          onDrained(meta[i + 5]!);
          return;
        }
        if (kind !== RESULT_UPLINK_PCM) return;
        onFrame({
          pcm: new Int16Array(data, meta[i + 3]!, meta[i + 4]! >> 1),
          sampleRate: outputRate,
          sequence: meta[i + 6]!,
          tag: meta[i + 5]!,
          concealed: (flags & FLAG_CONCEALED) !== 0,
          recovered: (flags & FLAG_RECOVERED) !== 0,
        });
      },
    });
    return stream;
  }

  createDownlink(options: DownlinkOptions): DownlinkStream {
    const p = this.#check();
    const o = expectOptions('options', options);
    rejectUnknownKeys('downlink options', o, ['key', 'nonce', 'inputRate', 'deviceRate', 'frameMs', 'encoder', 'adaptive', 'silenceThreshold', 'onPacket', 'onTurnEnd']);
    const key = expectBytes('options.key', o.key, 16);
    const nonce = expectBytes('options.nonce', o.nonce, 16);
    const onPacket = expectCallback('options.onPacket', o.onPacket) as DownlinkOptions['onPacket'];
    const onTurnEnd = (o.onTurnEnd === undefined ? () => {} : expectCallback('options.onTurnEnd', o.onTurnEnd)) as () => void;
    const n: Record<string, number | boolean> = {};
    n.inputRate = o.inputRate === undefined ? 48000 : expectInteger('options.inputRate', o.inputRate, 8000, 192000);
    n.deviceRate = o.deviceRate === undefined ? 24000 : expectOneOfNumbers('options.deviceRate', o.deviceRate, [8000, 12000, 16000, 24000, 48000]);
    n.frameMs = o.frameMs === undefined ? 60 : expectOneOfNumbers('options.frameMs', o.frameMs, [10, 20, 40, 60]);
    n.adaptive = o.adaptive === undefined ? true : expectBoolean('options.adaptive', o.adaptive);
    n.silenceThreshold = o.silenceThreshold === undefined ? 0 : expectInteger('options.silenceThreshold', o.silenceThreshold, 0, 32767);
    const e = o.encoder === undefined ? {} : expectOptions('options.encoder', o.encoder);
    rejectUnknownKeys('downlink encoder options', e, ['application', 'bitrate', 'complexity', 'vbr', 'inbandFec', 'packetLossPercent', 'signal', 'celtOnly']);
    n.application = APPLICATIONS.indexOf(e.application === undefined ? DEFAULT_DOWNLINK_ENCODER.application : expectOneOf('options.encoder.application', e.application, APPLICATIONS));
    n.bitrate = e.bitrate === undefined ? DEFAULT_DOWNLINK_ENCODER.bitrate : expectInteger('options.encoder.bitrate', e.bitrate, 6000, 510000);
    n.complexity = e.complexity === undefined ? DEFAULT_DOWNLINK_ENCODER.complexity : expectInteger('options.encoder.complexity', e.complexity, 0, 10);
    if (e.vbr !== undefined) n.vbr = expectBoolean('options.encoder.vbr', e.vbr);
    if (e.inbandFec !== undefined) n.inbandFec = expectBoolean('options.encoder.inbandFec', e.inbandFec);
    if (e.packetLossPercent !== undefined) n.packetLossPercent = expectInteger('options.encoder.packetLossPercent', e.packetLossPercent, 0, 100);
    n.signal = SIGNALS.indexOf(e.signal === undefined ? DEFAULT_DOWNLINK_ENCODER.signal : expectOneOf('options.encoder.signal', e.signal, SIGNALS));
    if (e.celtOnly !== undefined) n.celtOnly = expectBoolean('options.encoder.celtOnly', e.celtOnly);
    const id = p.createDownlink(key, nonce, n);
    const stream = new DownlinkStream(this, p, id);
    const route: Route = {
      uplink: false,
      rate: n.deviceRate,
      epoch: 0,
      deliver(meta, i, data) {
        if (meta[i + 5] !== route.epoch) return;  // produced before an abort(): discard
        const kind = meta[i + 1];
        if (kind === RESULT_DOWNLINK_DATAGRAM) {
          onPacket({
            datagram: new Uint8Array(data, meta[i + 3]!, meta[i + 4]!),
            sequence: meta[i + 6]!,
            timestamp: meta[i + 7]!,
            lastOfTurn: (meta[i + 2]! & FLAG_LAST_OF_TURN) !== 0,
          });
        } else if (kind === RESULT_TURN_END) {
          onTurnEnd();
        }
      },
    };
    this.#routes.set(id, route);
    stream._route = route;
    return stream;
  }

  /** @internal */
  _forget(id: number): void {
    this.#routes.delete(id);
  }

  /** Totals and histogram percentiles from the native metrics block (no call into the addon). */
  metrics(): MetricsSnapshot {
    return readMetrics(this.#words, this.#layout);
  }

  /** The raw metrics block (BigUint64Array over native memory) and its layout. */
  get metricsBlock(): { words: BigUint64Array; layout: MetricsLayout } {
    return { words: this.#words, layout: this.#layout };
  }

  /** Forces the encoder ladder level (0 = configured quality; k = rung k-1). Normally automatic. */
  setEncoderLevel(level: number): void {
    this.#check().setLadderLevel(expectInteger('level', level, 0, this.options.ladder.length));
  }

  /** Threadpool tasks queued or running. */
  get tasksInFlight(): number {
    return this.#native.tasksInFlight;
  }

  get openStreams(): number {
    return this.#routes.size;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /** Closes every stream. Work in flight settles on the threadpool; its results are discarded. */
  close(): void {
    const p = this.#check();
    this.#closed = true;
    this.#routes.clear();
    p.close();
  }
}

abstract class PipelineStream {
  readonly id: number;
  protected readonly pipeline: AudioPipeline;
  protected readonly native: NativePipeline;
  #closed = false;

  constructor(pipeline: AudioPipeline, native: NativePipeline, id: number) {
    this.pipeline = pipeline;
    this.native = native;
    this.id = id;
  }

  protected check(what: string): void {
    if (this.#closed || this.pipeline.closed) throw closedError(what);
  }

  get closed(): boolean {
    return this.#closed || this.pipeline.closed;
  }

  /** No more input; queued work is dropped, work in flight settles and its results are discarded. */
  close(): void {
    this.check(this.constructor.name);
    this.#closed = true;
    this.pipeline._forget(this.id);
    this.native.closeStream(this.id);
  }
}

/** Result of push(): whether the input was queued, and whether the queue had to drop its oldest item. */
export type PushOutcome = 'queued' | 'queued-dropped-oldest';

function outcome(code: number, what: string): PushOutcome {
  switch (code) {
    case 0: return 'queued';
    case 1: return 'queued-dropped-oldest';
    case 2: throw closedError(what);
    default: throw rangeError('ERR_PACKET_TOO_LARGE', `${what}: datagram larger than 1500 bytes`);
  }
}

export class UplinkStream extends PipelineStream {
  /** Queues one received datagram (copied). `tag` (u32) comes back with every frame it produces. */
  push(datagram: Uint8Array, tag = 0): PushOutcome {
    this.check('UplinkStream');
    expectBytes('datagram', datagram);
    return outcome(this.native.push(this.id, datagram, expectInteger('tag', tag, 0, U32_MAX)), 'UplinkStream');
  }

  /**
   * Checks a datagram from an address that has not proven itself, in order with the stream's other
   * input: header, fresh sequence, decryption, Opus shape. Nothing is decoded or committed (a
   * forged datagram changes no state); the verdict arrives at options.onProbe with `tag`.
   */
  probe(datagram: Uint8Array, tag: number): PushOutcome {
    this.check('UplinkStream');
    expectBytes('datagram', datagram);
    return outcome(this.native.push(this.id, datagram, expectInteger('tag', tag, 0, U32_MAX), true), 'UplinkStream');
  }

  /** options.onDrained(tag) follows once every datagram pushed so far has produced its frames. */
  drain(tag = 0): void {
    this.check('UplinkStream');
    outcome(this.native.flush(this.id, expectInteger('tag', tag, 0, U32_MAX)), 'UplinkStream');
  }
}

export class DownlinkStream extends PipelineStream {
  /** @internal */
  _route!: Route;

  /** Queues agent PCM (copied): any length, Int16 or Float32, at the stream's input rate. */
  push(pcm: Int16Array | Float32Array): PushOutcome {
    this.check('DownlinkStream');
    if (!(pcm instanceof Int16Array) && !(pcm instanceof Float32Array)) {
      throw typeError('ERR_INVALID_ARG_TYPE', `pcm: expected Int16Array or Float32Array, got ${describe(pcm)}`);
    }
    if (pcm.length === 0) return 'queued';
    return outcome(this.native.push(this.id, pcm, this._route.epoch), 'DownlinkStream');
  }

  /** End of a speech turn: the last partial frame is padded and sent; onTurnEnd follows the last datagram. */
  flush(): void {
    this.check('DownlinkStream');
    outcome(this.native.flush(this.id, this._route.epoch), 'DownlinkStream');
  }

  /**
   * Barge-in: queued and buffered audio is dropped (counted) and nothing produced before this call
   * is delivered any more.
   */
  abort(): void {
    this.check('DownlinkStream');
    this._route.epoch = (this._route.epoch + 1) >>> 0;
    this.native.abort(this.id, this._route.epoch);
  }
}

function expectFiniteRange(name: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number') throw typeError('ERR_INVALID_ARG_TYPE', `${name}: expected a number in [${min}, ${max}], got ${describe(value)}`);
  if (!Number.isFinite(value) || value < min || value > max) throw rangeError('ERR_OUT_OF_RANGE', `${name}: expected a number in [${min}, ${max}], got ${value}`);
  return value;
}

function expectOneOfNumbers(name: string, value: unknown, allowed: number[]): number {
  const v = expectInteger(name, value, Math.min(...allowed), Math.max(...allowed));
  if (!allowed.includes(v)) throw rangeError('ERR_OUT_OF_RANGE', `${name}: expected one of ${allowed.join(', ')}, got ${v}`);
  return v;
}

function validateLadder(value: unknown): EncoderRung[] {
  if (!Array.isArray(value) || value.length === 0) {
    throw typeError('ERR_INVALID_ARG_TYPE', `options.ladder: expected a non-empty array of { complexity, celtOnly, bitrate? }, got ${describe(value)}`);
  }
  return value.map((r, i) => {
    const o = expectOptions(`options.ladder[${i}]`, r);
    rejectUnknownKeys(`options.ladder[${i}]`, o, ['complexity', 'celtOnly', 'bitrate']);
    return {
      complexity: expectInteger(`options.ladder[${i}].complexity`, o.complexity, 0, 10),
      celtOnly: expectBoolean(`options.ladder[${i}].celtOnly`, o.celtOnly),
      ...(o.bitrate === undefined ? {} : { bitrate: expectInteger(`options.ladder[${i}].bitrate`, o.bitrate, 500, 512000) }),
    };
  });
}

