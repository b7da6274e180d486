#include "resampler.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <mutex>
#include <numeric>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <utility>

// SSE2 is part of every x86-64 baseline. AVX2+FMA kernels are compiled with per-function
// target attributes (GCC/Clang) and chosen at run time; define XZ_RESAMPLER_NO_AVX2 to leave
// them out.
#if defined(__SSE2__) || defined(_M_X64) || (defined(_M_IX86_FP) && _M_IX86_FP >= 2)
#define XZ_RESAMPLER_SSE2 1
#include <emmintrin.h>
#else
#define XZ_RESAMPLER_SSE2 0
#endif
#if XZ_RESAMPLER_SSE2 && defined(__GNUC__) && defined(__x86_64__) && \
    !defined(XZ_RESAMPLER_NO_AVX2)
#define XZ_RESAMPLER_AVX2 1
#include <immintrin.h>
#else
#define XZ_RESAMPLER_AVX2 0
#endif

namespace xz::dsp {

struct ResamplerFilter {
  int up = 1;                 // L
  int down = 1;               // M
  int length = 0;             // prototype taps N = 2 * delay * M + 1
  int delay = 0;              // in output samples
  size_t taps = 0;            // per phase, padded to a multiple of kLanes
  std::vector<float> coeffs;  // up phases x taps; phase p holds h[p + m*L] in reverse order
  std::vector<uint32_t> next_phase;  // phase of the following output
  std::vector<uint32_t> advance;     // input samples to step for the following output
};

namespace {

constexpr size_t kLanes = 16;  // taps per phase are padded to this (2 x 8 floats per AVX2 step)
constexpr double kPi = 3.14159265358979323846;

// Zeroth-order modified Bessel function of the first kind (power series; converges for all x).
double bessel_i0(double x) {
  const double q = x * x / 4.0;
  double term = 1.0;
  double sum = 1.0;
  for (int k = 1; k < 500; ++k) {
    term *= q / (static_cast<double>(k) * k);
    sum += term;
    if (term < sum * 1e-17) break;
  }
  return sum;
}

std::shared_ptr<const ResamplerFilter> design(int up, int down) {
  auto f = std::make_shared<ResamplerFilter>();
  f->up = up;
  f->down = down;
  const int wider = std::max(up, down);
  // Frequencies below are in units of min(in, out). The prototype rate is in*L == out*M and
  // min(in, out) == prototype rate / max(L, M), so only the reduced ratio matters.
  //
  // The Kaiser transition band [0.5 - D, 0.5] ends exactly at the stop-band edge. D may exceed the
  // nominal 0.05 (up to kMaxTransition): the response then droops by at most ~0.05 dB at 0.45,
  // half the pass-band tolerance, in exchange for ~10% fewer taps. Deep in the pass band (where
  // the SNR of ordinary signals is decided) the error stays ~-95 dB or better either way.
  constexpr double kMaxTransition = 0.0557;
  const double min_transition = Resampler::kStopbandEdge - Resampler::kPassbandEdge;
  const double atten_min = Resampler::kDesignAttenuationDb;
  const double radians = 2.0 * kPi / wider;  // per unit of min(in, out), per prototype sample
  // Kaiser's empirical rule: order = (A - 7.95) / (2.285 * transition in radians per sample).
  const auto transition_for = [&](long long order) {
    return (atten_min - 7.95) / (2.285 * radians * static_cast<double>(order));
  };
  // The order must be a multiple of 2M (odd length, centre on an output sample) and each phase
  // is padded to kLanes taps anyway, so pick the padded size first and use every tap it allows.
  const long long step = 2LL * down;
  const size_t max_step = (static_cast<size_t>(down) + up - 1) / up;
  size_t taps = kLanes;
  long long order = 0;
  for (;; taps += kLanes) {
    order = (static_cast<long long>(taps) * up - 1) / step * step;
    if (order > 0 && taps > max_step && transition_for(order) <= kMaxTransition) break;
  }
  const double transition = std::max(min_transition, transition_for(order));
  const double atten = 2.285 * radians * transition * static_cast<double>(order) + 7.95;
  const double beta = 0.1102 * (atten - 8.7);
  const double cutoff = (Resampler::kStopbandEdge - transition / 2.0) / wider;  // cycles/sample
  f->taps = taps;
  f->length = static_cast<int>(order + 1);
  f->delay = static_cast<int>(order / step);
  const double centre = static_cast<double>(order) / 2.0;

  std::vector<double> h(static_cast<size_t>(f->length));
  const double i0_beta = bessel_i0(beta);
  double sum = 0.0;
  for (int n = 0; n < f->length; ++n) {
    const double t = n - centre;
    const double arg = 2.0 * cutoff * t;
    const double sinc = t == 0.0 ? 1.0 : std::sin(kPi * arg) / (kPi * arg);
    const double r = t / centre;
    const double window = bessel_i0(beta * std::sqrt(std::max(0.0, 1.0 - r * r))) / i0_beta;
    h[static_cast<size_t>(n)] = 2.0 * cutoff * sinc * window;
    sum += h[static_cast<size_t>(n)];
  }
  // Unity gain at DC for the output: the zero-stuffed prototype needs a gain of L.
  const double scale = static_cast<double>(up) / sum;

  f->coeffs.assign(static_cast<size_t>(up) * f->taps, 0.0f);
  for (int p = 0; p < up; ++p) {
    float* dst = f->coeffs.data() + static_cast<size_t>(p) * f->taps;
    for (size_t m = 0; m < f->taps; ++m) {
      const size_t n = static_cast<size_t>(p) + m * static_cast<size_t>(up);
      // Reversed so the dot product walks the history forward (oldest sample first).
      if (n < h.size()) dst[f->taps - 1 - m] = static_cast<float>(h[n] * scale);
    }
  }
  f->next_phase.resize(static_cast<size_t>(up));
  f->advance.resize(static_cast<size_t>(up));
  for (int p = 0; p < up; ++p) {
    const int t = p + down;
    f->next_phase[static_cast<size_t>(p)] = static_cast<uint32_t>(t % up);
    f->advance[static_cast<size_t>(p)] = static_cast<uint32_t>(t / up);
  }
  return f;
}

// One table per reduced ratio, shared by all live resamplers and freed with the last of them.
std::shared_ptr<const ResamplerFilter> shared_filter(int up, int down) {
  static std::mutex mutex;
  static std::map<std::pair<int, int>, std::weak_ptr<const ResamplerFilter>> cache;
  std::lock_guard<std::mutex> lock(mutex);
  auto& slot = cache[{up, down}];
  if (auto existing = slot.lock()) return existing;
  auto made = design(up, down);
  slot = made;
  for (auto it = cache.begin(); it != cache.end();) {
    it = it->second.expired() ? cache.erase(it) : std::next(it);
  }
  return made;
}

// ---------------------------------------------------------------------------------------------
// Dot-product kernels.
//
// A kernel family fixes the summation order of an output sample: lanes are accumulated in two
// groups (taps k.. and k+W.. of each 2W-tap step), the groups are added lane by lane, and the W
// lanes are reduced pairwise ((0+1)+(2+3)) [+ ((4+5)+(6+7)) for W = 8]. Every kernel of a
// family -- one output, four outputs, the upsampler block -- follows that order exactly (the
// AVX2 decimator block has its own order, one 8-lane accumulator, and computes every output of
// a decimating stream), so a given output sample is bit-identical whichever kernel computed it:
// the output does not depend on how the input was chunked. Families differ in the last bits
// (FMA rounds once), so a stream keeps the family it was built with.
//
// Kernels work on taps that are a multiple of kLanes (16); the coefficient padding is zeros.

struct PortableOps {
  static constexpr bool kBlockKernels = false;
  static float dot1(const float* c, const float* x, size_t taps) {
    float a[8] = {};
    for (size_t k = 0; k < taps; k += 8) {
      for (size_t l = 0; l < 8; ++l) a[l] += c[k + l] * x[k + l];
    }
    const float s0 = a[0] + a[4], s1 = a[1] + a[5], s2 = a[2] + a[6], s3 = a[3] + a[7];
    return (s0 + s1) + (s2 + s3);
  }
  static void dot4(const float* const* c, const float* const* x, size_t taps, float* r) {
    for (int i = 0; i < 4; ++i) r[i] = dot1(c[i], x[i], taps);
  }
  static void dot4_shared(const float* c, const float* const* x, size_t taps, float* r) {
    for (int i = 0; i < 4; ++i) r[i] = dot1(c, x[i], taps);
  }
};

#if XZ_RESAMPLER_SSE2

// Lane j of the result is (s_j0 + s_j1) + (s_j2 + s_j3) for the four sums a, b, c, d.
inline __m128 reduce4(__m128 a, __m128 b, __m128 c, __m128 d) {
  _MM_TRANSPOSE4_PS(a, b, c, d);
  return _mm_add_ps(_mm_add_ps(a, b), _mm_add_ps(c, d));
}

inline float reduce1(__m128 s) {
  const __m128 u = _mm_add_ps(s, _mm_shuffle_ps(s, s, _MM_SHUFFLE(2, 3, 0, 1)));  // 0+1, 2+3
  return _mm_cvtss_f32(_mm_add_ss(u, _mm_movehl_ps(u, u)));
}

struct Sse2Ops {
  // SSE2 is bound by multiplies and adds, not loads: load-sharing block kernels would not help.
  static constexpr bool kBlockKernels = false;
  static float dot1(const float* c, const float* x, size_t taps) {
    __m128 a0 = _mm_setzero_ps();
    __m128 a1 = _mm_setzero_ps();
    for (size_t k = 0; k < taps; k += 8) {
      a0 = _mm_add_ps(a0, _mm_mul_ps(_mm_loadu_ps(c + k), _mm_loadu_ps(x + k)));
      a1 = _mm_add_ps(a1, _mm_mul_ps(_mm_loadu_ps(c + k + 4), _mm_loadu_ps(x + k + 4)));
    }
    return reduce1(_mm_add_ps(a0, a1));
  }

  // Four outputs interleaved: eight accumulator chains keep the FP units busy. With SSE2 the
  // multiplies and adds, not the loads, are the limit, so shared-load variants would not help.
  static void dot4(const float* const* c, const float* const* x, size_t taps, float* r) {
    __m128 a0 = _mm_setzero_ps(), a1 = _mm_setzero_ps();
    __m128 b0 = _mm_setzero_ps(), b1 = _mm_setzero_ps();
    __m128 c0 = _mm_setzero_ps(), c1 = _mm_setzero_ps();
    __m128 d0 = _mm_setzero_ps(), d1 = _mm_setzero_ps();
    const float *ca = c[0], *cb = c[1], *cc = c[2], *cd = c[3];
    const float *xa = x[0], *xb = x[1], *xc = x[2], *xd = x[3];
    for (size_t k = 0; k < taps; k += 8) {
      a0 = _mm_add_ps(a0, _mm_mul_ps(_mm_loadu_ps(ca + k), _mm_loadu_ps(xa + k)));
      b0 = _mm_add_ps(b0, _mm_mul_ps(_mm_loadu_ps(cb + k), _mm_loadu_ps(xb + k)));
      c0 = _mm_add_ps(c0, _mm_mul_ps(_mm_loadu_ps(cc + k), _mm_loadu_ps(xc + k)));
      d0 = _mm_add_ps(d0, _mm_mul_ps(_mm_loadu_ps(cd + k), _mm_loadu_ps(xd + k)));
      a1 = _mm_add_ps(a1, _mm_mul_ps(_mm_loadu_ps(ca + k + 4), _mm_loadu_ps(xa + k + 4)));
      b1 = _mm_add_ps(b1, _mm_mul_ps(_mm_loadu_ps(cb + k + 4), _mm_loadu_ps(xb + k + 4)));
      c1 = _mm_add_ps(c1, _mm_mul_ps(_mm_loadu_ps(cc + k + 4), _mm_loadu_ps(xc + k + 4)));
      d1 = _mm_add_ps(d1, _mm_mul_ps(_mm_loadu_ps(cd + k + 4), _mm_loadu_ps(xd + k + 4)));
    }
    _mm_storeu_ps(r, reduce4(_mm_add_ps(a0, a1), _mm_add_ps(b0, b1), _mm_add_ps(c0, c1),
                             _mm_add_ps(d0, d1)));
  }
  static void dot4_shared(const float* c, const float* const* x, size_t taps, float* r) {
    const float* cs[4] = {c, c, c, c};
    dot4(cs, x, taps, r);
  }
};

#endif  // XZ_RESAMPLER_SSE2

#if XZ_RESAMPLER_AVX2
// Compiled for AVX2+FMA regardless of the build's baseline and only called after a CPUID check,
// so the addon still runs on any x86-64.
#define XZ_AVX2_FN __attribute__((target("avx2,fma")))

// Lane j of the result is ((s_j0+s_j1)+(s_j2+s_j3)) + ((s_j4+s_j5)+(s_j6+s_j7)).
XZ_AVX2_FN inline __m128 reduce4_256(__m256 a, __m256 b, __m256 c, __m256 d) {
  const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(a, b), _mm256_hadd_ps(c, d));
  return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
}

XZ_AVX2_FN inline __m128 reduce2_256(__m256 a, __m256 b) {  // lanes 0 and 1
  const __m256 h1 = _mm256_hadd_ps(a, b);
  const __m256 h = _mm256_hadd_ps(h1, h1);
  return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
}

struct Avx2Ops {
  static constexpr bool kBlockKernels = true;
  XZ_AVX2_FN static float dot1(const float* c, const float* x, size_t taps) {
    __m256 a0 = _mm256_setzero_ps();
    __m256 a1 = _mm256_setzero_ps();
    for (size_t k = 0; k < taps; k += 16) {
      a0 = _mm256_fmadd_ps(_mm256_loadu_ps(c + k), _mm256_loadu_ps(x + k), a0);
      a1 = _mm256_fmadd_ps(_mm256_loadu_ps(c + k + 8), _mm256_loadu_ps(x + k + 8), a1);
    }
    const __m256 s = _mm256_add_ps(a0, a1);
    return _mm_cvtss_f32(reduce2_256(s, s));
  }

  XZ_AVX2_FN static void dot4(const float* const* c, const float* const* x, size_t taps,
                              float* r) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    __m256 b0 = _mm256_setzero_ps(), b1 = _mm256_setzero_ps();
    __m256 c0 = _mm256_setzero_ps(), c1 = _mm256_setzero_ps();
    __m256 d0 = _mm256_setzero_ps(), d1 = _mm256_setzero_ps();
    const float *ca = c[0], *cb = c[1], *cc = c[2], *cd = c[3];
    const float *xa = x[0], *xb = x[1], *xc = x[2], *xd = x[3];
    for (size_t k = 0; k < taps; k += 16) {
      a0 = _mm256_fmadd_ps(_mm256_loadu_ps(ca + k), _mm256_loadu_ps(xa + k), a0);
      b0 = _mm256_fmadd_ps(_mm256_loadu_ps(cb + k), _mm256_loadu_ps(xb + k), b0);
      c0 = _mm256_fmadd_ps(_mm256_loadu_ps(cc + k), _mm256_loadu_ps(xc + k), c0);
      d0 = _mm256_fmadd_ps(_mm256_loadu_ps(cd + k), _mm256_loadu_ps(xd + k), d0);
      a1 = _mm256_fmadd_ps(_mm256_loadu_ps(ca + k + 8), _mm256_loadu_ps(xa + k + 8), a1);
      b1 = _mm256_fmadd_ps(_mm256_loadu_ps(cb + k + 8), _mm256_loadu_ps(xb + k + 8), b1);
      c1 = _mm256_fmadd_ps(_mm256_loadu_ps(cc + k + 8), _mm256_loadu_ps(xc + k + 8), c1);
      d1 = _mm256_fmadd_ps(_mm256_loadu_ps(cd + k + 8), _mm256_loadu_ps(xd + k + 8), d1);
    }
    _mm_storeu_ps(r, reduce4_256(_mm256_add_ps(a0, a1), _mm256_add_ps(b0, b1),
                                 _mm256_add_ps(c0, c1), _mm256_add_ps(d0, d1)));
  }

  // Integer upsampling by L (M == 1): out[i*L + p] = phase p at input window x + i, for
  // i < positions. Two positions per iteration: each input vector is loaded once for all L
  // phases and 4L independent accumulator chains cover the FMA latency. Same per-output order
  // as dot1.
  template <int L>
  XZ_AVX2_FN static void upsample(const float* c, const float* x, size_t taps, size_t positions,
                                  float* out) {
    static_assert(L == 2 || L == 3, "register budget: 4L accumulators + 2 inputs <= 16");
    size_t i = 0;
    for (; i + 2 <= positions; i += 2, x += 2, out += 2 * L) {
      // Fully unrolled (pragmas) so the accumulators live in registers.
      __m256 acc[2 * L][2];
#pragma GCC unroll 8
      for (int j = 0; j < 2 * L; ++j) acc[j][0] = acc[j][1] = _mm256_setzero_ps();
      for (size_t k = 0; k < taps; k += 16) {
#pragma GCC unroll 2
        for (int h = 0; h < 2; ++h) {
          const __m256 x0 = _mm256_loadu_ps(x + k + 8 * h);
          const __m256 x1 = _mm256_loadu_ps(x + 1 + k + 8 * h);
#pragma GCC unroll 4
          for (int p = 0; p < L; ++p) {
            const __m256 kp = _mm256_loadu_ps(c + p * taps + k + 8 * h);
            acc[p][h] = _mm256_fmadd_ps(kp, x0, acc[p][h]);
            acc[L + p][h] = _mm256_fmadd_ps(kp, x1, acc[L + p][h]);
          }
        }
      }
      __m256 s[2 * L];
#pragma GCC unroll 8
      for (int j = 0; j < 2 * L; ++j) s[j] = _mm256_add_ps(acc[j][0], acc[j][1]);
      _mm_storeu_ps(out, reduce4_256(s[0], s[1], s[2], s[3]));
      if (L == 3) {
        _mm_storel_pi(reinterpret_cast<__m64*>(out + 4), reduce2_256(s[4], s[5]));
      }
    }
    for (; i < positions; ++i, ++x, out += L) {
      for (int p = 0; p < L; ++p) out[p] = dot1(c + p * taps, x, taps);
    }
  }

  // Decimation (L == 1): out[j] = single-phase dot product at x + j*stride, j < count. Eight
  // outputs per iteration with one 8-lane accumulator each: the coefficients are loaded once
  // for all eight and the reduction tree is shared. Its own summation order (8-tap steps), used
  // for every output of a decimating stream, tail included.
  XZ_AVX2_FN static void decimate(const float* c, const float* x, size_t stride, size_t taps,
                                  size_t count, float* out) {
    size_t j = 0;
    for (; j + 8 <= count; j += 8, x += 8 * stride, out += 8) {
      __m256 acc[8];
#pragma GCC unroll 8
      for (int i = 0; i < 8; ++i) acc[i] = _mm256_setzero_ps();
      for (size_t k = 0; k < taps; k += 8) {
        const __m256 kc = _mm256_loadu_ps(c + k);
#pragma GCC unroll 8
        for (int i = 0; i < 8; ++i) {
          acc[i] = _mm256_fmadd_ps(kc, _mm256_loadu_ps(x + i * stride + k), acc[i]);
        }
      }
      // Lane tree per output: ((0+1)+(2+3)) + ((4+5)+(6+7)), eight outputs in one vector.
      const __m256 g0 = _mm256_hadd_ps(_mm256_hadd_ps(acc[0], acc[1]),
                                       _mm256_hadd_ps(acc[2], acc[3]));
      const __m256 g1 = _mm256_hadd_ps(_mm256_hadd_ps(acc[4], acc[5]),
                                       _mm256_hadd_ps(acc[6], acc[7]));
      _mm256_storeu_ps(out, _mm256_add_ps(_mm256_permute2f128_ps(g0, g1, 0x20),
                                          _mm256_permute2f128_ps(g0, g1, 0x31)));
    }
    for (; j < count; ++j, x += stride, ++out) {
      __m256 acc = _mm256_setzero_ps();
      for (size_t k = 0; k < taps; k += 8) {
        acc = _mm256_fmadd_ps(_mm256_loadu_ps(c + k), _mm256_loadu_ps(x + k), acc);
      }
      *out = _mm_cvtss_f32(reduce2_256(acc, acc));
    }
  }
};

bool cpu_has_avx2_fma() {
  static const bool has = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }();
  return has;
}

#endif  // XZ_RESAMPLER_AVX2

// Output conversion. Int16: scale, clamp, round to nearest (ties to even), so the SSE2 vector
// path, the SSE2 scalar path and the portable path agree exactly.
#if XZ_RESAMPLER_SSE2

inline int16_t to_int16(float v) {
  // Clamp first: cvtss2si maps out-of-range values to INT_MIN, which would flip the sign.
  __m128 s = _mm_mul_ss(_mm_set_ss(v), _mm_set_ss(32768.0f));
  s = _mm_min_ss(_mm_max_ss(s, _mm_set_ss(-32768.0f)), _mm_set_ss(32767.0f));
  return static_cast<int16_t>(_mm_cvtss_si32(s));  // current rounding mode: nearest, ties even
}

inline void store4(int16_t* out, const float* r) {
  __m128 s = _mm_mul_ps(_mm_loadu_ps(r), _mm_set1_ps(32768.0f));
  s = _mm_min_ps(_mm_max_ps(s, _mm_set1_ps(-32768.0f)), _mm_set1_ps(32767.0f));
  const __m128i i32 = _mm_cvtps_epi32(s);
  _mm_storel_epi64(reinterpret_cast<__m128i*>(out), _mm_packs_epi32(i32, i32));
}

#else

inline int16_t to_int16(float v) {
  float s = v * 32768.0f;
  s = s >= -32768.0f ? s : -32768.0f;  // NaN lands here, as with the SSE2 version
  s = s <= 32767.0f ? s : 32767.0f;
  return static_cast<int16_t>(std::nearbyint(s));
}

inline void store4(int16_t* out, const float* r) {
  for (int i = 0; i < 4; ++i) out[i] = to_int16(r[i]);
}

#endif

inline void store(float* out, float v) { *out = v; }
inline void store(int16_t* out, float v) { *out = to_int16(v); }

inline void store4(float* out, const float* r) { std::memcpy(out, r, 4 * sizeof(float)); }

template <typename Out>
inline void store_n(Out* out, const float* r, int n) {
  int i = 0;
  for (; i + 4 <= n; i += 4) store4(out + i, r + i);
  for (; i < n; ++i) store(out + i, r[i]);
}


inline void load(float* dst, const float* src, size_t n) {
  std::memcpy(dst, src, n * sizeof(float));
}
inline void load(float* dst, const int16_t* src, size_t n) {
  constexpr float kScale = 1.0f / 32768.0f;  // exact power of two: no rounding
  size_t i = 0;
#if XZ_RESAMPLER_SSE2
  const __m128 scale = _mm_set1_ps(kScale);
  for (; i + 8 <= n; i += 8) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i));
    // Sign-extend by placing each sample in the top half of a 32-bit lane, then shifting.
    const __m128i lo = _mm_srai_epi32(_mm_unpacklo_epi16(v, v), 16);
    const __m128i hi = _mm_srai_epi32(_mm_unpackhi_epi16(v, v), 16);
    _mm_storeu_ps(dst + i, _mm_mul_ps(_mm_cvtepi32_ps(lo), scale));
    _mm_storeu_ps(dst + i + 4, _mm_mul_ps(_mm_cvtepi32_ps(hi), scale));
  }
#endif
  for (; i < n; ++i) dst[i] = static_cast<float>(src[i]) * kScale;
}

inline void copy_through(float* dst, const float* src, size_t n) {
  std::memmove(dst, src, n * sizeof(float));
}
inline void copy_through(int16_t* dst, const int16_t* src, size_t n) {
  std::memmove(dst, src, n * sizeof(int16_t));
}

std::string rate_error(const char* which, int rate) {
  return std::string("Resampler: ") + which + " must be an integer in [1, " +
         std::to_string(Resampler::kMaxRate) + "], got " + std::to_string(rate);
}

}  // namespace

bool Resampler::kernel_supported(Kernel kernel) {
  switch (kernel) {
    case Kernel::kAuto:
    case Kernel::kPortable:
      return true;
    case Kernel::kSse2:
#if XZ_RESAMPLER_SSE2
      return true;
#else
      return false;
#endif
    case Kernel::kAvx2:
#if XZ_RESAMPLER_AVX2
      return cpu_has_avx2_fma();
#else
      return false;
#endif
  }
  return false;
}

const char* Resampler::kernel_name(Kernel kernel) {
  switch (kernel) {
    case Kernel::kAuto:
      return "auto";
    case Kernel::kPortable:
      return "portable";
    case Kernel::kSse2:
      return "sse2";
    case Kernel::kAvx2:
      return "avx2+fma";
  }
  return "unknown";
}

Resampler::Resampler(int input_rate, int output_rate, Kernel kernel)
    : input_rate_(input_rate), output_rate_(output_rate) {
  if (input_rate < 1 || input_rate > kMaxRate) {
    throw std::invalid_argument(rate_error("input_rate", input_rate));
  }
  if (output_rate < 1 || output_rate > kMaxRate) {
    throw std::invalid_argument(rate_error("output_rate", output_rate));
  }
  const int g = std::gcd(input_rate, output_rate);
  up_ = output_rate / g;
  down_ = input_rate / g;
  if (up_ > kMaxRatioTerm || down_ > kMaxRatioTerm) {
    throw std::invalid_argument(
        "Resampler: unsupported ratio " + std::to_string(input_rate) + " -> " +
        std::to_string(output_rate) + " Hz: reduced ratio out/in = " + std::to_string(up_) +
        "/" + std::to_string(down_) + ", both terms must be <= " +
        std::to_string(kMaxRatioTerm));
  }
  if (!kernel_supported(kernel)) {
    throw std::invalid_argument(std::string("Resampler: kernel ") + kernel_name(kernel) +
                                " is not supported on this CPU/build");
  }
  if (kernel == Kernel::kAuto) {
    kernel = kernel_supported(Kernel::kAvx2)   ? Kernel::kAvx2
             : kernel_supported(Kernel::kSse2) ? Kernel::kSse2
                                               : Kernel::kPortable;
  }
  kernel_ = kernel;
  if (is_passthrough()) return;
  filter_ = shared_filter(up_, down_);
  delay_ = filter_->delay;
  // Room for one filter span of history plus a block of new input; the block is large enough
  // that moving the history back to the front is rare compared with the filtering work.
  const size_t span = filter_->taps - 1;
  const size_t block = std::max<size_t>(1024, 2 * filter_->taps);
  history_.assign(span + block, 0.0f);
  reset();
}

int Resampler::prototype_length() const { return filter_ ? filter_->length : 0; }

int Resampler::taps_per_output() const {
  return filter_ ? static_cast<int>(filter_->taps) : 0;
}

size_t Resampler::max_output(size_t input_samples) const {
  const size_t up = static_cast<size_t>(up_), down = static_cast<size_t>(down_);
  const size_t whole = input_samples / down;
  const size_t rest = input_samples % down;
  if (whole > (std::numeric_limits<size_t>::max() - up) / up) {
    return std::numeric_limits<size_t>::max();
  }
  return whole * up + (rest * up + down - 1) / down;
}

void Resampler::reset() {
  if (!filter_) return;
  // The first output needs input 0 (at index taps-1) and silence before it; nothing past
  // avail_ is ever read before being written.
  std::fill(history_.begin(), history_.begin() + static_cast<std::ptrdiff_t>(filter_->taps - 1),
            0.0f);
  avail_ = filter_->taps - 1;
  pos_ = filter_->taps - 1;
  phase_ = 0;
}

void Resampler::compact() {
  // Keep exactly the span the next output needs; everything older is never read again.
  // (taps > largest input step between outputs, so first <= avail_: no unread input is lost.)
  const size_t first = pos_ + 1 - filter_->taps;
  if (first == 0) return;
  std::memmove(history_.data(), history_.data() + first, (avail_ - first) * sizeof(float));
  avail_ -= first;
  pos_ -= first;
}

template <typename Out>
size_t Resampler::emit(Out* out, size_t limit) {
  switch (kernel_) {
#if XZ_RESAMPLER_AVX2
    case Kernel::kAvx2:
      return emit_with<Avx2Ops>(out, limit);
#endif
#if XZ_RESAMPLER_SSE2
    case Kernel::kSse2:
      return emit_with<Sse2Ops>(out, limit);
#endif
    default:
      return emit_with<PortableOps>(out, limit);
  }
}

template <typename Ops, typename Out>
size_t Resampler::emit_with(Out* out, size_t limit) {
  if constexpr (Ops::kBlockKernels) {
    if (up_ == 1) return emit_decimator<Ops>(out, limit);
    if (down_ == 1 && up_ == 2) return emit_upsampler<Ops, 2>(out, limit);
    if (down_ == 1 && up_ == 3) return emit_upsampler<Ops, 3>(out, limit);
  }
  return emit_generic<Ops>(out, limit);
}

namespace {
constexpr size_t kScratch = 240;  // floats: block kernels write here before int16 conversion

template <typename Out>
inline float* block_target(Out* out, float* scratch) {
  if constexpr (std::is_same_v<Out, float>) {
    (void)scratch;
    return out;
  } else {
    (void)out;
    return scratch;
  }
}

template <typename Out>
inline void block_store(Out* out, const float* scratch, size_t n) {
  if constexpr (!std::is_same_v<Out, float>) store_n(out, scratch, static_cast<int>(n));
}
}  // namespace

// Single-phase filter (L == 1): output j needs input pos + j*M, no phase bookkeeping at all.
template <typename Ops, typename Out>
size_t Resampler::emit_decimator(Out* out, size_t limit) {
  if (pos_ >= avail_) return 0;
  const ResamplerFilter& f = *filter_;
  const size_t taps = f.taps, stride = static_cast<size_t>(down_);
  const size_t n = std::min(limit, (avail_ - pos_ + stride - 1) / stride);
  const float* x = history_.data() + pos_ - (taps - 1);
  float scratch[kScratch];
  for (size_t done = 0; done < n;) {
    const size_t k = std::min(n - done, kScratch);
    Ops::decimate(f.coeffs.data(), x + done * stride, stride, taps, k,
                  block_target(out + done, scratch));
    block_store(out + done, scratch, k);
    done += k;
  }
  pos_ += n * stride;
  return n;
}

// Integer upsampler (M == 1): each input position yields outputs of phases 0..L-1 in order.
template <typename Ops, int kUp, typename Out>
size_t Resampler::emit_upsampler(Out* out, size_t limit) {
  const ResamplerFilter& f = *filter_;
  const size_t taps = f.taps, back = taps - 1;
  const float* coeffs = f.coeffs.data();
  const float* hist = history_.data();
  size_t produced = 0;
  const auto single = [&] {  // one output, then step the phase
    store(out + produced++, Ops::dot1(coeffs + phase_ * taps, hist + pos_ - back, taps));
    if (++phase_ == static_cast<uint32_t>(kUp)) {
      phase_ = 0;
      ++pos_;
    }
  };
  while (phase_ != 0 && pos_ < avail_ && produced < limit) single();
  if (phase_ == 0 && pos_ < avail_) {
    const size_t positions = std::min(avail_ - pos_, (limit - produced) / kUp);
    float scratch[kScratch];
    constexpr size_t kChunk = kScratch / kUp;
    for (size_t done = 0; done < positions;) {
      const size_t k = std::min(positions - done, kChunk);
      Ops::template upsample<kUp>(coeffs, hist + pos_ + done - back, taps, k,
                                  block_target(out + produced, scratch));
      block_store(out + produced, scratch, k * kUp);
      produced += k * kUp;
      done += k;
    }
    pos_ += positions;
  }
  while (pos_ < avail_ && produced < limit) single();
  return produced;
}

// Any ratio: phase and input step per output come from the filter's tables.
template <typename Ops, typename Out>
size_t Resampler::emit_generic(Out* out, size_t limit) {
  const ResamplerFilter& f = *filter_;
  const size_t taps = f.taps;
  const float* coeffs = f.coeffs.data();
  const uint32_t* next = f.next_phase.data();
  const uint32_t* adv = f.advance.data();
  const float* hist = history_.data();
  const size_t back = taps - 1;
  const size_t avail = avail_;
  size_t produced = 0;
  size_t pos = pos_;
  uint32_t phase = phase_;
  float r[4];
  while (pos < avail && produced < limit) {
    const uint32_t p1 = next[phase];
    const size_t q1 = pos + adv[phase];
    if (limit - produced >= 4) {
      const uint32_t p2 = next[p1];
      const size_t q2 = q1 + adv[p1];
      const uint32_t p3 = next[p2];
      const size_t q3 = q2 + adv[p2];
      if (q3 < avail) {
        const float* x[4] = {hist + pos - back, hist + q1 - back, hist + q2 - back,
                             hist + q3 - back};
        if constexpr (!Ops::kBlockKernels) {  // (block-kernel families decimate elsewhere)
          if (up_ == 1) Ops::dot4_shared(coeffs, x, taps, r);  // one phase: shared coefficients
        }
        if (Ops::kBlockKernels || up_ != 1) {
          const float* c[4] = {coeffs + phase * taps, coeffs + p1 * taps, coeffs + p2 * taps,
                               coeffs + p3 * taps};
          Ops::dot4(c, x, taps, r);
        }
        store4(out + produced, r);
        produced += 4;
        pos = q3 + adv[p3];
        phase = next[p3];
        continue;
      }
    }
    store(out + produced, Ops::dot1(coeffs + phase * taps, hist + pos - back, taps));
    ++produced;
    pos = q1;
    phase = p1;
  }
  pos_ = pos;
  phase_ = phase;
  return produced;
}

template <typename In, typename Out>
size_t Resampler::run(const In* in, size_t n, Out* out, size_t out_capacity) {
  if (n == 0) return 0;
  const size_t bound = max_output(n);
  if (out_capacity < bound) {
    throw std::length_error("Resampler::process: output capacity " +
                            std::to_string(out_capacity) + " is less than max_output(" +
                            std::to_string(n) + ") = " + std::to_string(bound));
  }
  if (in == nullptr || out == nullptr) {
    throw std::invalid_argument("Resampler::process: null buffer");
  }
  if (is_passthrough()) {
    copy_through(out, in, n);
    return n;
  }
  size_t produced = 0;
  while (n > 0) {
    if (avail_ == history_.size()) compact();
    const size_t take = std::min(n, history_.size() - avail_);
    load(history_.data() + avail_, in, take);
    avail_ += take;
    in += take;
    n -= take;
    produced += emit(out + produced, std::numeric_limits<size_t>::max());
  }
  return produced;
}

template <typename Out>
size_t Resampler::drain(Out* out, size_t out_capacity) {
  const size_t want = max_flush();
  if (out_capacity < want) {
    throw std::length_error("Resampler::flush: output capacity " +
                            std::to_string(out_capacity) + " is less than max_flush() = " +
                            std::to_string(want));
  }
  if (want == 0) {
    reset();
    return 0;
  }
  if (out == nullptr) throw std::invalid_argument("Resampler::flush: null buffer");
  size_t produced = emit(out, want);  // nothing is pending after process(), but be exact
  while (produced < want) {
    if (avail_ == history_.size()) compact();
    // Feed silence; samples fed beyond what the tail needs are discarded by reset().
    std::fill(history_.begin() + static_cast<std::ptrdiff_t>(avail_), history_.end(), 0.0f);
    avail_ = history_.size();
    produced += emit(out + produced, want - produced);
  }
  reset();
  return produced;
}

size_t Resampler::process(const int16_t* in, size_t n, int16_t* out, size_t out_capacity) {
  return run(in, n, out, out_capacity);
}

size_t Resampler::process(const float* in, size_t n, float* out, size_t out_capacity) {
  return run(in, n, out, out_capacity);
}

size_t Resampler::flush(int16_t* out, size_t out_capacity) { return drain(out, out_capacity); }

size_t Resampler::flush(float* out, size_t out_capacity) { return drain(out, out_capacity); }

}  // namespace xz::dsp
