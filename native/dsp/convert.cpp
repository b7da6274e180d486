#include "convert.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <emmintrin.h>
#endif

namespace xz::dsp {

const char* simd_level_name(SimdLevel level) {
  switch (level) {
    case SimdLevel::kScalar: return "scalar";
    case SimdLevel::kSse2: return "sse2";
    case SimdLevel::kAvx2: return "avx2";
    case SimdLevel::kNeon: return "neon";
  }
  return "unknown";
}

bool simd_level_supported(SimdLevel level) {
  switch (level) {
    case SimdLevel::kScalar: return true;
#if defined(__x86_64__) || defined(_M_X64)
    case SimdLevel::kSse2: return true;  // part of the x86-64 baseline
    case SimdLevel::kAvx2: return __builtin_cpu_supports("avx2");
#endif
#if defined(__aarch64__)
    case SimdLevel::kNeon: return true;  // part of the AArch64 baseline
#endif
    default: return false;
  }
}

SimdLevel best_simd_level() {
  static const SimdLevel level = [] {
    if (simd_level_supported(SimdLevel::kAvx2)) return SimdLevel::kAvx2;
    if (simd_level_supported(SimdLevel::kSse2)) return SimdLevel::kSse2;
    if (simd_level_supported(SimdLevel::kNeon)) return SimdLevel::kNeon;
    return SimdLevel::kScalar;
  }();
  return level;
}

namespace detail {
void f32_to_s16_scalar(const float* in, int16_t* out, size_t n) {
  for (size_t i = 0; i < n; ++i) out[i] = f32_to_s16_one(in[i]);
}

#if defined(__x86_64__) || defined(_M_X64)
void f32_to_s16_sse2(const float* in, int16_t* out, size_t n) {
  const __m128 scale = _mm_set1_ps(32768.0f);
  const __m128 hi = _mm_set1_ps(32767.0f);
  const __m128 lo = _mm_set1_ps(-32768.0f);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    __m128 a = _mm_mul_ps(_mm_loadu_ps(in + i), scale);
    __m128 b = _mm_mul_ps(_mm_loadu_ps(in + i + 4), scale);
    // NaN -> 0 first: min/max would otherwise turn NaN into a bound.
    a = _mm_and_ps(a, _mm_cmpord_ps(a, a));
    b = _mm_and_ps(b, _mm_cmpord_ps(b, b));
    a = _mm_min_ps(_mm_max_ps(a, lo), hi);
    b = _mm_min_ps(_mm_max_ps(b, lo), hi);
    // cvtps rounds with the current mode (nearest-even), like nearbyintf in the scalar rule.
    __m128i packed = _mm_packs_epi32(_mm_cvtps_epi32(a), _mm_cvtps_epi32(b));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i), packed);
  }
  f32_to_s16_scalar(in + i, out + i, n - i);
}
#endif
}  // namespace detail

void f32_to_s16_with(SimdLevel level, const float* in, int16_t* out, size_t n) {
  switch (level) {
#if defined(__x86_64__) || defined(_M_X64)
    case SimdLevel::kSse2: detail::f32_to_s16_sse2(in, out, n); return;
    case SimdLevel::kAvx2: detail::f32_to_s16_avx2(in, out, n); return;
#endif
#if defined(__aarch64__)
    case SimdLevel::kNeon: detail::f32_to_s16_neon(in, out, n); return;
#endif
    default: detail::f32_to_s16_scalar(in, out, n); return;
  }
}

void f32_to_s16(const float* in, int16_t* out, size_t n) {
  static const SimdLevel level = best_simd_level();
  f32_to_s16_with(level, in, out, n);
}

void s16_to_f32(const int16_t* in, float* out, size_t n) {
  // Multiplying by 2^-15 is exact, so this equals x / 32768; the loop auto-vectorizes.
  constexpr float kInv = 1.0f / 32768.0f;
  for (size_t i = 0; i < n; ++i) out[i] = static_cast<float>(in[i]) * kInv;
}

}  // namespace xz::dsp
