#include "metrics_block.h"

#include <chrono>

namespace xz::pipeline {

MetricsBlock::MetricsBlock() {
  for (auto& c : counters) c.store(0, std::memory_order_relaxed);
  for (auto& h : histograms)
    for (auto& b : h) b.store(0, std::memory_order_relaxed);
}

#define XZ_NAME_ENTRY(id, name) name,
static const char* const kCounterNames[] = {XZ_COUNTERS(XZ_NAME_ENTRY)};
static const char* const kHistogramNames[] = {XZ_HISTOGRAMS(XZ_NAME_ENTRY)};
#undef XZ_NAME_ENTRY

const char* counter_name(uint32_t c) { return c < kCounterCount ? kCounterNames[c] : "unknown"; }
const char* histogram_name(uint32_t h) { return h < kHistogramCount ? kHistogramNames[h] : "unknown"; }

uint64_t now_ns() {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch()).count());
}

}  // namespace xz::pipeline
