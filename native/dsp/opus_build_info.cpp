#include "opus_build_info.h"

#include <sstream>

#ifndef XZ_OPUS_SIMD_COMPILED
#define XZ_OPUS_SIMD_COMPILED ""
#endif

namespace xz::dsp {
namespace {

std::vector<std::string> split_list(const char* text) {
  std::vector<std::string> out;
  std::stringstream in(text);
  std::string item;
  while (std::getline(in, item, ',')) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

bool cpu_has(const std::string& ext) {
#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
  // __builtin_cpu_supports also checks that the OS saves the AVX registers, which libopus's own
  // cpuid test does not: on such a (rare, virtualised) system we report AVX2 as unusable.
  if (ext == "sse") return __builtin_cpu_supports("sse");
  if (ext == "sse2") return __builtin_cpu_supports("sse2");
  if (ext == "sse4.1") return __builtin_cpu_supports("sse4.1");
  if (ext == "avx2") {
    return __builtin_cpu_supports("avx") && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }
#endif
#if defined(__aarch64__) || defined(_M_ARM64)
  if (ext == "neon") return true;  // Advanced SIMD is part of the AArch64 baseline
#endif
  return false;
}

}  // namespace

OpusSimdInfo opus_simd_info() {
  OpusSimdInfo info;
  info.compiled = split_list(XZ_OPUS_SIMD_COMPILED);
#if defined(__x86_64__) || defined(_M_X64)
  info.runtime_detection = !info.compiled.empty();
  static const char* const kLadder[] = {"sse", "sse2", "sse4.1", "avx2"};
#else
  static const char* const kLadder[] = {"neon"};
#endif
  for (const char* ext : kLadder) {
    if (cpu_has(ext)) info.cpu.push_back(ext);
  }
  bool usable = true;  // libopus stops at the first level the CPU lacks
  for (const std::string& ext : info.compiled) {
    usable = usable && cpu_has(ext);
    if (usable) info.active.push_back(ext);
  }
  return info;
}

}  // namespace xz::dsp
