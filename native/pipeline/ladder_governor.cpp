#include "ladder_governor.h"

namespace xz::pipeline {

void LadderGovernor::observe(uint64_t wait_ns) {
  items_.fetch_add(1, std::memory_order_relaxed);
  if (wait_ns > wait_budget_ns_) late_.fetch_add(1, std::memory_order_relaxed);
  uint64_t prev = max_wait_.load(std::memory_order_relaxed);
  while (wait_ns > prev && !max_wait_.compare_exchange_weak(prev, wait_ns, std::memory_order_relaxed)) {}
}

int LadderGovernor::tick(uint64_t now, int level, int rungs) {
  if (window_start_ == 0) window_start_ = calm_since_ = now;
  if (now - window_start_ < kWindowNs) return level;
  const uint64_t items = items_.exchange(0, std::memory_order_relaxed);
  const uint64_t late = late_.exchange(0, std::memory_order_relaxed);
  const uint64_t max_wait = max_wait_.exchange(0, std::memory_order_relaxed);
  window_start_ = now;
  if (items > 0 && late * 20 > items) {
    calm_since_ = now;
    return level < rungs ? level + 1 : level;
  }
  if (max_wait > wait_budget_ns_ / 2) {
    calm_since_ = now;
    return level;
  }
  if (level > 0 && now - calm_since_ >= kCalmNs) {
    calm_since_ = now;
    return level - 1;
  }
  return level;
}

}  // namespace xz::pipeline
