// Compiled with -mavx2 (CMakeLists.txt); only called after cpuid reports AVX2.
#include "convert.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>

namespace xz::dsp::detail {

void f32_to_s16_avx2(const float* in, int16_t* out, size_t n) {
  const __m256 scale = _mm256_set1_ps(32768.0f);
  const __m256 hi = _mm256_set1_ps(32767.0f);
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    __m256 a = _mm256_mul_ps(_mm256_loadu_ps(in + i), scale);
    __m256 b = _mm256_mul_ps(_mm256_loadu_ps(in + i + 8), scale);
    a = _mm256_and_ps(a, _mm256_cmp_ps(a, a, _CMP_ORD_Q));
    b = _mm256_and_ps(b, _mm256_cmp_ps(b, b, _CMP_ORD_Q));
    // No lower clamp needed: below -2^31 cvtps yields INT_MIN and packs saturates any int32 below
    // -32768 to -32768, the same as the scalar clamp-then-round. The upper clamp is needed because
    // cvtps also yields INT_MIN for values above 2^31.
    a = _mm256_min_ps(a, hi);
    b = _mm256_min_ps(b, hi);
    // packs works per 128-bit lane; the permute restores sample order.
    __m256i packed = _mm256_packs_epi32(_mm256_cvtps_epi32(a), _mm256_cvtps_epi32(b));
    packed = _mm256_permute4x64_epi64(packed, 0xD8);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), packed);
  }
  f32_to_s16_sse2(in + i, out + i, n - i);
}

}  // namespace xz::dsp::detail
#endif
