// Which SIMD code paths the compiled libopus has, which of them this CPU can run, and so which ones
// libopus's runtime CPU detection (RTCD) uses. libopus keeps its own choice (opus_select_arch())
// internal, so this repeats its rule from the outside: the build system names the ISA extensions
// that have kernels in the build, the CPU is asked here, and "active" is the compiled levels up to
// the first one the CPU lacks (libopus's x86 levels are a ladder: SSE < SSE2 < SSE4.1 < AVX2).
#pragma once

#include <string>
#include <vector>

namespace xz::dsp {

struct OpusSimdInfo {
  std::vector<std::string> compiled;  // ISA extensions with libopus kernels in this build, in ladder order
  std::vector<std::string> cpu;       // which of the extensions libopus knows this CPU supports
  std::vector<std::string> active;    // compiled and usable: what libopus's RTCD picks
  bool runtime_detection = false;     // libopus chooses kernels at run time (x86) vs presumed (aarch64)
};

// "avx2" stands for libopus's AVX2 level, which needs AVX, AVX2 and FMA together.
OpusSimdInfo opus_simd_info();

}  // namespace xz::dsp
