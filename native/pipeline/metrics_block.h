// All pipeline counters in one memory block of 64-bit atomics. JavaScript maps the same memory as a
// BigUint64Array (an external ArrayBuffer) and reads it without calling into the addon; the names
// and offsets come from metrics_layout() once, at startup.
//
// Counters only grow; gauges (marked G) are overwritten with the current value. Histograms have 64
// log2 buckets of nanoseconds: bucket i counts durations d with floor(log2(max(d, 1))) == i.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace xz::pipeline {

#define XZ_COUNTERS(X)                                                                  \
  X(kUpFramesIn, "uplink_datagrams_in")                                                 \
  X(kUpBytesIn, "uplink_bytes_in")                                                      \
  X(kUpFramesOut, "uplink_frames_out")                                                  \
  X(kUpBytesOut, "uplink_pcm_bytes_out")                                                \
  X(kUpPlcFrames, "uplink_plc_frames")                                                  \
  X(kUpFecFrames, "uplink_fec_frames")                                                  \
  X(kDownFramesIn, "downlink_pcm_chunks_in")                                            \
  X(kDownBytesIn, "downlink_pcm_bytes_in")                                              \
  X(kDownFramesOut, "downlink_datagrams_out")                                           \
  X(kDownBytesOut, "downlink_bytes_out")                                                \
  X(kDownFramesInParts, "downlink_frames_coded_in_parts")                               \
  X(kDownFramesRecoded, "downlink_frames_recoded_whole") /* parts coded, then undone */ \
  X(kDropShort, "drop_short")                                                           \
  X(kDropBadType, "drop_bad_type")                                                      \
  X(kDropLength, "drop_length_mismatch")                                                \
  X(kDropReplay, "drop_replay")                                                         \
  X(kDropSequenceJump, "drop_sequence_jump")                                            \
  X(kDropDecode, "drop_decrypt_decode_failure")                                         \
  X(kDropQueueOverflowUp, "drop_queue_overflow_uplink")                                 \
  X(kDropQueueOverflowDown, "drop_queue_overflow_downlink")                             \
  X(kDropSilence, "drop_silence_gated")                                                 \
  X(kDropClosed, "drop_closed_stream")                                                  \
  X(kDropAborted, "drop_aborted_downlink")                                              \
  X(kQueueDepthUp, "queue_depth_uplink")                 /* G */                        \
  X(kQueueDepthDown, "queue_depth_downlink")             /* G */                        \
  X(kQueueDepthPeak, "queue_depth_peak")                 /* G */                        \
  X(kPoolInUse, "pool_slabs_in_use")                     /* G */                        \
  X(kPoolPeak, "pool_slabs_peak")                        /* G */                        \
  X(kPoolMisses, "pool_misses")                          /* G (cumulative in the pools) */ \
  X(kPoolAcquires, "pool_acquires")                      /* G (cumulative in the pools) */ \
  X(kStreamsOpen, "streams_open")                        /* G */                        \
  X(kWorkersActive, "workers_active")                    /* G */                        \
  X(kWorkItems, "threadpool_tasks")                                                     \
  X(kBatchesDelivered, "batches_delivered")                                             \
  X(kResultsDelivered, "results_delivered")                                             \
  X(kEncoderLevel, "encoder_ladder_level")               /* G */                        \
  X(kEncoderComplexity, "encoder_complexity")            /* G */                        \
  X(kEncoderCeltOnly, "encoder_celt_only")               /* G: 1 when the ladder forces CELT */ \
  X(kEncoderRungBitrate, "encoder_rung_bitrate")         /* G: bits/s the rung sets (0 = the streams' own) */ \
  X(kLadderStepsDown, "encoder_ladder_steps_down")                                      \
  X(kLadderStepsUp, "encoder_ladder_steps_up")

#define XZ_HISTOGRAMS(X)                                                                \
  X(kHistUpDecrypt, "uplink_decrypt_ns")                                                \
  X(kHistUpDecode, "uplink_decode_ns")                                                  \
  X(kHistUpResample, "uplink_resample_ns")                                              \
  X(kHistDownConvert, "downlink_convert_ns")                                            \
  X(kHistDownResample, "downlink_resample_ns")                                          \
  X(kHistDownEncode, "downlink_encode_ns")                                              \
  X(kHistDownEncrypt, "downlink_encrypt_ns")                                            \
  X(kHistThreadpoolWait, "threadpool_queue_wait_ns")                                    \
  X(kHistFrameWait, "frame_queue_wait_ns")                                              \
  X(kHistUpLatency, "uplink_frame_latency_ns")                                          \
  X(kHistDownLatency, "downlink_frame_latency_ns")

#define XZ_ENUM_ENTRY(id, name) id,
enum Counter : uint32_t { XZ_COUNTERS(XZ_ENUM_ENTRY) kCounterCount };
enum Histogram : uint32_t { XZ_HISTOGRAMS(XZ_ENUM_ENTRY) kHistogramCount };
#undef XZ_ENUM_ENTRY

constexpr size_t kHistogramBuckets = 64;

struct MetricsBlock {
  std::atomic<uint64_t> counters[kCounterCount];
  std::atomic<uint64_t> histograms[kHistogramCount][kHistogramBuckets];

  MetricsBlock();
  void add(Counter c, uint64_t v = 1) { counters[c].fetch_add(v, std::memory_order_relaxed); }
  void set(Counter c, uint64_t v) { counters[c].store(v, std::memory_order_relaxed); }
  uint64_t get(Counter c) const { return counters[c].load(std::memory_order_relaxed); }
  void observe(Histogram h, uint64_t ns) {
    const size_t bucket = ns <= 1 ? 0 : static_cast<size_t>(63 - __builtin_clzll(ns));
    histograms[h][bucket].fetch_add(1, std::memory_order_relaxed);
  }
};

static_assert(sizeof(std::atomic<uint64_t>) == 8, "JS reads the block as BigUint64Array");

const char* counter_name(uint32_t c);
const char* histogram_name(uint32_t h);

uint64_t now_ns();  // monotonic

}  // namespace xz::pipeline
