// Acceptance tests for xz::dsp::Resampler. All measurements use a float64 reference written here:
// tones are generated in double and measured by least-squares fitting of a sinusoid at the exact
// test frequency (no windowing, no leakage), residual energy is everything else in the output.
//
// Build and run standalone:
//   g++ -std=c++17 -O2 -Wall -Wextra -march=x86-64 native/dsp/resampler.cpp
//       native/tests/resampler_test.cpp -lgtest -lgtest_main -pthread -o /tmp/resampler_test
//   /tmp/resampler_test
#include "../dsp/resampler.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

using xz::dsp::Resampler;

namespace {

constexpr double kPi = 3.14159265358979323846;

struct RatePair {
  int in;
  int out;
};

std::string Name(const RatePair& p) {
  return std::to_string(p.in) + "->" + std::to_string(p.out);
}

using Kernel = Resampler::Kernel;

const Kernel kKernels[] = {Kernel::kPortable, Kernel::kSse2, Kernel::kAvx2};

std::vector<RatePair> AcceptancePairs() {
  std::vector<RatePair> pairs;
  const int rates[] = {8000, 16000, 24000, 48000};
  for (int a : rates) {
    for (int b : rates) {
      if (a != b) pairs.push_back({a, b});
    }
  }
  pairs.push_back({44100, 48000});
  pairs.push_back({48000, 44100});
  return pairs;
}

double Db(double power_ratio) { return 10.0 * std::log10(std::max(power_ratio, 1e-300)); }

std::vector<float> Sine(double freq, double rate, double amplitude, size_t n, double phase = 0.3) {
  std::vector<float> x(n);
  for (size_t i = 0; i < n; ++i) {
    x[i] = static_cast<float>(amplitude * std::sin(2.0 * kPi * freq * i / rate + phase));
  }
  return x;
}

std::vector<float> ResampleAll(Resampler& r, const std::vector<float>& x, bool flush = false) {
  std::vector<float> y(r.max_output(x.size()) + r.max_flush());
  size_t got = r.process(x.data(), x.size(), y.data(), y.size());
  if (flush) got += r.flush(y.data() + got, y.size() - got);
  y.resize(got);
  return y;
}

std::vector<int16_t> ResampleAll(Resampler& r, const std::vector<int16_t>& x,
                                 bool flush = false) {
  std::vector<int16_t> y(r.max_output(x.size()) + r.max_flush());
  size_t got = r.process(x.data(), x.size(), y.data(), y.size());
  if (flush) got += r.flush(y.data() + got, y.size() - got);
  y.resize(got);
  return y;
}

struct ToneFit {
  double amplitude;     // of the fitted sinusoid
  double tone_power;    // mean square of the fitted sinusoid
  double residual;      // mean square of output minus fit
  double total;         // mean square of the output
};

// Least-squares fit of y[j] ~ a cos(w j) + b sin(w j) over [begin, end).
ToneFit FitTone(const std::vector<float>& y, size_t begin, size_t end, double freq, double rate) {
  const double w = 2.0 * kPi * freq / rate;
  double cc = 0, ss = 0, cs = 0, yc = 0, ys = 0, yy = 0;
  for (size_t j = begin; j < end; ++j) {
    const double c = std::cos(w * j), s = std::sin(w * j), v = y[j];
    cc += c * c;
    ss += s * s;
    cs += c * s;
    yc += v * c;
    ys += v * s;
    yy += v * v;
  }
  const double det = cc * ss - cs * cs;
  const double a = (yc * ss - ys * cs) / det;
  const double b = (ys * cc - yc * cs) / det;
  double fit = 0, res = 0;
  for (size_t j = begin; j < end; ++j) {
    const double m = a * std::cos(w * j) + b * std::sin(w * j);
    fit += m * m;
    res += (y[j] - m) * (y[j] - m);
  }
  const double n = static_cast<double>(end - begin);
  return {std::sqrt(a * a + b * b), fit / n, res / n, yy / n};
}

// Output samples to skip before the filter has only real input in its span.
size_t Settle(const Resampler& r) { return 2 * static_cast<size_t>(r.delay()) + 8; }

constexpr size_t kWindow = 6000;  // output samples measured per tone

std::vector<float> ToneThrough(const RatePair& p, Kernel kernel, double freq, double amplitude,
                               size_t* begin) {
  Resampler r(p.in, p.out, kernel);
  *begin = Settle(r);
  const size_t outputs = *begin + kWindow;
  const size_t inputs =
      static_cast<size_t>(std::ceil(static_cast<double>(outputs) * p.in / p.out)) + 1;
  std::vector<float> y = ResampleAll(r, Sine(freq, p.in, amplitude, inputs));
  EXPECT_GE(y.size(), outputs);
  return y;
}

struct Figures {
  double gain_min_db = 1e9, gain_max_db = -1e9;
  double worst_image_db = -1e9;   // residual (images, aliases, noise) of passband tones
  double worst_alias_db = -1e9;   // total output of tones >= out/2 (downsampling only)
  double snr_float_db = 0, snr_int16_db = 0;
};

std::vector<std::pair<std::string, Figures>>& AllFigures() {
  static std::vector<std::pair<std::string, Figures>> all;
  return all;
}

Figures& FiguresFor(const RatePair& p, Kernel kernel) {
  const std::string key = std::string(Resampler::kernel_name(kernel)) + " " + Name(p);
  for (auto& e : AllFigures()) {
    if (e.first == key) return e.second;
  }
  AllFigures().push_back({key, Figures{}});
  return AllFigures().back().second;
}

using PairParam = std::tuple<RatePair, Kernel>;

// Every acceptance test runs for each kernel family this CPU supports.
class PairTest : public ::testing::TestWithParam<PairParam> {
 protected:
  void SetUp() override {
    if (!Resampler::kernel_supported(kernel())) {
      GTEST_SKIP() << Resampler::kernel_name(kernel()) << " not supported here";
    }
  }
  RatePair pair() const { return std::get<0>(GetParam()); }
  Kernel kernel() const { return std::get<1>(GetParam()); }
  Resampler Make() const { return Resampler(pair().in, pair().out, kernel()); }
};

std::string PairName(const ::testing::TestParamInfo<PairParam>& info) {
  std::string k = Resampler::kernel_name(std::get<1>(info.param));
  k = k.substr(0, k.find('+'));
  return std::to_string(std::get<0>(info.param).in) + "_to_" +
         std::to_string(std::get<0>(info.param).out) + "_" + k;
}

// 1. Pass-band flatness, and 2b. images of pass-band tones (residual energy of the output).
TEST_P(PairTest, PassbandRippleAndImages) {
  const RatePair p = pair();
  const double lower = std::min(p.in, p.out);
  const double amplitude = 0.5;
  std::vector<double> freqs = {20.0, 50.0, 100.0, 250.0, 440.0, 1000.0};
  for (int k = 1; k <= 90; ++k) freqs.push_back(Resampler::kPassbandEdge * lower * k / 90.0);
  Figures& fig = FiguresFor(p, kernel());
  for (double f : freqs) {
    size_t begin = 0;
    const std::vector<float> y = ToneThrough(p, kernel(), f, amplitude, &begin);
    const ToneFit fit = FitTone(y, begin, begin + kWindow, f, p.out);
    const double gain_db = 20.0 * std::log10(fit.amplitude / amplitude);
    const double image_db = Db(fit.residual / fit.tone_power);
    fig.gain_min_db = std::min(fig.gain_min_db, gain_db);
    fig.gain_max_db = std::max(fig.gain_max_db, gain_db);
    fig.worst_image_db = std::max(fig.worst_image_db, image_db);
    EXPECT_LE(std::fabs(gain_db), 0.1) << Name(p) << " tone " << f << " Hz";
    EXPECT_LE(image_db, -80.0) << Name(p) << " tone " << f << " Hz";
  }
  EXPECT_LE(fig.gain_max_db - fig.gain_min_db, 0.1) << Name(p);
}

// 2a. Any input tone at or above the output Nyquist frequency is removed (aliases included).
TEST_P(PairTest, StopbandAliasRejection) {
  const RatePair p = pair();
  if (p.out >= p.in) GTEST_SKIP() << "no input frequency reaches the output Nyquist";
  const double amplitude = 0.5;
  const double reference_power = amplitude * amplitude / 2.0;  // a pass-band tone at unity gain
  const double lo = p.out / 2.0, hi = p.in / 2.0;
  Figures& fig = FiguresFor(p, kernel());
  // Quadratic spacing: dense near the stop-band edge, where the highest side lobes are.
  for (int k = 0; k <= 160; ++k) {
    const double f = lo + (hi - lo) * (k / 160.0) * (k / 160.0) * 0.999;
    size_t begin = 0;
    const std::vector<float> y = ToneThrough(p, kernel(), f, amplitude, &begin);
    double energy = 0;
    for (size_t j = begin; j < begin + kWindow; ++j) energy += static_cast<double>(y[j]) * y[j];
    const double db = Db(energy / kWindow / reference_power);
    fig.worst_alias_db = std::max(fig.worst_alias_db, db);
    EXPECT_LE(db, -80.0) << Name(p) << " tone " << f << " Hz";
  }
}

// 3. 1 kHz at -1 dBFS against an ideal float64 sine delayed by exactly delay() output samples.
TEST_P(PairTest, SnrOneKilohertz) {
  const RatePair p = pair();
  const double amplitude = std::pow(10.0, -1.0 / 20.0);
  const double f = 1000.0, phase = 0.7;
  Resampler probe = Make();
  const size_t begin = Settle(probe);
  const size_t outputs = begin + static_cast<size_t>(p.out);  // one second measured
  const size_t inputs = static_cast<size_t>(std::ceil(double(outputs) * p.in / p.out)) + 1;
  const std::vector<float> x = Sine(f, p.in, amplitude, inputs, phase);
  std::vector<int16_t> x16(inputs);
  for (size_t i = 0; i < inputs; ++i) {
    const double v = std::nearbyint(amplitude * std::sin(2.0 * kPi * f * i / p.in + phase) * 32768.0);
    x16[i] = static_cast<int16_t>(std::clamp(v, -32768.0, 32767.0));
  }
  Resampler rf = Make(), ri = Make();
  const std::vector<float> yf = ResampleAll(rf, x);
  const std::vector<int16_t> yi = ResampleAll(ri, x16);
  ASSERT_GE(yf.size(), outputs);
  ASSERT_GE(yi.size(), outputs);
  double sig = 0, err_f = 0, err_i = 0;
  const double delay = probe.delay();
  for (size_t j = begin; j < outputs; ++j) {
    const double ideal = amplitude * std::sin(2.0 * kPi * f * (j - delay) / p.out + phase);
    sig += ideal * ideal;
    err_f += (yf[j] - ideal) * (yf[j] - ideal);
    const double vi = yi[j] / 32768.0;
    err_i += (vi - ideal) * (vi - ideal);
  }
  Figures& fig = FiguresFor(p, kernel());
  fig.snr_float_db = Db(sig / err_f);
  fig.snr_int16_db = Db(sig / err_i);
  EXPECT_GE(fig.snr_float_db, 90.0) << Name(p);
  EXPECT_GE(fig.snr_int16_db, 90.0) << Name(p);
}

// 4. Bit-identical output whatever the chunking, flush included; flush resets the stream.
template <typename T>
std::vector<T> Chunked(Resampler& r, const std::vector<T>& x, std::vector<size_t> chunks) {
  std::vector<T> y;
  std::vector<T> buf;
  size_t at = 0, k = 0;
  while (at < x.size()) {
    const size_t n = std::min(chunks[k++ % chunks.size()], x.size() - at);
    buf.assign(r.max_output(n), T{});
    const size_t got = r.process(x.data() + at, n, buf.data(), buf.size());
    y.insert(y.end(), buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(got));
    at += n;
  }
  buf.assign(r.max_flush(), T{});
  const size_t got = r.flush(buf.data(), buf.size());
  y.insert(y.end(), buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(got));
  return y;
}

TEST_P(PairTest, ChunkingIsBitExact) {
  const RatePair p = pair();
  std::mt19937 rng(1234);
  std::uniform_real_distribution<float> uni(-0.9f, 0.9f);
  std::uniform_int_distribution<int> pcm(-32768, 32767);
  const size_t n = 12345;
  std::vector<float> xf(n);
  std::vector<int16_t> xi(n);
  for (size_t i = 0; i < n; ++i) {
    xf[i] = uni(rng);
    xi[i] = static_cast<int16_t>(pcm(rng));
  }
  std::vector<size_t> random_chunks;
  std::uniform_int_distribution<int> len(0, 700);
  for (int i = 0; i < 97; ++i) random_chunks.push_back(static_cast<size_t>(len(rng)));
  random_chunks.push_back(1);

  Resampler r = Make();
  const std::vector<float> whole_f = Chunked(r, xf, {n});
  const std::vector<int16_t> whole_i = Chunked(r, xi, {n});
  const size_t expected = r.max_output(n) + static_cast<size_t>(r.delay());
  ASSERT_EQ(whole_f.size(), expected);
  ASSERT_EQ(whole_i.size(), expected);
  for (const std::vector<size_t>& chunks :
       {std::vector<size_t>{1}, std::vector<size_t>{4096}, std::vector<size_t>{3, 1, 960},
        random_chunks}) {
    // Reuses r after flush(): also checks that flush() leaves a fresh stream behind.
    const std::vector<float> cf = Chunked(r, xf, chunks);
    const std::vector<int16_t> ci = Chunked(r, xi, chunks);
    ASSERT_EQ(cf.size(), whole_f.size());
    ASSERT_EQ(ci.size(), whole_i.size());
    EXPECT_EQ(0, std::memcmp(cf.data(), whole_f.data(), cf.size() * sizeof(float))) << Name(p);
    EXPECT_EQ(0, std::memcmp(ci.data(), whole_i.data(), ci.size() * sizeof(int16_t))) << Name(p);
  }
}

// 5. Length rule: N inputs give ceil(N*out/in) samples from process() (at every chunk boundary)
// and delay() more from flush(); an impulse peaks exactly at delay().
TEST_P(PairTest, LengthRuleAndDelay) {
  const RatePair p = pair();
  Resampler r = Make();
  const unsigned long long L = static_cast<unsigned long long>(r.up_factor());
  const unsigned long long M = static_cast<unsigned long long>(r.down_factor());
  EXPECT_EQ(L * static_cast<unsigned long long>(p.in), M * static_cast<unsigned long long>(p.out));
  std::mt19937 rng(99);
  std::uniform_int_distribution<int> len(0, 400);
  std::vector<float> buf(r.max_output(400) + r.max_flush());
  std::vector<float> zeros(400, 0.0f);
  for (int trial = 0; trial < 30; ++trial) {
    unsigned long long fed = 0, got = 0;
    const int chunks = trial % 7;
    for (int c = 0; c < chunks; ++c) {
      const size_t n = static_cast<size_t>(trial < 3 ? trial : len(rng));
      got += r.process(zeros.data(), n, buf.data(), buf.size());
      fed += n;
      ASSERT_EQ(got, (fed * L + M - 1) / M) << Name(p) << " after " << fed << " inputs";
    }
    got += r.flush(buf.data(), buf.size());
    ASSERT_EQ(got, (fed * L + M - 1) / M + static_cast<unsigned long long>(r.delay()))
        << Name(p) << " total for " << fed << " inputs";
  }

  // Impulses at input 0 and at input k*M (which lands on output delay + k*L).
  for (size_t k : {size_t{0}, size_t{3}}) {
    std::vector<float> x(4000, 0.0f);
    x[k * M] = 0.5f;
    Resampler fresh = Make();
    const std::vector<float> y = ResampleAll(fresh, x, true);
    size_t peak = 0;
    for (size_t j = 0; j < y.size(); ++j) {
      if (std::fabs(y[j]) > std::fabs(y[peak])) peak = j;
    }
    EXPECT_EQ(peak, static_cast<size_t>(r.delay()) + k * L) << Name(p);
  }
}

// Int16 path: same arithmetic as the float path, then round-to-nearest and saturate.
TEST_P(PairTest, Int16RoundsAndSaturatesLikeFloatPath) {
  const RatePair p = pair();
  // Full-scale square wave: the filter's Gibbs overshoot goes past full scale.
  std::vector<int16_t> xi(6000);
  std::vector<float> xf(xi.size());
  std::mt19937 rng(7);
  std::uniform_int_distribution<int> noise(-2000, 2000);
  for (size_t i = 0; i < xi.size(); ++i) {
    const int v = i < 3000 ? (((i / 37) % 2) ? 32767 : -32768) : noise(rng);
    xi[i] = static_cast<int16_t>(v);
    xf[i] = static_cast<float>(v) / 32768.0f;
  }
  Resampler ri = Make(), rf = Make();
  const std::vector<int16_t> yi = ResampleAll(ri, xi, true);
  const std::vector<float> yf = ResampleAll(rf, xf, true);
  ASSERT_EQ(yi.size(), yf.size());
  bool clipped_high = false, clipped_low = false;
  for (size_t j = 0; j < yi.size(); ++j) {
    const double scaled = static_cast<double>(yf[j]) * 32768.0;
    const double expect = std::clamp(std::nearbyint(scaled), -32768.0, 32767.0);
    ASSERT_EQ(static_cast<double>(yi[j]), expect) << Name(p) << " sample " << j;
    clipped_high |= scaled > 32767.0;
    clipped_low |= scaled < -32768.0;
  }
  EXPECT_TRUE(clipped_high) << "test signal should overshoot full scale";
  EXPECT_TRUE(clipped_low) << "test signal should overshoot full scale";
}

// Int16 and float calls can be mixed on one stream: the history is kept in float.
TEST_P(PairTest, MixedSampleFormatsShareOneStream) {
  const RatePair p = pair();
  std::mt19937 rng(5);
  std::uniform_int_distribution<int> pcm(-20000, 20000);
  std::vector<int16_t> xi(3000);
  std::vector<float> xf(xi.size());
  for (size_t i = 0; i < xi.size(); ++i) {
    xi[i] = static_cast<int16_t>(pcm(rng));
    xf[i] = static_cast<float>(xi[i]) / 32768.0f;
  }
  Resampler mixed = Make(), reference = Make();
  const std::vector<float> all = ResampleAll(reference, xf);
  std::vector<int16_t> head(mixed.max_output(1000));
  const size_t got_head = mixed.process(xi.data(), 1000, head.data(), head.size());
  std::vector<float> tail(mixed.max_output(2000));
  const size_t got_tail = mixed.process(xf.data() + 1000, 2000, tail.data(), tail.size());
  ASSERT_EQ(got_head + got_tail, all.size());
  for (size_t j = 0; j < got_tail; ++j) {
    ASSERT_EQ(tail[j], all[got_head + j]) << Name(p) << " sample " << j;
  }
}

// The SIMD families compute the same filter as the portable code, up to float rounding.
TEST_P(PairTest, KernelMatchesPortableReference) {
  const RatePair p = pair();
  std::mt19937 rng(11);
  std::uniform_real_distribution<float> uni(-0.9f, 0.9f);
  std::vector<float> x(5000);
  for (float& v : x) v = uni(rng);
  Resampler fast = Make(), portable(p.in, p.out, Kernel::kPortable);
  const std::vector<float> a = ResampleAll(fast, x, true);
  const std::vector<float> b = ResampleAll(portable, x, true);
  ASSERT_EQ(a.size(), b.size());
  double worst = 0;
  for (size_t j = 0; j < a.size(); ++j) worst = std::max(worst, std::fabs(double(a[j]) - b[j]));
  EXPECT_LE(worst, 2e-6) << Name(p);
}

INSTANTIATE_TEST_SUITE_P(AcceptancePairs, PairTest,
                         ::testing::Combine(::testing::ValuesIn(AcceptancePairs()),
                                            ::testing::ValuesIn(kKernels)),
                         PairName);

TEST(Resampler, PassThroughIsACopy) {
  Resampler r(16000, 16000);
  EXPECT_TRUE(r.is_passthrough());
  EXPECT_EQ(r.delay(), 0);
  EXPECT_EQ(r.max_output(960), 960u);
  EXPECT_EQ(r.max_flush(), 0u);
  std::vector<int16_t> xi = {1, -2, 32767, -32768, 5};
  std::vector<int16_t> yi(5);
  EXPECT_EQ(r.process(xi.data(), xi.size(), yi.data(), yi.size()), 5u);
  EXPECT_EQ(xi, yi);
  std::vector<float> xf = {0.25f, -1.0f, 0.999f, 1.5f};
  std::vector<float> yf(4);
  EXPECT_EQ(r.process(xf.data(), xf.size(), yf.data(), yf.size()), 4u);
  EXPECT_EQ(xf, yf);
  EXPECT_EQ(r.flush(yf.data(), 0), 0u);
}

TEST(Resampler, RejectsUnsupportedRatesNamingTheValue) {
  const auto message = [](int in, int out) -> std::string {
    try {
      Resampler r(in, out);
    } catch (const std::invalid_argument& e) {
      return e.what();
    }
    return "";
  };
  EXPECT_NE(message(0, 16000).find("input_rate"), std::string::npos);
  EXPECT_NE(message(0, 16000).find("got 0"), std::string::npos);
  EXPECT_NE(message(-8000, 16000).find("-8000"), std::string::npos);
  EXPECT_NE(message(16000, 384001).find("output_rate"), std::string::npos);
  EXPECT_NE(message(16000, 384001).find("384001"), std::string::npos);
  EXPECT_NE(message(44100, 8009).find("8009/44100"), std::string::npos);
  EXPECT_NE(message(1025, 1).find("1/1025"), std::string::npos);
  EXPECT_EQ(message(44100, 8000), "");     // 80/441
  EXPECT_EQ(message(384000, 375), "");     // 1/1024
  EXPECT_EQ(message(1023, 1024), "");      // 1024/1023
  EXPECT_EQ(message(384000, 384000), "");  // pass-through
}

TEST(Resampler, RejectsSmallOutputBufferWithoutConsuming) {
  Resampler r(16000, 48000), fresh(16000, 48000);
  EXPECT_EQ(r.max_output(960), 2880u);
  std::vector<int16_t> x(960, 1000), y(2880), z(2880);
  EXPECT_THROW(r.process(x.data(), x.size(), y.data(), 2879), std::length_error);
  ASSERT_EQ(r.process(x.data(), x.size(), y.data(), y.size()), 2880u);
  ASSERT_EQ(fresh.process(x.data(), x.size(), z.data(), z.size()), 2880u);
  EXPECT_EQ(y, z);
  if (r.max_flush() > 0) {
    EXPECT_THROW(r.flush(y.data(), r.max_flush() - 1), std::length_error);
  }
  EXPECT_EQ(r.flush(y.data(), y.size()), r.max_flush());
  EXPECT_EQ(fresh.flush(z.data(), z.size()), fresh.max_flush());
  EXPECT_EQ(y, z);
}

TEST(Resampler, MaxOutputIsExactBoundAndDoesNotOverflow) {
  Resampler down(48000, 44100);  // 147/160
  EXPECT_EQ(down.max_output(0), 0u);
  EXPECT_EQ(down.max_output(1), 1u);
  EXPECT_EQ(down.max_output(480), 441u);
  EXPECT_EQ(down.max_output(481), 442u);
  Resampler up(8000, 48000);
  EXPECT_EQ(up.max_output(std::numeric_limits<size_t>::max()),
            std::numeric_limits<size_t>::max());
}

TEST(Resampler, ExtremeSupportedRatiosRunAndStayBounded) {
  for (RatePair p : {RatePair{384000, 375}, RatePair{375, 384000}, RatePair{1023, 1024},
                     RatePair{44100, 8000}, RatePair{8000, 44100}, RatePair{11025, 48000}}) {
    Resampler r(p.in, p.out);
    std::vector<float> x = Sine(0.1 * std::min(p.in, p.out), p.in, 0.5, 3000);
    std::vector<float> y = ResampleAll(r, x, true);
    EXPECT_EQ(y.size(), r.max_output(x.size()) + static_cast<size_t>(r.delay())) << Name(p);
    float peak = 0;
    for (float v : y) peak = std::max(peak, std::fabs(v));
    EXPECT_LT(peak, 0.6f) << Name(p);
  }
}

TEST(Resampler, FiltersAreSharedAndInstancesIndependent) {
  Resampler a(16000, 48000);
  Resampler b = a;  // copies carry their own history
  std::vector<float> x(100, 0.5f), ya(300), yb(300);
  a.process(x.data(), x.size(), ya.data(), ya.size());
  b.process(x.data(), x.size(), yb.data(), yb.size());
  EXPECT_EQ(ya, yb);
  b.reset();
  std::vector<float> yc(300);
  b.process(x.data(), x.size(), yc.data(), yc.size());
  EXPECT_EQ(ya, yc);
}

// Prints the measured figures (read by people, not asserted here) once all pair tests ran.
class FigureReport : public ::testing::Environment {
 public:
  void TearDown() override {
    if (AllFigures().empty()) return;
    std::printf("\n%-24s %6s %5s %5s %8s %9s %7s %7s %8s %8s\n", "kernel pair", "N", "taps",
                "delay", "ripple", "|gain|max", "image", "alias", "SNR f32", "SNR i16");
    std::printf("%-24s %6s %5s %5s %8s %9s %7s %7s %8s %8s\n", "", "", "/out", "out", "dB",
                "dB", "dB", "dB", "dB", "dB");
    for (const auto& [key, f] : AllFigures()) {
      const std::string pair = key.substr(key.find(' ') + 1);
      const int in = std::stoi(pair.substr(0, pair.find('-')));
      const int out = std::stoi(pair.substr(pair.find('>') + 1));
      Resampler r(in, out);
      const double worst_gain = std::max(std::fabs(f.gain_min_db), std::fabs(f.gain_max_db));
      char alias[32];
      if (f.worst_alias_db > -1e8) {
        std::snprintf(alias, sizeof alias, "%7.1f", f.worst_alias_db);
      } else {
        std::snprintf(alias, sizeof alias, "%7s", "n/a");
      }
      std::printf("%-24s %6d %5d %5d %8.4f %9.4f %7.1f %s %8.1f %8.1f\n", key.c_str(),
                  r.prototype_length(), r.taps_per_output(), r.delay(),
                  f.gain_max_db - f.gain_min_db, worst_gain, f.worst_image_db, alias,
                  f.snr_float_db, f.snr_int16_db);
    }
  }
};

const auto* const kReport = ::testing::AddGlobalTestEnvironment(new FigureReport);

}  // namespace
