// Tests for xz::pipeline::LadderGovernor (native/pipeline/ladder_governor.h): when the encoder
// ladder steps down and back up, driven by a clock of the test's own. The wall-clock version of
// the step-up (3 s of calm after real CPU load) could not tell a slow machine from a wrong policy.
#include "../pipeline/ladder_governor.h"

#include <gtest/gtest.h>

#include <cstdint>

using xz::pipeline::LadderGovernor;

namespace {

constexpr uint64_t kMs = 1'000'000;
constexpr uint64_t kBudget = 20 * kMs;
constexpr int kRungs = 3;

// A clock and a governor; each window() reports `frames` waits, `late` of them past the budget and
// the rest `calm_wait`, then ticks at the window's end.
struct Harness {
  LadderGovernor g{kBudget};
  uint64_t now = 1'000 * kMs;
  int level = 0;

  Harness() { level = g.tick(now, level, kRungs); }  // starts the first window

  int window(int frames, int late, uint64_t calm_wait = 1 * kMs) {
    for (int i = 0; i < frames; ++i) g.observe(i < late ? kBudget + 1 : calm_wait);
    now += LadderGovernor::kWindowNs;
    level = g.tick(now, level, kRungs);
    return level;
  }
};

TEST(LadderGovernor, StepsDownOneLevelPerWindowWhenMoreThanFivePercentAreLate) {
  Harness h;
  EXPECT_EQ(h.window(100, 5), 0);  // 5 % exactly: not more than 5 %
  EXPECT_EQ(h.window(100, 6), 1);
  EXPECT_EQ(h.window(100, 100), 2);
  EXPECT_EQ(h.window(100, 100), 3);
  EXPECT_EQ(h.window(100, 100), 3);  // the cheapest rung is the floor
}

TEST(LadderGovernor, DecidesOnlyAtTheEndOfAWindow) {
  Harness h;
  for (int i = 0; i < 10; ++i) h.g.observe(kBudget * 2);
  h.now += LadderGovernor::kWindowNs - 1;
  EXPECT_EQ(h.g.tick(h.now, 0, kRungs), 0);
  h.now += 1;
  EXPECT_EQ(h.g.tick(h.now, 0, kRungs), 1);
}

TEST(LadderGovernor, StepsUpAfterThreeSecondsOfCalmAndNotBefore) {
  Harness h;
  ASSERT_EQ(h.window(10, 10), 1);
  const uint64_t last_late = h.now;
  while (h.now + LadderGovernor::kWindowNs - last_late < LadderGovernor::kCalmNs) EXPECT_EQ(h.window(10, 0), 1);
  EXPECT_EQ(h.window(10, 0), 0);  // the window that completes 3 s of calm
  EXPECT_EQ(h.now - last_late, LadderGovernor::kCalmNs);
}

TEST(LadderGovernor, AWaitOverHalfTheBudgetRestartsTheCalmPeriod) {
  Harness h;
  ASSERT_EQ(h.window(10, 10), 1);
  for (int i = 0; i < 8; ++i) h.window(10, 0);  // 2 s calm
  EXPECT_EQ(h.window(10, 0, kBudget / 2 + 1), 1);  // not late, but not calm either
  const uint64_t restart = h.now;
  while (h.now + LadderGovernor::kWindowNs - restart < LadderGovernor::kCalmNs) EXPECT_EQ(h.window(10, 0), 1);
  EXPECT_EQ(h.window(10, 0), 0);
}

TEST(LadderGovernor, StepsUpOneLevelPerCalmPeriodAndStopsAtZero) {
  Harness h;
  for (int i = 0; i < 3; ++i) h.window(10, 10);
  ASSERT_EQ(h.level, 3);
  int windows = 0;
  while (h.level > 0) {
    h.window(10, 0);
    ++windows;
    ASSERT_LT(windows, 100);
  }
  EXPECT_EQ(windows, 3 * static_cast<int>(LadderGovernor::kCalmNs / LadderGovernor::kWindowNs));
  for (int i = 0; i < 20; ++i) EXPECT_EQ(h.window(10, 0), 0);
}

TEST(LadderGovernor, AnIdleWindowIsCalm) {
  Harness h;
  ASSERT_EQ(h.window(10, 10), 1);
  for (int i = 0; i < 11; ++i) EXPECT_EQ(h.window(0, 0), 1);
  EXPECT_EQ(h.window(0, 0), 0);
}

}  // namespace
