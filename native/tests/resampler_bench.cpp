// Micro-benchmark of xz::dsp::Resampler on the gateway's two hot paths, per 60 ms frame:
//   uplink   16 kHz -> 48 kHz:  960 samples in, 2880 out
//   downlink 48 kHz -> 24 kHz: 2880 samples in, 1440 out
// Each frame is timed on its own (after a warm-up); prints median and p99 in ns per frame, for
// the kernel chosen at run time ("auto") and for the SSE2 baseline kernel.
//
// Build and run:
//   g++ -std=c++17 -O2 -march=x86-64 native/dsp/resampler.cpp native/tests/resampler_bench.cpp
//       -o /tmp/resampler_bench && /tmp/resampler_bench
#include "../dsp/resampler.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <vector>

namespace {

using xz::dsp::Resampler;

volatile int64_t g_sink;  // keeps the optimizer from discarding the work

template <typename T>
void Bench(const char* label, int in_rate, int out_rate, Resampler::Kernel kernel, T scale) {
  if (!Resampler::kernel_supported(kernel)) return;
  constexpr int kWarmup = 300;
  constexpr int kFrames = 20000;
  Resampler r(in_rate, out_rate, kernel);
  const size_t frame = static_cast<size_t>(in_rate) * 60 / 1000;
  std::vector<T> in(frame);
  for (size_t i = 0; i < frame; ++i) {
    in[i] = static_cast<T>(scale * 0.5 * std::sin(0.05 * static_cast<double>(i)));
  }
  std::vector<T> out(r.max_output(frame));
  std::vector<double> ns;
  ns.reserve(kFrames);
  int64_t sink = 0;
  for (int k = 0; k < kWarmup + kFrames; ++k) {
    const auto t0 = std::chrono::steady_clock::now();
    const size_t got = r.process(in.data(), frame, out.data(), out.size());
    const auto t1 = std::chrono::steady_clock::now();
    sink += static_cast<int64_t>(got) + static_cast<int64_t>(out[got / 2]);
    if (k >= kWarmup) ns.push_back(std::chrono::duration<double, std::nano>(t1 - t0).count());
  }
  g_sink = sink;
  std::sort(ns.begin(), ns.end());
  const double median = ns[ns.size() / 2];
  const double p99 = ns[ns.size() * 99 / 100];
  std::printf("%-9s %-6s %-30s %4d taps/out  median %7.0f ns/frame  p99 %7.0f ns/frame  "
              "(%.2f ns/output)\n",
              Resampler::kernel_name(r.kernel()), sizeof(T) == 2 ? "int16" : "float", label,
              r.taps_per_output(), median, p99, median / static_cast<double>(out.size()));
}

}  // namespace

int main() {
  for (Resampler::Kernel k : {Resampler::Kernel::kAuto, Resampler::Kernel::kSse2}) {
    Bench<int16_t>("uplink   16k->48k  960->2880", 16000, 48000, k, 32767);
    Bench<int16_t>("downlink 48k->24k 2880->1440", 48000, 24000, k, 32767);
    Bench<float>("uplink   16k->48k  960->2880", 16000, 48000, k, 1.0f);
    Bench<float>("downlink 48k->24k 2880->1440", 48000, 24000, k, 1.0f);
  }
  return 0;
}
