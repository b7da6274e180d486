// Typed wrappers over the native addon. Arguments are validated here with messages that name the
// argument, the expected and the received value; the addon repeats minimal checks as a last line.
import { native } from './addon.js';

export { AesCtr, opensslVersion } from './aes.js';
export { f32ToS16, s16ToF32, supportedSimdLevels, type SimdLevelName } from './convert.js';
export { type CodedError } from './errors.js';
export {
  OpusDecoder,
  OpusEncoder,
  opusFrameSizes,
  OPUS_FRAME_DURATIONS_MS,
  OPUS_SAMPLE_RATES,
  type OpusApplication,
  type OpusBandwidth,
  type OpusDecodeOptions,
  type OpusDecoderOptions,
  type OpusEncoderOptions,
  type OpusSampleRate,
  type OpusSignal,
} from './opus.js';
export * as packet from './packet.js';
export { Resampler, type ResamplerOptions } from './resampler.js';
export {
  AudioPipeline,
  DEFAULT_DOWNLINK_ENCODER,
  DEFAULT_ENCODER_LADDER,
  DownlinkStream,
  UplinkStream,
  type AudioPipelineOptions,
  type DownlinkEncoderOptions,
  type DownlinkOptions,
  type DownlinkPacket,
  type EncoderRung,
  type PushOutcome,
  type UplinkFrame,
  type UplinkOptions,
  type UplinkProbe,
} from './pipeline.js';
export { diffMetrics, readMetrics, summarizeBuckets, type HistogramSummary, type MetricsLayout, type MetricsSnapshot } from './metrics.js';

/** libopus version compiled into the addon, e.g. "libopus 1.5.2". */
export function opusVersion(): string {
  return native.buildInfo().opusVersion;
}

/** An ISA extension libopus has kernels for. "avx2" is libopus's AVX2 level: AVX + AVX2 + FMA. */
export type OpusSimdExtension = 'sse' | 'sse2' | 'sse4.1' | 'avx2' | 'neon';

/** What the compiled libopus is and which of its SIMD paths run on this machine. */
export interface OpusBuildInfo {
  /** e.g. "libopus 1.5.2" (same as opusVersion()). */
  version: string;
  /** true on x86-64: libopus picks its SSE4.1/AVX2 kernels per CPU at run time (cpuid). false where
   *  the SIMD level is presumed at build time (aarch64 NEON) or there is none. */
  runtimeCpuDetection: boolean;
  simd: {
    /** Extensions with libopus kernels in this build, lowest level first. */
    compiled: OpusSimdExtension[];
    /** Extensions of that ladder this CPU (and OS) supports. */
    cpu: OpusSimdExtension[];
    /** Compiled and supported, up to the first missing level (libopus's levels are cumulative):
     *  the kernels libopus runs here. */
    active: OpusSimdExtension[];
  };
}

/** libopus build and its active SIMD paths, for logs, `xiaozhi-gateway info` and benchmark headers. */
export function opusBuildInfo(): OpusBuildInfo {
  return native.opusBuildInfo() as OpusBuildInfo;
}

/** SIMD level of the sample conversion on this CPU: "avx2", "sse2", "neon" or "scalar". */
export function simdLevel(): string {
  return native.buildInfo().simdLevel;
}

/** Everything about the native build, for logs and bug reports. */
export function nativeBuildInfo(): {
  opusVersion: string;
  opusSimd: string;
  simdLevel: string;
  buildType: string;
  openssl: string;
} {
  return { ...native.buildInfo(), openssl: native.opensslVersion() };
}
