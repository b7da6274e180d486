// Streaming rational-ratio sample-rate converter (pure C++17, no Node-API).
//
// One Kaiser-windowed-sinc prototype low-pass runs at the virtual rate in*L == out*M (L/M is the
// reduced ratio out/in) and is evaluated in polyphase form: each output sample is a single dot
// product of one phase's coefficients with the most recent input samples, so only outputs that
// are kept are ever computed and no zero-stuffed samples are touched.
//
// Filter: pass band up to 0.45 x min(in, out) (ripple < 0.06 dB), stop band from
// 0.5 x min(in, out) (>= 82 dB measured; Kaiser rule at kDesignAttenuationDb), linear phase.
// The prototype has odd length 2*k*M + 1, so its centre falls exactly on an output sample:
// delay() is an exact integer (k output samples), not a rounded value. Coefficients are computed
// in double and stored as float; arithmetic is float (error ~-105 dB on a 1 kHz tone).
//
// Streaming contract (exact, independent of how the input is chunked):
//   * after N input samples in total, process() has returned ceil(N * L / M) samples in total;
//   * flush() then returns exactly delay() more samples (it feeds zeros) and resets the stream.
//   So a stream of N inputs yields ceil(N * out / in) + delay() samples; dropping the first
//   delay() of them leaves exactly ceil(N * out / in) samples, output j aligned with input time
//   j * in / out. What is not emitted is only the filter's ringing after the end of the input.
//   Identical input gives bit-identical output whatever the chunking (1 sample at a time, whole
//   buffers, or any mix; int16 and float calls may be mixed on one stream).
//
// Speed: dot products run on SSE2 (x86-64 baseline), or on AVX2+FMA kernels selected at run time
// when the CPU has them (the build needs no -mavx flag); other targets use portable C++.
// Integer upsamplers by 2 and 3 and all integer decimators (the gateway's 16k->48k and 48k->24k)
// have dedicated block kernels that share loads across outputs.
//
// process()/flush() never allocate. All state is sized in the constructor; coefficient tables are
// immutable and shared by every Resampler with the same reduced ratio (thousands of streams share
// one table). A Resampler itself is not thread-safe: one stream, one thread at a time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace xz::dsp {

struct ResamplerFilter;  // immutable polyphase coefficient table, shared between instances

class Resampler {
 public:
  static constexpr int kMaxRate = 384000;
  static constexpr int kMaxRatioTerm = 1024;
  static constexpr double kPassbandEdge = 0.45;  // x min(in, out)
  static constexpr double kStopbandEdge = 0.50;  // x min(in, out)
  static constexpr double kDesignAttenuationDb = 83.0;

  // Dot-product implementation. kAuto picks the fastest one this CPU runs (AVX2+FMA is chosen
  // at run time, the build itself needs only baseline x86-64). Kernels differ only in float
  // rounding (last bits), never in the contract; a stream keeps the kernel it was built with.
  enum class Kernel { kAuto, kPortable, kSse2, kAvx2 };

  // Supported: 1 <= rate <= 384000 and reduced ratio L/M = out/in with L, M <= 1024.
  // Throws std::invalid_argument naming the bad value otherwise (also for an unsupported kernel).
  Resampler(int input_rate, int output_rate, Kernel kernel = Kernel::kAuto);

  static bool kernel_supported(Kernel kernel);
  static const char* kernel_name(Kernel kernel);
  Kernel kernel() const { return kernel_; }  // the resolved kernel, never kAuto

  int input_rate() const { return input_rate_; }
  int output_rate() const { return output_rate_; }

  // Upper bound of what process(input_samples) can return: ceil(input_samples * L / M)
  // (saturates at SIZE_MAX instead of overflowing).
  size_t max_output(size_t input_samples) const;

  // Consumes all n samples and returns the number written to out. Throws std::length_error
  // (before consuming anything) if out_capacity < max_output(n). Int16 output is rounded to
  // nearest (ties to even) and saturated; float output is not clamped (expects input in [-1, 1)).
  size_t process(const int16_t* in, size_t n, int16_t* out, size_t out_capacity);
  size_t process(const float* in, size_t n, float* out, size_t out_capacity);

  // End of stream: emits exactly max_flush() == delay() samples, then reset().
  // Throws std::length_error (without changing state) if out_capacity < max_flush().
  size_t flush(int16_t* out, size_t out_capacity);
  size_t flush(float* out, size_t out_capacity);
  size_t max_flush() const { return static_cast<size_t>(delay_); }

  // Exact group delay in output samples: an impulse at input 0 peaks at output delay().
  int delay() const { return delay_; }

  // Back to the freshly constructed state (silent history).
  void reset();

  // Reduced ratio and filter geometry (for diagnostics, tests and benchmarks).
  int up_factor() const { return up_; }        // L
  int down_factor() const { return down_; }    // M
  int prototype_length() const;                // N (0 for pass-through)
  int taps_per_output() const;                 // multiply-adds per output sample (padded)
  bool is_passthrough() const { return up_ == 1 && down_ == 1; }

 private:
  template <typename In, typename Out>
  size_t run(const In* in, size_t n, Out* out, size_t out_capacity);
  template <typename Out>
  size_t drain(Out* out, size_t out_capacity);
  template <typename Out>
  size_t emit(Out* out, size_t limit);
  template <typename Ops, typename Out>
  size_t emit_with(Out* out, size_t limit);
  template <typename Ops, typename Out>
  size_t emit_decimator(Out* out, size_t limit);
  template <typename Ops, int kUp, typename Out>
  size_t emit_upsampler(Out* out, size_t limit);
  template <typename Ops, typename Out>
  size_t emit_generic(Out* out, size_t limit);
  void compact();

  int input_rate_;
  int output_rate_;
  int up_ = 1;
  int down_ = 1;
  int delay_ = 0;
  Kernel kernel_ = Kernel::kPortable;
  std::shared_ptr<const ResamplerFilter> filter_;
  std::vector<float> history_;  // input samples (normalized to [-1, 1)), oldest first
  size_t avail_ = 0;            // valid samples in history_
  size_t pos_ = 0;              // history_ index of the newest input the next output needs
  uint32_t phase_ = 0;          // polyphase branch of the next output
};

}  // namespace xz::dsp
