#include "resampler_binding.h"

#include <memory>
#include <stdexcept>
#include <vector>

#include "args.h"
#include "dsp/resampler.h"

namespace xz::binding {
namespace {

class ResamplerWrap : public Napi::ObjectWrap<ResamplerWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "NativeResampler",
                       {InstanceMethod<&ResamplerWrap::Process>("process"),
                        InstanceMethod<&ResamplerWrap::Flush>("flush"),
                        InstanceMethod<&ResamplerWrap::Reset>("reset"),
                        InstanceMethod<&ResamplerWrap::Close>("close"),
                        InstanceAccessor<&ResamplerWrap::Delay>("delay")});
  }

  // new NativeResampler(inputRate, outputRate)
  explicit ResamplerWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ResamplerWrap>(info) {
    Napi::Env env = info.Env();
    const int in_rate = static_cast<int>(integer_arg(info, 0, "inputRate", 1, 384000));
    const int out_rate = static_cast<int>(integer_arg(info, 1, "outputRate", 1, 384000));
    guarded(env, [&] {
      try {
        impl_ = std::make_unique<dsp::Resampler>(in_rate, out_rate);
      } catch (const std::invalid_argument& e) {
        throw_range_error(env, "ERR_RESAMPLER_RATE", e.what());
      }
    });
  }

 private:
  dsp::Resampler& impl(Napi::Env env) { return open_or_throw(env, impl_.get(), "Resampler"); }

  template <typename T>
  Napi::Value Run(Napi::Env env, const T* in, size_t n) {
    dsp::Resampler& r = impl(env);
    const size_t cap = r.max_output(n);
    auto out = Napi::TypedArrayOf<T>::New(env, cap);
    const size_t produced = guarded(env, [&] { return r.process(in, n, out.Data(), cap); });
    // Return a view of exactly the produced samples (the JS wrapper never sees the slack).
    return Napi::TypedArrayOf<T>::New(env, produced, out.ArrayBuffer(), 0);
  }

  // process(input: Int16Array | Float32Array): same type
  Napi::Value Process(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (info.Length() > 0 && info[0].IsTypedArray() &&
        info[0].As<Napi::TypedArray>().TypedArrayType() == napi_float32_array) {
      auto in = typed_array_arg<float>(info, 0, "input");
      return Run(env, in.data, in.length);
    }
    auto in = typed_array_arg<int16_t>(info, 0, "input");
    return Run(env, in.data, in.length);
  }

  // flush(float?: boolean): the tail of the stream; the resampler is reset afterwards.
  Napi::Value Flush(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    dsp::Resampler& r = impl(env);
    const size_t cap = r.max_flush();
    if (info.Length() > 0 && info[0].ToBoolean()) {
      auto out = Napi::Float32Array::New(env, cap);
      const size_t n = guarded(env, [&] { return r.flush(out.Data(), cap); });
      return Napi::Float32Array::New(env, n, out.ArrayBuffer(), 0);
    }
    auto out = Napi::Int16Array::New(env, cap);
    const size_t n = guarded(env, [&] { return r.flush(out.Data(), cap); });
    return Napi::Int16Array::New(env, n, out.ArrayBuffer(), 0);
  }

  Napi::Value Reset(const Napi::CallbackInfo& info) {
    impl(info.Env()).reset();
    return info.Env().Undefined();
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    impl(info.Env());
    impl_.reset();
    return info.Env().Undefined();
  }

  Napi::Value Delay(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), impl(info.Env()).delay()); }

  std::unique_ptr<dsp::Resampler> impl_;
};

}  // namespace

void init_resampler(Napi::Env env, Napi::Object exports) {
  exports.Set("NativeResampler", ResamplerWrap::Define(env));
}

}  // namespace xz::binding
