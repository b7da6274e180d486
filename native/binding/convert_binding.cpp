#include "convert_binding.h"

#include "args.h"
#include "dsp/convert.h"

namespace xz::binding {
namespace {

// f32ToS16(input: Float32Array, output: Int16Array, level?: number): void
Napi::Value F32ToS16(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto in = typed_array_arg<float>(info, 0, "input");
  auto out = typed_array_arg<int16_t>(info, 1, "output");
  if (out.length < in.length) {
    throw_range_error(env, "ERR_OUT_OF_RANGE", "output has " + std::to_string(out.length) +
                      " samples, input has " + std::to_string(in.length));
  }
  if (overlaps(in.data, in.length * sizeof(float), out.data, in.length * sizeof(int16_t))) {
    throw_range_error(env, "ERR_OVERLAP", "input and output must not share memory");
  }
  if (is_nullish(info, 2)) {
    dsp::f32_to_s16(in.data, out.data, in.length);
  } else {
    const auto level = static_cast<dsp::SimdLevel>(integer_arg(info, 2, "level", 0, 3));
    if (!dsp::simd_level_supported(level)) {
      throw_range_error(env, "ERR_SIMD_UNSUPPORTED",
                        std::string("SIMD level ") + dsp::simd_level_name(level) + " is not supported by this CPU");
    }
    dsp::f32_to_s16_with(level, in.data, out.data, in.length);
  }
  return env.Undefined();
}

// s16ToF32(input: Int16Array, output: Float32Array): void
Napi::Value S16ToF32(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto in = typed_array_arg<int16_t>(info, 0, "input");
  auto out = typed_array_arg<float>(info, 1, "output");
  if (out.length < in.length) {
    throw_range_error(env, "ERR_OUT_OF_RANGE", "output has " + std::to_string(out.length) +
                      " samples, input has " + std::to_string(in.length));
  }
  if (overlaps(in.data, in.length * sizeof(int16_t), out.data, in.length * sizeof(float))) {
    throw_range_error(env, "ERR_OVERLAP", "input and output must not share memory");
  }
  dsp::s16_to_f32(in.data, out.data, in.length);
  return env.Undefined();
}

Napi::Value SupportedSimdLevels(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Array levels = Napi::Array::New(env);
  uint32_t n = 0;
  for (int l = 0; l <= 3; ++l) {
    auto level = static_cast<dsp::SimdLevel>(l);
    if (!dsp::simd_level_supported(level)) continue;
    Napi::Object entry = Napi::Object::New(env);
    entry.Set("id", l);
    entry.Set("name", dsp::simd_level_name(level));
    levels.Set(n++, entry);
  }
  return levels;
}

}  // namespace

void init_convert(Napi::Env env, Napi::Object exports) {
  exports.Set("f32ToS16", Napi::Function::New(env, F32ToS16, "f32ToS16"));
  exports.Set("s16ToF32", Napi::Function::New(env, S16ToF32, "s16ToF32"));
  exports.Set("supportedSimdLevels", Napi::Function::New(env, SupportedSimdLevels, "supportedSimdLevels"));
}

}  // namespace xz::binding
