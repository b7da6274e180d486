#include "tight_loop.h"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <memory>
#include <thread>

namespace xz::bench {

using namespace pipeline;  // the same stages the product pipeline runs

TightLoopResult run_tight_loop(const TightLoopInput& in) {
  TightLoopResult out;
  auto metrics = std::make_unique<MetricsBlock>();
  Pools pools;
  EncoderLadder ladder;
  std::vector<Result> results;
  results.reserve(64);
  std::vector<std::unique_ptr<UplinkStream>> up;
  std::vector<std::unique_ptr<DownlinkStream>> down;
  for (size_t s = 0; s < in.streams; ++s) {
    up.push_back(std::make_unique<UplinkStream>(in.uplink));
    down.push_back(std::make_unique<DownlinkStream>(in.downlink));
  }
  const size_t frames = in.datagrams.size();
  const size_t pcm_per_frame = frames ? in.pcm.size() / frames : 0;
  out.frame_pair_ns.reserve(frames * in.streams);
  ProcessContext ctx{*metrics, pools, results, ladder, 0};
  const uint64_t start = now_ns();
  uint64_t due = start;
  const size_t burst = std::max<size_t>(1, in.pace_burst);
  size_t pair = 0;
  for (size_t f = 0; f < frames; ++f) {
    for (size_t s = 0; s < in.streams; ++s, ++pair) {
      if (in.pace_ns > 0 && pair % burst == 0) {
        const uint64_t now = now_ns();
        if (due > now) std::this_thread::sleep_for(std::chrono::nanoseconds(due - now));
        due += in.pace_ns * burst;
      }
      const uint64_t t0 = now_ns();
      // Same work per item as Scheduler::push + run_worker: copy into a slab, process, release.
      InputItem item;
      item.slab = pools.datagram.acquire();
      std::memcpy(item.slab, in.datagrams[f].data(), in.datagrams[f].size());
      item.length = static_cast<uint32_t>(in.datagrams[f].size());
      item.enqueued_ns = t0;
      up[s]->process(item, ctx);
      pools.datagram.release(item.slab);
      for (size_t off = 0; off < pcm_per_frame; off += in.chunk_samples) {
        const size_t n = std::min(in.chunk_samples, pcm_per_frame - off);
        InputItem chunk;
        chunk.slab = pools.pcm.acquire();
        std::memcpy(chunk.slab, in.pcm.data() + f * pcm_per_frame + off, n * sizeof(float));
        chunk.length = static_cast<uint32_t>(n * sizeof(float));
        chunk.format = SampleFormat::kF32;
        chunk.enqueued_ns = t0;
        down[s]->process(chunk, ctx);
        pools.pcm.release(chunk.slab);
      }
      for (Result& r : results) {
        if (r.kind == ResultKind::kUplinkPcm) ++out.uplink_frames_out;
        if (r.kind == ResultKind::kDownlinkDatagram) ++out.downlink_datagrams_out;
        if (r.slab) r.pool->release(r.slab);
      }
      results.clear();
      out.frame_pair_ns.push_back(now_ns() - t0);
    }
  }
  out.total_ns = now_ns() - start;
  return out;
}

}  // namespace xz::bench
