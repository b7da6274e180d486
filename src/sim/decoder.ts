// Every simulated device runs its own Opus decoder over the downlink, as the firmware does (a packet
// that fails to decode is never played). Decoding either runs inline or, for many devices, in
// worker threads that receive batches, so the event loop that timestamps packets stays light.
// Decoders are keyed by device; a device's packets always go to the same worker, in order.
import { existsSync } from 'node:fs';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import { OpusDecoder } from '../native/index.js';
import { blockRms, ENVELOPE_BLOCKS_PER_FRAME } from './audio.js';

export interface DecodeResult {
  device: number;
  tag: number;
  ok: boolean;
  /** Samples per channel decoded (0 when !ok). */
  samples: number;
  sampleRate: number;
  /** ENVELOPE_BLOCKS_PER_FRAME RMS values of the decoded frame (zeros when !ok). */
  envelope: Float32Array;
}

export interface DecodeService {
  /** Queues one Opus packet of `device`; `tag` comes back with the result (the turn it belongs to). */
  decode(device: number, tag: number, sampleRate: number, payload: Uint8Array): void;
  /** esp_opus_dec_reset: the device entered the speaking state. */
  reset(device: number): void;
  /** Frees the device's decoder. */
  release(device: number): void;
  /** Resolves when every queued packet has a result. */
  flush(): Promise<void>;
  close(): Promise<void>;
  onResult: (r: DecodeResult) => void;
  readonly kind: string;
}

const OPUS_RATES = new Set([8000, 12000, 16000, 24000, 48000]);

/** The per-device decoders and the decode itself; shared by the inline service and the worker. */
export class DecoderBank {
  #decoders = new Map<number, OpusDecoder>();

  decode(device: number, sampleRate: number, payload: Uint8Array): { ok: boolean; samples: number; envelope: Float32Array } {
    const envelope = new Float32Array(ENVELOPE_BLOCKS_PER_FRAME);
    let dec = this.#decoders.get(device);
    if (dec && dec.sampleRate !== sampleRate) {
      dec.close();
      dec = undefined;
      this.#decoders.delete(device);
    }
    if (!dec) {
      // The firmware's esp_opus_dec only opens at Opus rates; any other hello rate plays nothing.
      if (!OPUS_RATES.has(sampleRate)) return { ok: false, samples: 0, envelope };
      dec = new OpusDecoder({ sampleRate: sampleRate as 8000, channels: 1 });
      this.#decoders.set(device, dec);
    }
    try {
      const pcm = dec.decode(payload);
      blockRms(pcm, ENVELOPE_BLOCKS_PER_FRAME, envelope, 0);
      return { ok: true, samples: pcm.length, envelope };
    } catch {
      return { ok: false, samples: 0, envelope };
    }
  }

  reset(device: number): void {
    this.#decoders.get(device)?.reset();
  }

  release(device: number): void {
    this.#decoders.get(device)?.close();
    this.#decoders.delete(device);
  }

  closeAll(): void {
    for (const d of this.#decoders.values()) d.close();
    this.#decoders.clear();
  }
}

export class InlineDecodeService implements DecodeService {
  readonly kind = 'inline';
  #bank = new DecoderBank();
  onResult: (r: DecodeResult) => void = () => {};

  decode(device: number, tag: number, sampleRate: number, payload: Uint8Array): void {
    const r = this.#bank.decode(device, sampleRate, payload);
    this.onResult({ device, tag, sampleRate, ...r });
  }
  reset(device: number): void {
    this.#bank.reset(device);
  }
  release(device: number): void {
    this.#bank.release(device);
  }
  async flush(): Promise<void> {}
  async close(): Promise<void> {
    this.#bank.closeAll();
  }
}

// ---- worker threads -----------------------------------------------------------------------------

type Op =
  | { k: 0; d: number; t: number; r: number; p: Uint8Array }
  | { k: 1; d: number }
  | { k: 2; d: number };

interface WorkerReply {
  batch: number;
  results: Array<{ d: number; t: number; r: number; ok: boolean; n: number; e: Float32Array }>;
}

/**
 * Where the compiled module lives: the worker is plain JavaScript and imports this very module from
 * dist/ (under vitest this file is the .ts source; the build of it sits under dist/).
 */
function compiledSelfUrl(): string {
  const self = import.meta.url;
  if (self.endsWith('.js')) return self;
  const path = fileURLToPath(self).replace(/([\\/])src([\\/])sim([\\/])decoder\.ts$/, '$1dist$1src$2sim$3decoder.js');
  if (!existsSync(path)) throw new Error(`decode workers need the compiled package (${path} is missing): run \`npx tsc -p tsconfig.build.json\``);
  return pathToFileURL(path).href;
}

const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
import(workerData.module).then(({ DecoderBank }) => {
  const bank = new DecoderBank();
  parentPort.on('message', (msg) => {
    const results = [];
    for (const op of msg.ops) {
      if (op.k === 0) {
        const r = bank.decode(op.d, op.r, op.p);
        results.push({ d: op.d, t: op.t, r: op.r, ok: r.ok, n: r.samples, e: r.envelope });
      } else if (op.k === 1) bank.reset(op.d);
      else bank.release(op.d);
    }
    parentPort.postMessage({ batch: msg.batch, results });
  });
  parentPort.postMessage({ ready: true });
});
`;

interface Lane {
  worker: Worker;
  ops: Op[];
  sent: number;
  done: number;
  ready: Promise<void>;
}

export class WorkerDecodeService implements DecodeService {
  readonly kind: string;
  onResult: (r: DecodeResult) => void = () => {};
  #lanes: Lane[];
  #scheduled = false;
  #waiters: Array<() => void> = [];
  #error: Error | null = null;

  constructor(threads: number) {
    this.kind = `${threads} worker thread${threads === 1 ? '' : 's'}`;
    const module = compiledSelfUrl();
    this.#lanes = Array.from({ length: threads }, () => {
      const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { module } });
      let resolveReady!: () => void;
      const lane: Lane = { worker, ops: [], sent: 0, done: 0, ready: new Promise((r) => (resolveReady = r)) };
      worker.on('message', (m: WorkerReply | { ready: true }) => {
        if ('ready' in m) {
          resolveReady();
          return;
        }
        lane.done = m.batch;
        for (const r of m.results) {
          this.onResult({ device: r.d, tag: r.t, ok: r.ok, samples: r.n, sampleRate: r.r, envelope: r.e });
        }
        this.#wake();
      });
      worker.on('error', (err) => {
        this.#error = err;
        resolveReady();
        this.#wake();
      });
      return lane;
    });
  }

  /** Resolves once every worker has loaded the addon. */
  async ready(): Promise<void> {
    await Promise.all(this.#lanes.map((l) => l.ready));
    if (this.#error) throw this.#error;
  }

  #lane(device: number): Lane {
    return this.#lanes[device % this.#lanes.length]!;
  }

  #queue(device: number, op: Op): void {
    this.#lane(device).ops.push(op);
    if (!this.#scheduled) {
      // Batch ~10 ms of packets per message: hundreds of devices → tens of messages per second.
      this.#scheduled = true;
      setTimeout(() => this.#send(), 10);
    }
  }

  #send(): void {
    this.#scheduled = false;
    for (const lane of this.#lanes) {
      if (lane.ops.length === 0) continue;
      const ops = lane.ops;
      lane.ops = [];
      lane.worker.postMessage({ batch: ++lane.sent, ops });
    }
  }

  #wake(): void {
    if (this.#waiters.length === 0) return;
    const idle = this.#error !== null || this.#lanes.every((l) => l.ops.length === 0 && l.done === l.sent);
    if (!idle) return;
    const w = this.#waiters;
    this.#waiters = [];
    for (const f of w) f();
  }

  decode(device: number, tag: number, sampleRate: number, payload: Uint8Array): void {
    this.#queue(device, { k: 0, d: device, t: tag, r: sampleRate, p: payload });
  }
  reset(device: number): void {
    this.#queue(device, { k: 1, d: device });
  }
  release(device: number): void {
    this.#queue(device, { k: 2, d: device });
  }

  flush(): Promise<void> {
    this.#send();
    return new Promise((resolve) => {
      this.#waiters.push(resolve);
      this.#wake();
    });
  }

  /** Must be called: the workers keep the process alive until then. */
  async close(): Promise<void> {
    await this.flush();
    await Promise.all(this.#lanes.map((l) => l.worker.terminate()));
  }
}

export async function createDecodeService(threads: number): Promise<DecodeService> {
  if (threads <= 0) return new InlineDecodeService();
  const s = new WorkerDecodeService(threads);
  await s.ready();
  return s;
}
