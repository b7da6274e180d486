// Messages between the predecessor's main thread (bench/baseline/pool.ts) and its pool workers
// (bench/baseline/worker.ts): one postMessage per frame in each direction, as the predecessor did.

export type ToWorker =
  | { t: 'open'; s: number; key: Uint8Array; nonce: Uint8Array }
  /** A received UDP datagram (structured-clone copy: small, and dgram's Buffer may be pooled). */
  | { t: 'up'; s: number; tag: number; d: Uint8Array }
  /** A 10 ms agent chunk; its ArrayBuffer is transferred. */
  | { t: 'down'; s: number; tag: number; d: Float32Array }
  | { t: 'close'; s: number };

export type FromWorker =
  /** Resampled 48 kHz PCM of one uplink datagram (buffers transferred). */
  | { t: 'pcm'; s: number; tag: number; d: Int16Array[] }
  /** A downlink datagram: `frame` = index of the 60 ms frame, `tag` = the chunk that completed it. */
  | { t: 'pkt'; s: number; tag: number; frame: number; d: Uint8Array }
  /** Uplink datagram rejected (header, sequence or decode). */
  | { t: 'reject'; s: number; tag: number }
  /** Event-loop utilization since the last report, and sessions held. */
  | { t: 'load'; elu: number; sessions: number }
  | { t: 'ready' };
