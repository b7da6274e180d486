// The physical limit for benchmarks: the same per-frame stages the pipeline runs (UplinkStream and
// DownlinkStream::process), called back to back on one thread with no queues, no threadpool and no
// JS delivery. Comparing the pipeline against this shows what scheduling costs.
#pragma once

#include <cstdint>
#include <vector>

#include "pipeline/downlink_stream.h"
#include "pipeline/uplink_stream.h"

// Benchmark-only: built into xiaozhi_bench.node (native/bench), never into the product addon.
namespace xz::bench {

struct TightLoopInput {
  pipeline::UplinkConfig uplink;
  pipeline::DownlinkConfig downlink;
  std::vector<std::vector<uint8_t>> datagrams;  // one encrypted uplink datagram per frame
  std::vector<float> pcm;                       // agent PCM at downlink.input_rate, all frames
  size_t chunk_samples = 480;                   // pushed in chunks of this size (10 ms at 48 kHz)
  size_t streams = 1;
  // 0: back to back (the physical limit). Otherwise frame pair k (counting every stream's, in
  // order) starts no earlier than k * pace_ns after the first: N streams with evenly spread phases
  // arriving in real time (pace_ns = 60 ms / N), each processed the moment it arrives and the thread
  // asleep in between. Shows what the same stages cost at a real-time pace on this machine, with no
  // queue, threadpool or JS in the way.
  uint64_t pace_ns = 0;
  // With a pace: frame pairs are taken in bursts of this many, back to back, each burst starting
  // when its first pair is due (burst = streams: every stream's frame of a 60 ms round at once, the
  // most any design could batch).
  size_t pace_burst = 1;
};

struct TightLoopResult {
  uint64_t total_ns = 0;
  std::vector<uint64_t> frame_pair_ns;  // per stream per frame: one uplink datagram + 60 ms downlink
  uint64_t uplink_frames_out = 0;
  uint64_t downlink_datagrams_out = 0;
};

TightLoopResult run_tight_loop(const TightLoopInput& input);

}  // namespace xz::bench
