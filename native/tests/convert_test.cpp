// Tests for xz::dsp sample conversion (native/dsp/convert.h).
//
// The centrepiece is exhaustive: every one of the 2^32 float bit patterns goes through every SIMD
// level this CPU supports, the scalar rule and the dispatcher, and each result must equal a reference
// written here in double precision with its own round-half-to-even (integer truncation plus an
// explicit tie rule: no nearbyint, no dependence on the FP rounding mode). The buffers are deliberately
// misaligned and every call is split at an odd length so the SIMD bodies and their scalar tails are
// both covered. The work is spread over the machine's cores: about 40 s of CPU in all (the scalar
// kernel, which calls nearbyintf per sample, is half of it), so about 20 s on an idle 2-core machine.
#include "../dsp/convert.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <limits>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace dsp = xz::dsp;
using dsp::SimdLevel;

namespace {

float FromBits(uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

uint32_t ToBits(float f) {
  uint32_t bits;
  std::memcpy(&bits, &f, sizeof bits);
  return bits;
}

// Independent reference: scale in double (exact for every float), NaN -> 0, saturate, then round half
// to even by hand. Inside the clamp |d| < 32768, so the truncating cast is exact and d - t is the
// exact fractional part; the tie rule is written out, so nothing depends on the FP rounding mode.
inline int16_t Reference(float x) {
  if (x != x) return 0;
  const double d = static_cast<double>(x) * 32768.0;
  if (d >= 32767.0) return 32767;
  if (d <= -32768.0) return -32768;
  int64_t t = static_cast<int64_t>(d);  // truncates toward zero
  const double frac = d - static_cast<double>(t);
  if (frac > 0.5 || (frac == 0.5 && (t & 1) != 0)) {
    ++t;
  } else if (frac < -0.5 || (frac == -0.5 && (t & 1) != 0)) {
    --t;
  }
  return static_cast<int16_t>(t);
}

void ReferenceBlock(const float* in, int16_t* out, size_t n) {
  for (size_t i = 0; i < n; ++i) out[i] = Reference(in[i]);
}

struct Impl {
  std::string name;
  void (*fn)(SimdLevel, const float*, int16_t*, size_t);
  SimdLevel level;
};

void CallWith(SimdLevel level, const float* in, int16_t* out, size_t n) {
  dsp::f32_to_s16_with(level, in, out, n);
}
void CallDispatcher(SimdLevel, const float* in, int16_t* out, size_t n) { dsp::f32_to_s16(in, out, n); }
void CallScalarDetail(SimdLevel, const float* in, int16_t* out, size_t n) {
  dsp::detail::f32_to_s16_scalar(in, out, n);
}

std::vector<SimdLevel> SupportedLevels() {
  std::vector<SimdLevel> levels;
  for (SimdLevel l : {SimdLevel::kScalar, SimdLevel::kSse2, SimdLevel::kAvx2, SimdLevel::kNeon}) {
    if (dsp::simd_level_supported(l)) levels.push_back(l);
  }
  return levels;
}

// Every implementation under test: each supported level through f32_to_s16_with and the dispatcher
// (plus, where cheap, the scalar kernel called directly; f32_to_s16_with(kScalar) is that same call,
// so the exhaustive run skips it: it is the slowest kernel by far).
std::vector<Impl> AllImpls(bool with_scalar_kernel = true) {
  std::vector<Impl> impls;
  for (SimdLevel l : SupportedLevels()) impls.push_back({dsp::simd_level_name(l), &CallWith, l});
  if (with_scalar_kernel) impls.push_back({"detail::f32_to_s16_scalar", &CallScalarDetail, SimdLevel::kScalar});
  impls.push_back({"f32_to_s16 (dispatcher)", &CallDispatcher, dsp::best_simd_level()});
  return impls;
}

std::string Describe(uint32_t bits) {
  char buf[96];
  std::snprintf(buf, sizeof buf, "bits=0x%08x (%.9g)", bits, static_cast<double>(FromBits(bits)));
  return buf;
}

// ---------------------------------------------------------------------------------------------
// The reference itself, on values whose answers are known by hand.

TEST(ConvertReference, KnownValues) {
  const float s = 1.0f / 32768.0f;
  EXPECT_EQ(Reference(0.0f), 0);
  EXPECT_EQ(Reference(-0.0f), 0);
  EXPECT_EQ(Reference(1.0f), 32767);
  EXPECT_EQ(Reference(-1.0f), -32768);
  EXPECT_EQ(Reference(0.5f * s), 0);     // tie -> even 0
  EXPECT_EQ(Reference(1.5f * s), 2);     // tie -> even 2
  EXPECT_EQ(Reference(2.5f * s), 2);     // tie -> even 2
  EXPECT_EQ(Reference(-0.5f * s), 0);
  EXPECT_EQ(Reference(-1.5f * s), -2);
  EXPECT_EQ(Reference(-2.5f * s), -2);
  EXPECT_EQ(Reference(32766.5f * s), 32766);
  EXPECT_EQ(Reference(-32767.5f * s), -32768);
  EXPECT_EQ(Reference(std::nextafter(0.5f, 1.0f) * s), 1);
  EXPECT_EQ(Reference(std::nextafter(0.5f, 0.0f) * s), 0);
  EXPECT_EQ(Reference(std::numeric_limits<float>::quiet_NaN()), 0);
  EXPECT_EQ(Reference(std::numeric_limits<float>::infinity()), 32767);
  EXPECT_EQ(Reference(-std::numeric_limits<float>::infinity()), -32768);
  EXPECT_EQ(Reference(std::numeric_limits<float>::denorm_min()), 0);
  EXPECT_EQ(Reference(std::numeric_limits<float>::max()), 32767);
  EXPECT_EQ(Reference(-std::numeric_limits<float>::max()), -32768);
}

// ---------------------------------------------------------------------------------------------
// Level bookkeeping.

TEST(ConvertLevels, NamesAndSupport) {
  EXPECT_STREQ(dsp::simd_level_name(SimdLevel::kScalar), "scalar");
  EXPECT_STREQ(dsp::simd_level_name(SimdLevel::kSse2), "sse2");
  EXPECT_STREQ(dsp::simd_level_name(SimdLevel::kAvx2), "avx2");
  EXPECT_STREQ(dsp::simd_level_name(SimdLevel::kNeon), "neon");
  EXPECT_TRUE(dsp::simd_level_supported(SimdLevel::kScalar));
  EXPECT_TRUE(dsp::simd_level_supported(dsp::best_simd_level()));
  EXPECT_EQ(dsp::best_simd_level(), dsp::best_simd_level());
#if defined(__x86_64__)
  EXPECT_TRUE(dsp::simd_level_supported(SimdLevel::kSse2));
  EXPECT_FALSE(dsp::simd_level_supported(SimdLevel::kNeon));
  EXPECT_EQ(dsp::simd_level_supported(SimdLevel::kAvx2), __builtin_cpu_supports("avx2") != 0);
  EXPECT_EQ(dsp::best_simd_level(),
            __builtin_cpu_supports("avx2") ? SimdLevel::kAvx2 : SimdLevel::kSse2);
#elif defined(__aarch64__)
  EXPECT_TRUE(dsp::simd_level_supported(SimdLevel::kNeon));
  EXPECT_EQ(dsp::best_simd_level(), SimdLevel::kNeon);
#endif
  std::string levels;
  for (SimdLevel l : SupportedLevels()) levels += std::string(levels.empty() ? "" : ", ") + dsp::simd_level_name(l);
  std::printf("[ info     ] supported SIMD levels: %s; best: %s\n", levels.c_str(),
              dsp::simd_level_name(dsp::best_simd_level()));
}

// ---------------------------------------------------------------------------------------------
// Edge values through every implementation, at every position of a SIMD block (so each value is seen
// by the vector body and by the scalar tail).

TEST(F32ToS16, EdgeValuesEveryLaneEveryImpl) {
  const float s = 1.0f / 32768.0f;
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<float> edges = {
      0.0f, -0.0f, 1.0f, -1.0f, 0.5f * s, 1.5f * s, 2.5f * s, -0.5f * s, -1.5f * s, -2.5f * s,
      32766.5f * s, 32767.5f * s, -32767.5f * s, -32768.5f * s, std::nextafter(1.0f, 0.0f),
      std::nextafter(-1.0f, 0.0f), std::nextafter(1.0f, 2.0f), std::nextafter(-1.0f, -2.0f),
      inf, -inf, std::numeric_limits<float>::quiet_NaN(), -std::numeric_limits<float>::quiet_NaN(),
      FromBits(0x7f800001u) /* signalling NaN */, FromBits(0xffbfffffu),
      std::numeric_limits<float>::denorm_min(), -std::numeric_limits<float>::denorm_min(),
      std::numeric_limits<float>::min(), std::numeric_limits<float>::max(),
      -std::numeric_limits<float>::max(), 65536.0f, -65536.0f, 2147483648.0f, -2147483648.0f,
      4294967296.0f, 1e30f, -1e30f, 0.25f, -0.75f};
  for (const Impl& impl : AllImpls()) {
    for (float e : edges) {
      for (size_t pos = 0; pos < 40; ++pos) {
        std::vector<float> in(41, 0.123f);
        in[pos] = e;
        std::vector<int16_t> out(41, 0x5a5a);
        impl.fn(impl.level, in.data(), out.data(), 41);
        ASSERT_EQ(out[pos], Reference(e)) << impl.name << " " << Describe(ToBits(e)) << " at index " << pos;
        ASSERT_EQ(out[(pos + 1) % 41], Reference(0.123f)) << impl.name;
      }
    }
  }
}

// Every length 0..130, every misalignment of input and output: writes exactly n outputs, nothing
// outside, and matches the reference.
TEST(F32ToS16, LengthsAndAlignmentsWriteExactlyN) {
  constexpr size_t kGuard = 24;
  std::vector<float> source(200);
  uint32_t state = 12345;
  for (float& v : source) {
    state = state * 1664525u + 1013904223u;
    v = static_cast<float>(static_cast<int32_t>(state)) / 2147483648.0f * 1.25f;  // some out of range
  }
  for (const Impl& impl : AllImpls()) {
    for (size_t n = 0; n <= 130; ++n) {
      for (size_t in_off = 0; in_off < 8; ++in_off) {
        for (size_t out_off = 0; out_off < 16; out_off += 3) {
          alignas(64) float in_buf[200 + 8];
          alignas(64) int16_t out_buf[200 + 2 * kGuard];
          std::memcpy(in_buf + in_off, source.data(), n * sizeof(float));
          std::fill(std::begin(out_buf), std::end(out_buf), int16_t{0x7e7e});
          int16_t* out = out_buf + kGuard + out_off;
          impl.fn(impl.level, in_buf + in_off, out, n);
          for (size_t i = 0; i < n; ++i) {
            ASSERT_EQ(out[i], Reference(source[i])) << impl.name << " n=" << n << " i=" << i;
          }
          for (int16_t* p = out_buf; p < out; ++p) ASSERT_EQ(*p, 0x7e7e) << impl.name << " wrote before out, n=" << n;
          for (int16_t* p = out + n; p < std::end(out_buf); ++p) {
            ASSERT_EQ(*p, 0x7e7e) << impl.name << " wrote past out+n, n=" << n;
          }
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Exhaustive: all 2^32 inputs.

struct Mismatch {
  std::string impl;
  uint32_t bits;
  int expected;
  int got;
};

TEST(F32ToS16Exhaustive, AllFloatBitPatternsEveryLevelMatchesReference) {
  constexpr size_t kChunkShift = 20;
  constexpr size_t kChunk = size_t{1} << kChunkShift;  // 2^20 patterns per chunk
  constexpr uint64_t kChunks = (uint64_t{1} << 32) >> kChunkShift;
  const std::vector<Impl> impls = AllImpls(/*with_scalar_kernel=*/false);
  const unsigned threads = std::max(1u, std::min(16u, std::thread::hardware_concurrency()));

  std::atomic<uint64_t> next_chunk{0};
  std::atomic<uint64_t> checked{0};
  std::atomic<uint64_t> failures{0};
  std::mutex report_mutex;
  std::vector<Mismatch> reported;  // the first few, for the failure message
  // Histogram of the reference over all inputs, cross-checked below against counts derived by hand.
  std::atomic<uint64_t> count_zero{0}, count_max{0}, count_min{0};

  auto worker = [&] {
    // +64 lets each chunk start at a different misalignment (4-byte steps for floats, 2 for int16).
    std::vector<float> in_storage(kChunk + 64);
    std::vector<int16_t> ref(kChunk);
    std::vector<int16_t> out_storage(kChunk + 64);
    uint64_t local_zero = 0, local_max = 0, local_min = 0, local_checked = 0;
    for (;;) {
      const uint64_t c = next_chunk.fetch_add(1);
      if (c >= kChunks) break;
      const uint32_t base = static_cast<uint32_t>(c << kChunkShift);
      float* in = in_storage.data() + 1 + (c % 15);  // never 32-byte aligned
      int16_t* out = out_storage.data() + 1 + (c % 31);
      for (size_t i = 0; i < kChunk; ++i) {
        const uint32_t bits = base + static_cast<uint32_t>(i);
        std::memcpy(&in[i], &bits, sizeof(float));
      }
      ReferenceBlock(in, ref.data(), kChunk);
      for (size_t i = 0; i < kChunk; ++i) {
        const int16_t r = ref[i];
        local_zero += r == 0;
        local_max += r == 32767;
        local_min += r == -32768;
      }
      // Split each call at an odd point that changes per chunk, so both calls start and end at
      // positions that are not multiples of any vector width.
      const size_t split = 2 * (c % 97) + 1;
      for (const Impl& impl : impls) {
        std::memset(out, 0x55, kChunk * sizeof(int16_t));
        impl.fn(impl.level, in, out, split);
        impl.fn(impl.level, in + split, out + split, kChunk - split);
        if (std::memcmp(out, ref.data(), kChunk * sizeof(int16_t)) != 0) {
          for (size_t i = 0; i < kChunk; ++i) {
            if (out[i] != ref[i]) {
              const uint64_t f = failures.fetch_add(1);
              if (f < 20) {
                std::lock_guard<std::mutex> lock(report_mutex);
                reported.push_back({impl.name, base + static_cast<uint32_t>(i), ref[i], out[i]});
              }
            }
          }
        }
      }
      local_checked += kChunk;
    }
    checked += local_checked;
    count_zero += local_zero;
    count_max += local_max;
    count_min += local_min;
  };

  const auto t0 = std::chrono::steady_clock::now();
  const std::clock_t cpu0 = std::clock();
  std::vector<std::thread> pool;
  for (unsigned t = 0; t < threads; ++t) pool.emplace_back(worker);
  for (std::thread& t : pool) t.join();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double cpu_seconds = static_cast<double>(std::clock() - cpu0) / CLOCKS_PER_SEC;

  std::string impl_names;
  for (const Impl& impl : impls) impl_names += (impl_names.empty() ? "" : ", ") + impl.name;
  std::printf("[ info     ] exhaustive f32_to_s16: %llu inputs x {%s} + reference in %.1f s wall, %.1f s CPU, %u threads\n",
              static_cast<unsigned long long>(checked.load()), impl_names.c_str(), seconds, cpu_seconds, threads);

  EXPECT_EQ(checked.load(), uint64_t{1} << 32);
  for (const Mismatch& m : reported) {
    ADD_FAILURE() << m.impl << ": " << Describe(m.bits) << " expected " << m.expected << " got " << m.got;
  }
  EXPECT_EQ(failures.load(), 0u);

  // Counts derived by hand from the float format, independent of both the code and the reference:
  //  * 0: NaNs (2 * (2^23 - 1)) plus |x| <= 0.5/32768 = 2^-16 (ties to even 0): +-0, all denormals and
  //    every normal with exponent < -16, plus exactly 2^-16 itself: 2 * (((127 - 16) << 23) + 1).
  //  * 32767: x >= 32766.5/32768, up to +inf. 32766.5/32768 has bits B; a tie there rounds to 32766
  //    (even), so the count is (0x7f800000 - B) + 1 (inclusive of +inf) minus 1 (the tie itself).
  //  * -32768: x <= -32767.5/32768; that tie rounds to -32768 (even), inclusive of -inf.
  const uint64_t nan_count = 2 * ((uint64_t{1} << 23) - 1);
  const uint64_t small_count = 2 * ((uint64_t{127 - 16} << 23) + 1);
  EXPECT_EQ(count_zero.load(), nan_count + small_count);
  const uint32_t b_hi = ToBits(32766.5f / 32768.0f);
  const uint32_t b_lo = ToBits(32767.5f / 32768.0f);  // magnitude bits of the negative tie
  EXPECT_EQ(count_max.load(), uint64_t{0x7f800000u} - b_hi);
  EXPECT_EQ(count_min.load(), uint64_t{0x7f800000u} - b_lo + 1);
}

// ---------------------------------------------------------------------------------------------
// s16_to_f32: all 65536 values.

TEST(S16ToF32, AllValuesExactAndRoundTrip) {
  std::vector<int16_t> all(65536);
  for (int v = -32768; v <= 32767; ++v) all[static_cast<size_t>(v + 32768)] = static_cast<int16_t>(v);
  // Misaligned input and output, whole range in one call and in odd pieces.
  std::vector<int16_t> in_storage(65536 + 3);
  std::vector<float> out_storage(65536 + 5, -7.0f);
  int16_t* in = in_storage.data() + 3;
  float* out = out_storage.data() + 1;
  std::copy(all.begin(), all.end(), in);
  dsp::s16_to_f32(in, out, 1);
  dsp::s16_to_f32(in + 1, out + 1, 12344);
  dsp::s16_to_f32(in + 12345, out + 12345, 65536 - 12345);
  EXPECT_EQ(out_storage[0], -7.0f);
  EXPECT_EQ(out[65536], -7.0f);
  for (size_t i = 0; i < 65536; ++i) {
    const int v = all[i];
    const float expected = static_cast<float>(static_cast<double>(v) / 32768.0);  // exact in float
    ASSERT_EQ(ToBits(out[i]), ToBits(expected)) << "v=" << v;
    ASSERT_GE(out[i], -1.0f);
    ASSERT_LT(out[i], 1.0f);
  }
  EXPECT_EQ(out[0], -1.0f);
  EXPECT_EQ(ToBits(out[32768]), 0u);  // +0.0, not -0.0
  EXPECT_EQ(out[65535], 32767.0f / 32768.0f);

  // f32 -> s16 inverts s16 -> f32 exactly, at every level.
  std::vector<int16_t> back(65536);
  for (const Impl& impl : AllImpls()) {
    std::fill(back.begin(), back.end(), int16_t{0});
    impl.fn(impl.level, out, back.data(), 65536);
    ASSERT_EQ(std::memcmp(back.data(), all.data(), 65536 * sizeof(int16_t)), 0) << impl.name;
  }
}

TEST(S16ToF32, ZeroLengthAndEveryShortLength) {
  for (size_t n = 0; n <= 70; ++n) {
    std::vector<int16_t> in(n + 1);
    for (size_t i = 0; i <= n; ++i) in[i] = static_cast<int16_t>(i * 1031 - 30000);
    std::vector<float> out(n + 2, 9.0f);
    dsp::s16_to_f32(in.data() + 1, out.data() + 1, n);
    EXPECT_EQ(out[0], 9.0f);
    EXPECT_EQ(out[n + 1], 9.0f);
    for (size_t i = 0; i < n; ++i) EXPECT_EQ(out[i + 1], static_cast<float>(in[i + 1]) / 32768.0f);
  }
}

}  // namespace
