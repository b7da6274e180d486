// The predecessor's worker_threads pool (main-thread side), rebuilt for side-by-side benchmarks.
//
//  * 2..8 workers. Each reports its event-loop utilization (ELU) every 500 ms.
//  * Load-aware placement: a new session goes to the least-loaded worker, load = the worker's last
//    reported ELU plus an estimate for the sessions placed on it since that report (the pool's mean
//    ELU per session). Sessions never move: their Opus and resampler state lives in the worker.
//  * Growth: when the mean ELU of all workers exceeds 0.75, one more worker is started (at most one
//    per second, at most 8); new sessions then prefer it because it is idle.
//  * Every frame crosses the thread boundary in its own postMessage, both ways.
import { Worker } from 'node:worker_threads';
import type { FromWorker, ToWorker } from './protocol.js';

export interface PoolOptions {
  minWorkers?: number;
  maxWorkers?: number;
  /** Mean ELU above which the pool grows. */
  growAt?: number;
  growCooldownMs?: number;
}

export interface SessionHandlers {
  /** 48 kHz PCM of uplink datagram `tag`. */
  onPcm(tag: number, pcm: Int16Array[]): void;
  /** Downlink datagram of 60 ms frame `frame`, completed by chunk `tag`. */
  onPacket(frame: number, tag: number, datagram: Uint8Array): void;
  onReject?(tag: number): void;
}

interface WorkerState {
  worker: Worker;
  index: number;
  sessions: number;
  elu: number;
  placedSinceReport: number;
  reported: boolean;
}

export class BaselineSessionHandle {
  readonly id: number;
  #w: WorkerState;

  constructor(id: number, w: WorkerState) {
    this.id = id;
    this.#w = w;
  }

  get workerIndex(): number {
    return this.#w.index;
  }

  /** A received datagram: copied to the session's worker. */
  pushUplink(datagram: Uint8Array, tag: number): void {
    const m: ToWorker = { t: 'up', s: this.id, tag, d: datagram };
    this.#w.worker.postMessage(m);
  }

  /** A 10 ms agent chunk: its ArrayBuffer is transferred to the worker (the caller gives it up). */
  pushDownlink(chunk: Float32Array, tag: number): void {
    const m: ToWorker = { t: 'down', s: this.id, tag, d: chunk };
    this.#w.worker.postMessage(m, [chunk.buffer as ArrayBuffer]);
  }

  close(): void {
    const m: ToWorker = { t: 'close', s: this.id };
    this.#w.worker.postMessage(m);
    this.#w.sessions--;
  }
}

const WORKER_URL = new URL('./worker.js', import.meta.url);

export class WorkerPool {
  readonly options: Required<PoolOptions>;
  #workers: WorkerState[] = [];
  #handlers = new Map<number, SessionHandlers>();
  #nextId = 1;
  #lastGrow = 0;
  #errors: Error[] = [];
  /** Largest pool size reached. */
  peakWorkers = 0;

  constructor(options: PoolOptions = {}) {
    this.options = {
      minWorkers: options.minWorkers ?? 2,
      maxWorkers: options.maxWorkers ?? 8,
      growAt: options.growAt ?? 0.75,
      growCooldownMs: options.growCooldownMs ?? 1000,
    };
    for (let i = 0; i < this.options.minWorkers; i++) this.#spawn();
  }

  get size(): number {
    return this.#workers.length;
  }

  get errors(): readonly Error[] {
    return this.#errors;
  }

  /** Per worker: sessions held and last reported ELU. */
  get loads(): { sessions: number; elu: number }[] {
    return this.#workers.map((w) => ({ sessions: w.sessions, elu: w.elu }));
  }

  /** Resolves when every current worker has loaded its packages. */
  async ready(): Promise<void> {
    await Promise.all(this.#workers.map((w) => new Promise<void>((resolve) => {
      if (w.reported) return resolve();
      const on = (m: FromWorker): void => {
        if (m.t === 'ready') {
          w.worker.off('message', on);
          resolve();
        }
      };
      w.worker.on('message', on);
    })));
  }

  #spawn(): WorkerState {
    const w: WorkerState = { worker: new Worker(WORKER_URL), index: this.#workers.length, sessions: 0, elu: 0, placedSinceReport: 0, reported: false };
    w.worker.on('message', (m: FromWorker) => this.#onMessage(w, m));
    w.worker.on('error', (err) => this.#errors.push(err));
    this.#workers.push(w);
    this.peakWorkers = Math.max(this.peakWorkers, this.#workers.length);
    return w;
  }

  #onMessage(w: WorkerState, m: FromWorker): void {
    switch (m.t) {
      case 'pcm':
        this.#handlers.get(m.s)?.onPcm(m.tag, m.d);
        return;
      case 'pkt':
        this.#handlers.get(m.s)?.onPacket(m.frame, m.tag, m.d);
        return;
      case 'reject':
        this.#handlers.get(m.s)?.onReject?.(m.tag);
        return;
      case 'load':
        w.elu = m.elu;
        w.placedSinceReport = 0;
        w.reported = true;
        this.#maybeGrow();
        return;
      case 'ready':
        w.reported = true;
        return;
    }
  }

  #meanElu(): number {
    return this.#workers.reduce((a, w) => a + w.elu, 0) / this.#workers.length;
  }

  #maybeGrow(): void {
    if (this.#workers.length >= this.options.maxWorkers) return;
    const now = performance.now();
    if (now - this.#lastGrow < this.options.growCooldownMs) return;
    if (this.#meanElu() <= this.options.growAt) return;
    this.#lastGrow = now;
    this.#spawn();
  }

  #leastLoaded(): WorkerState {
    const sessions = this.#workers.reduce((a, w) => a + w.sessions, 0);
    const elu = this.#workers.reduce((a, w) => a + w.elu, 0);
    const perSession = sessions > 0 && elu > 0 ? elu / sessions : 0.01;
    let best = this.#workers[0]!;
    let bestLoad = Infinity;
    for (const w of this.#workers) {
      const load = w.elu + w.placedSinceReport * perSession;
      if (load < bestLoad || (load === bestLoad && w.sessions < best.sessions)) {
        best = w;
        bestLoad = load;
      }
    }
    return best;
  }

  createSession(key: Uint8Array, nonce: Uint8Array, handlers: SessionHandlers): BaselineSessionHandle {
    const w = this.#leastLoaded();
    const id = this.#nextId++;
    this.#handlers.set(id, handlers);
    w.sessions++;
    w.placedSinceReport++;
    const m: ToWorker = { t: 'open', s: id, key: Uint8Array.from(key), nonce: Uint8Array.from(nonce) };
    w.worker.postMessage(m);
    return new BaselineSessionHandle(id, w);
  }

  async close(): Promise<void> {
    this.#handlers.clear();
    await Promise.all(this.#workers.map((w) => w.worker.terminate()));
    this.#workers = [];
  }
}
