// Module entry point. Every function here is per-environment (no process-wide JS state), so the
// addon loads in worker_threads and in several environments at once.
#include <napi.h>

#include "aes_binding.h"
#include "convert_binding.h"
#include "dsp/convert.h"
#include "dsp/opus_build_info.h"
#include "dsp/opus_codec.h"
#include "opus_binding.h"
#include "packet_binding.h"
#include "pipeline_binding.h"
#include "resampler_binding.h"

namespace xz::binding {
namespace {

Napi::Value BuildInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("opusVersion", dsp::opus_version());
  o.Set("opusSimd", dsp::opus_simd_summary());
  o.Set("simdLevel", dsp::simd_level_name(dsp::best_simd_level()));
#if defined(NDEBUG)
  o.Set("buildType", "release");
#else
  o.Set("buildType", "debug");
#endif
  return o;
}

Napi::Array ToArray(Napi::Env env, const std::vector<std::string>& items) {
  Napi::Array a = Napi::Array::New(env, items.size());
  for (size_t i = 0; i < items.size(); ++i) a.Set(static_cast<uint32_t>(i), items[i]);
  return a;
}

// libopus's SIMD paths: compiled into the build, supported by this CPU, and so in use.
Napi::Value OpusBuildInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const dsp::OpusSimdInfo simd = dsp::opus_simd_info();
  Napi::Object s = Napi::Object::New(env);
  s.Set("compiled", ToArray(env, simd.compiled));
  s.Set("cpu", ToArray(env, simd.cpu));
  s.Set("active", ToArray(env, simd.active));
  Napi::Object o = Napi::Object::New(env);
  o.Set("version", dsp::opus_version());
  o.Set("runtimeCpuDetection", simd.runtime_detection);
  o.Set("simd", s);
  return o;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  init_convert(env, exports);
  init_resampler(env, exports);
  init_opus(env, exports);
  init_aes(env, exports);
  init_packet(env, exports);
  init_pipeline(env, exports);
  exports.Set("buildInfo", Napi::Function::New(env, BuildInfo, "buildInfo"));
  exports.Set("opusBuildInfo", Napi::Function::New(env, OpusBuildInfo, "opusBuildInfo"));
  return exports;
}

}  // namespace
}  // namespace xz::binding

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) { return xz::binding::Init(env, exports); }
NODE_API_MODULE(xiaozhi_native, InitModule)
