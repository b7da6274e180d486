// What the pipeline benchmark's parent (bench/pipeline/main.ts) and its child processes
// (bench/pipeline/child.ts) exchange over the IPC channel. Plain JSON.

/** `equal`: the predecessor's encoder settings (@discordjs/opus defaults); `default`: ours. */
export type Settings = 'equal' | 'default';
/** `generator`: the load generator alone, against a target that answers every push at once (no
 *  audio work): the apparatus's own CPU at N streams, which every design's CPU figure includes. */
export type Design = 'ours' | 'baseline' | 'generator';

export interface LoadRequest {
  kind: 'load';
  design: Design;
  streams: number;
  settings: Settings;
  /** Ours only: follow the encoder ladder under load. */
  adaptive: boolean;
  warmupMs: number;
  measureMs: number;
  /** Ours only: AudioPipeline options overriding the product defaults (experiments; none by default). */
  pipelineOptions?: Record<string, number | boolean>;
  /** Start every stream on the 10 ms grid (all streams push in the same timer turn) instead of at
   *  independent phases: the worst-case burst pattern. */
  aligned?: boolean;
  /** Keep stream 0's downlink audio of the measured window and write it (16 kHz s16) here. */
  captureFile?: string;
}

export interface TightRequest {
  kind: 'tight';
  settings: Settings;
  streams: number;
  frames: number;
  /**
   * At a real-time pace (see tight.ts): 'spread', each frame pair when it arrives (60 ms / streams
   * apart); 'round', every stream's frame pair of a 60 ms round back to back, once per 60 ms.
   */
  paced?: 'spread' | 'round';
}

export interface QualityRequest {
  kind: 'quality';
  /** Directory for the 16 kHz s16 files (reference and one per chain). */
  dir: string;
}

export type ChildRequest = LoadRequest | TightRequest | QualityRequest;

export interface Dist {
  count: number;
  p50: number;
  p99: number;
  max: number;
}

export interface LoadResult {
  kind: 'load';
  request: LoadRequest;
  windowS: number;
  /** process.cpuUsage() (user + system, every thread) over the window / (streams × seconds), in ms per stream-second. */
  cpuMsPerStreamS: number;
  /** The part of cpuMsPerStreamS spent on the main thread (JS: the generator, pushes, deliveries);
   *  the rest ran on other threads (threadpool, V8 helpers, the predecessor's workers). Linux only. */
  mainThreadCpuMsPerStreamS?: number;
  cpuUtilization: number;
  /** Frame latency in ms (push -> output callback): uplink, downlink, both. */
  up: Dist;
  down: Dist;
  all: Dist;
  expected: number;
  received: number;
  /** Received, but more than 60 ms after the frame was due (scheduled time -> output). */
  late: number;
  /** Never received within the grace period after the window. */
  missing: number;
  /** The pipeline's own drop counters over the window (ours), or rejected datagrams (baseline). */
  pipelineDrops: Record<string, number>;
  /** late + missing + pipeline drops. */
  drops: number;
  /** Event-loop delay (monitorEventLoopDelay, 1 ms resolution) over the window, ms. */
  elLagP99Ms: number;
  elLagMaxMs: number;
  /** How late the load generator's 10 ms ticks ran (ms): max. */
  generatorLateMaxMs: number;
  /** Ours: fraction of the window spent at each encoder ladder level (index = level). */
  ladderFractions?: number[];
  ladderStepsDown?: number;
  /** Ours: threadpool tasks started and result batches handed to JS, per frame processed. */
  handoffsPerFrame?: { tasks: number; deliveries: number };
  /** Ours: native histograms (log2 buckets, conservative upper edges), ms. */
  native?: Record<string, { p50: number; p99: number; max: number }>;
  /** Baseline: pool size at the end / peak, sessions per worker. */
  pool?: { workers: number; peak: number; sessions: number[]; elu: number[] };
  capture?: { file: string; frames: number; refFile: string };
  warnings: string[];
}

export interface TightResult {
  kind: 'tight';
  request: TightRequest;
  /** CPU time per frame pair (process.cpuUsage around the call). */
  meanNs: number;
  /** Wall time per frame pair, and the wall-time distribution (includes preemption). */
  wallMeanNs: number;
  p50Ns: number;
  p99Ns: number;
  uplinkFramesOut: number;
  downlinkDatagramsOut: number;
  cpuMsPerStreamS: number;
  /** Streams one core sustains if nothing but these stages ran: 60 ms / mean. */
  streamsPerCore: number;
}

export interface QualityFile {
  name: string;
  file: string;
  /** mean downlink packet bytes */
  meanBytes: number;
}

export interface QualityResult {
  kind: 'quality';
  reference: string;
  files: QualityFile[];
  equalBitrateCheck: string;
}

export type ChildResult = LoadResult | TightResult | QualityResult;
export interface ChildFailure {
  kind: 'error';
  error: string;
}
