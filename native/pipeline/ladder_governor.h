// When the encoder ladder moves (see encoder_ladder.h): down one level when more than 5 % of a
// 250 ms window's frames waited in the queue longer than the wait budget, up one level after 3 s in
// which no frame waited longer than half the budget. Workers report each frame's wait; the event
// loop calls tick() with the time. Time is an argument, never read here, so the policy is tested
// with a clock of the test's own (native/tests/ladder_governor_test.cpp).
#pragma once

#include <atomic>
#include <cstdint>

namespace xz::pipeline {

class LadderGovernor {
 public:
  static constexpr uint64_t kWindowNs = 250'000'000;
  static constexpr uint64_t kCalmNs = 3'000'000'000;

  explicit LadderGovernor(uint64_t wait_budget_ns) : wait_budget_ns_(wait_budget_ns) {}

  // A frame started processing after waiting this long in the queue. Any thread.
  void observe(uint64_t wait_ns);

  // The level to use from `now` on, given the current one (0 = configured quality, `rungs` = the
  // cheapest). Moves at most one level per call and only at the end of a window. One thread.
  int tick(uint64_t now, int level, int rungs);

 private:
  const uint64_t wait_budget_ns_;
  std::atomic<uint64_t> items_{0};
  std::atomic<uint64_t> late_{0};
  std::atomic<uint64_t> max_wait_{0};
  uint64_t window_start_ = 0;
  uint64_t calm_since_ = 0;
};

}  // namespace xz::pipeline
