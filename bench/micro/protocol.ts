// What the micro-benchmark parent (bench/main.ts) and its per-stage child processes
// (bench/micro/child.ts) exchange over the IPC channel. Plain JSON, no class instances.

/** Stage ids, in the order the suite runs and prints them. */
export const STAGE_IDS = [
  'convert',
  'resample-16k-48k',
  'resample-48k-24k',
  'opus-encode',
  'opus-encode-c10',
  'opus-encode-voip',
  'opus-encode-gateway',
  'opus-decode',
  'aes-ctr',
  'packet',
] as const;
export type StageId = (typeof STAGE_IDS)[number];

/** How long a child measures; the parent picks these from --quick / --time. */
export interface MeasureSettings {
  /** Warm-up per variant before anything is recorded (JIT tiers, caches, allocator, libopus state). */
  warmupMs: number;
  /** Measured time per variant (the child runs ~variants × this). */
  measureMs: number;
  /** Length of one interleaving block per variant: short enough that noise hits every variant alike. */
  blockMs: number;
  /** A timed batch is at least this long (amortises the clock read), unless maxBatch frames come first. */
  minBatchUs: number;
  /** Upper bound of frames per timed batch (the p99 is a p99 of batch means: keep batches short). */
  maxBatch: number;
}

export interface ChildRequest {
  stage: StageId;
  run: number;
  settings: MeasureSettings;
}

export type VariantRole = 'ours' | 'baseline' | 'probe';

export interface VariantResult {
  name: string;
  role: VariantRole;
  /** Per-frame time in ns: median and p99 over all timed batches (each batch's mean per frame). */
  medianNs: number;
  p99Ns: number;
  meanNs: number;
  minNs: number;
  /** Timed batches and frames behind the statistics. */
  batches: number;
  frames: number;
  batchSize: number;
  /** Free-form facts that show the comparison is fair (packet sizes, output lengths...). */
  notes?: Record<string, string | number | boolean>;
}

/** A baseline the stage could not measure because its package is not installed (a devDependency). */
export interface MissingBaseline {
  /** The baseline variant's name (as in stages.ts V). */
  name: string;
  /** The npm package that provides it. */
  package: string;
  /** What to run to compare against it. */
  install: string;
}

export interface ChildResult {
  stage: StageId;
  run: number;
  variants: VariantResult[];
  /** Baselines left out of this run because their package is not installed. */
  missingBaselines: MissingBaseline[];
  /** Facts about the stage's inputs and settings, printed once per stage. */
  facts: Record<string, string | number | boolean>;
  warnings: string[];
  elapsedMs: number;
}

export interface ChildFailure {
  stage: StageId;
  run: number;
  error: string;
}
