// xiaozhi_bench.node: native code that only benchmarks and their tests use, kept out of the product
// addon (xiaozhi_native.node). Built next to it by the same cmake-js run (build/Release/bench/) and
// shipped as prebuilds/<platform>-<arch>/bench/; loaded by bench/native.ts.
#include <napi.h>

#include <cstring>

#include "binding/args.h"
#include "dsp/packet.h"
#include "tight_loop.h"

namespace xz::bench {
namespace {

using binding::copy_key_nonce;
using binding::guarded;
using binding::int_option;
using binding::object_arg;
using binding::throw_range_error;
using binding::throw_type_error;
using binding::typed_array_arg;

// runTightLoop(key, nonce, datagrams: Uint8Array[], pcm: Float32Array, options): result
// The benchmark's "physical limit": see tight_loop.h. Synchronous on purpose.
Napi::Value RunTightLoop(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  TightLoopInput in;
  copy_key_nonce(info, in.uplink.key, in.uplink.nonce);
  std::memcpy(in.downlink.key, in.uplink.key, 16);
  std::memcpy(in.downlink.nonce, in.uplink.nonce, 16);
  if (info.Length() < 3 || !info[2].IsArray()) throw_type_error(env, "ERR_INVALID_ARG_TYPE", "datagrams must be an array");
  Napi::Array list = info[2].As<Napi::Array>();
  for (uint32_t i = 0; i < list.Length(); ++i) {
    Napi::Value v = list.Get(i);
    if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array) {
      throw_type_error(env, "ERR_INVALID_ARG_TYPE", "datagrams must hold Uint8Arrays");
    }
    auto u8 = v.As<Napi::Uint8Array>();
    if (u8.ByteLength() > dsp::kMaxDatagramSize) throw_range_error(env, "ERR_PACKET_TOO_LARGE", "datagram > 1500 bytes");
    in.datagrams.emplace_back(u8.Data(), u8.Data() + u8.ByteLength());
  }
  auto pcm = typed_array_arg<float>(info, 3, "pcm");
  in.pcm.assign(pcm.data, pcm.data + pcm.length);
  Napi::Object o = object_arg(info, 4, "options");
  in.streams = static_cast<size_t>(int_option(env, o, "streams", 1, 1, 100000));
  in.chunk_samples = static_cast<size_t>(int_option(env, o, "chunkSamples", 480, 1, 8192));
  in.pace_ns = static_cast<uint64_t>(int_option(env, o, "paceUs", 0, 0, 1'000'000)) * 1000;
  in.pace_burst = static_cast<size_t>(int_option(env, o, "paceBurst", 1, 1, 100000));
  in.downlink.input_rate = int_option(env, o, "inputRate", 48000, 8000, 192000);
  dsp::OpusEncoderConfig& e = in.downlink.encoder;
  e.sample_rate = 24000;
  e.application = static_cast<dsp::OpusApplication>(int_option(env, o, "application", 0, 0, 2));
  e.bitrate = int_option(env, o, "bitrate", -1, -1, 512000);
  e.complexity = int_option(env, o, "complexity", 6, 0, 10);
  e.signal = static_cast<dsp::OpusSignal>(int_option(env, o, "signal", 0, 0, 2));
  in.downlink.adaptive = false;
  const TightLoopResult r = guarded(env, [&] { return run_tight_loop(in); });
  Napi::Object result = Napi::Object::New(env);
  result.Set("totalNs", static_cast<double>(r.total_ns));
  Napi::Float64Array per = Napi::Float64Array::New(env, r.frame_pair_ns.size());
  for (size_t i = 0; i < r.frame_pair_ns.size(); ++i) per[i] = static_cast<double>(r.frame_pair_ns[i]);
  result.Set("framePairNs", per);
  result.Set("uplinkFramesOut", static_cast<double>(r.uplink_frames_out));
  result.Set("downlinkDatagramsOut", static_cast<double>(r.downlink_datagrams_out));
  return result;
}

}  // namespace

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("runTightLoop", Napi::Function::New(env, RunTightLoop, "runTightLoop"));
  return exports;
}

}  // namespace xz::bench

static Napi::Object InitModule(Napi::Env env, Napi::Object exports) { return xz::bench::Init(env, exports); }
NODE_API_MODULE(xiaozhi_bench, InitModule)
