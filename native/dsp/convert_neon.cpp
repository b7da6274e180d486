#include "convert.h"

#if defined(__aarch64__)
#include <arm_neon.h>

namespace xz::dsp::detail {

void f32_to_s16_neon(const float* in, int16_t* out, size_t n) {
  const float32x4_t scale = vdupq_n_f32(32768.0f);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    // vcvtnq: round to nearest even, NaN -> 0, saturating; vqmovn then saturates to int16. Clamping
    // after rounding gives the same result as the scalar rule's clamp-then-round.
    int32x4_t a = vcvtnq_s32_f32(vmulq_f32(vld1q_f32(in + i), scale));
    int32x4_t b = vcvtnq_s32_f32(vmulq_f32(vld1q_f32(in + i + 4), scale));
    vst1q_s16(out + i, vcombine_s16(vqmovn_s32(a), vqmovn_s32(b)));
  }
  f32_to_s16_scalar(in + i, out + i, n - i);
}

}  // namespace xz::dsp::detail
#endif
