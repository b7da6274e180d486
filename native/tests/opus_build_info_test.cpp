// Tests for dsp::opus_simd_info() (native/dsp/opus_build_info.h): the SIMD levels reported for the
// compiled libopus are consistent with the build and with this CPU.
#include "dsp/opus_build_info.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

namespace dsp = xz::dsp;

namespace {

bool contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

std::string join(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : ",") + s;
  return out;
}

}  // namespace

TEST(OpusBuildInfo, ActiveIsTheCompiledLadderUpToTheFirstMissingLevel) {
  const dsp::OpusSimdInfo info = dsp::opus_simd_info();
  std::printf("[ info     ] libopus SIMD compiled: %s; cpu: %s; active: %s\n", join(info.compiled).c_str(),
              join(info.cpu).c_str(), join(info.active).c_str());
  std::vector<std::string> expected;
  for (const auto& ext : info.compiled) {
    if (!contains(info.cpu, ext)) break;
    expected.push_back(ext);
  }
  EXPECT_EQ(info.active, expected);
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
TEST(OpusBuildInfo, X86EveryKernelCompiledAndChosenAtRunTime) {
  const dsp::OpusSimdInfo info = dsp::opus_simd_info();
  EXPECT_EQ(info.compiled, (std::vector<std::string>{"sse", "sse2", "sse4.1", "avx2"}));
  EXPECT_TRUE(info.runtime_detection);
  EXPECT_TRUE(contains(info.cpu, "sse2"));  // x86-64 baseline
  EXPECT_EQ(contains(info.cpu, "sse4.1"), static_cast<bool>(__builtin_cpu_supports("sse4.1")));
  const bool avx2_level = __builtin_cpu_supports("avx") && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  EXPECT_EQ(contains(info.cpu, "avx2"), avx2_level);
}
#endif

#if defined(__aarch64__)
TEST(OpusBuildInfo, Aarch64NeonPresumed) {
  const dsp::OpusSimdInfo info = dsp::opus_simd_info();
  EXPECT_EQ(info.compiled, (std::vector<std::string>{"neon"}));
  EXPECT_EQ(info.active, (std::vector<std::string>{"neon"}));
  EXPECT_FALSE(info.runtime_detection);
}
#endif
