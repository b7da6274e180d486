// Sample format conversion between Float32 [-1, 1) and Int16.
//
// f32_to_s16: scale by 32768, NaN -> 0, saturate to [-32768, 32767], round to nearest with ties to
// even (so 1.0 -> 32767 and -1.0 -> -32768). Every implementation (scalar, SSE2, AVX2, NEON) gives
// bit-identical results on every input; the dispatcher picks the best one the CPU supports.
// Rounding relies on the default IEEE rounding mode (round-to-nearest-even), which Node never changes.
#pragma once

#include <cstddef>
#include <cstdint>

namespace xz::dsp {

enum class SimdLevel { kScalar = 0, kSse2 = 1, kAvx2 = 2, kNeon = 3 };

const char* simd_level_name(SimdLevel level);
// Best level this CPU supports (decided once, at first call).
SimdLevel best_simd_level();
bool simd_level_supported(SimdLevel level);

void f32_to_s16(const float* in, int16_t* out, size_t n);
void s16_to_f32(const int16_t* in, float* out, size_t n);

// Explicit implementation, for tests and benchmarks. The level must be supported.
void f32_to_s16_with(SimdLevel level, const float* in, int16_t* out, size_t n);

namespace detail {
// The single definition of the per-sample rule; the SIMD kernels use it for their tails.
inline int16_t f32_to_s16_one(float x) {
  float v = x * 32768.0f;
  if (!(v == v)) return 0;  // NaN
  if (v > 32767.0f) v = 32767.0f;
  if (v < -32768.0f) v = -32768.0f;
  return static_cast<int16_t>(__builtin_nearbyintf(v));
}
void f32_to_s16_scalar(const float* in, int16_t* out, size_t n);
#if defined(__x86_64__) || defined(_M_X64)
void f32_to_s16_sse2(const float* in, int16_t* out, size_t n);
void f32_to_s16_avx2(const float* in, int16_t* out, size_t n);
#endif
#if defined(__aarch64__)
void f32_to_s16_neon(const float* in, int16_t* out, size_t n);
#endif
}  // namespace detail

}  // namespace xz::dsp
