#include "opus_binding.h"

#include <memory>
#include <vector>

#include "args.h"
#include "dsp/opus_codec.h"

namespace xz::binding {
namespace {

class OpusEncoderWrap : public Napi::ObjectWrap<OpusEncoderWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "NativeOpusEncoder",
                       {InstanceMethod<&OpusEncoderWrap::Encode>("encode"),
                        InstanceMethod<&OpusEncoderWrap::SetComplexity>("setComplexity"),
                        InstanceMethod<&OpusEncoderWrap::SetBitrate>("setBitrate"),
                        InstanceMethod<&OpusEncoderWrap::Reset>("reset"),
                        InstanceMethod<&OpusEncoderWrap::Close>("close")});
  }

  // new NativeOpusEncoder(options): numeric enums, already validated and normalised in TypeScript.
  explicit OpusEncoderWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<OpusEncoderWrap>(info) {
    Napi::Env env = info.Env();
    Napi::Object o = object_arg(info, 0, "options");
    dsp::OpusEncoderConfig c;
    c.sample_rate = int_option(env, o, "sampleRate", c.sample_rate, 1, 384000);
    c.channels = int_option(env, o, "channels", c.channels, 1, 255);
    c.application = static_cast<dsp::OpusApplication>(int_option(env, o, "application", 0, 0, 2));
    c.bitrate = int_option(env, o, "bitrate", -1, -1, 512000);
    c.complexity = int_option(env, o, "complexity", c.complexity, 0, 10);
    c.vbr = bool_option(env, o, "vbr", c.vbr);
    c.vbr_constraint = bool_option(env, o, "vbrConstraint", c.vbr_constraint);
    c.inband_fec = bool_option(env, o, "inbandFec", c.inband_fec);
    c.packet_loss_percent = int_option(env, o, "packetLossPercent", 0, 0, 100);
    c.dtx = bool_option(env, o, "dtx", c.dtx);
    c.max_bandwidth = static_cast<dsp::OpusBandwidth>(int_option(env, o, "maxBandwidth", 4, 0, 4));
    c.signal = static_cast<dsp::OpusSignal>(int_option(env, o, "signal", 0, 0, 2));
    guarded(env, [&] { impl_ = std::make_unique<dsp::Encoder>(c); });
  }

 private:
  dsp::Encoder& impl(Napi::Env env) { return open_or_throw(env, impl_.get(), "OpusEncoder"); }

  // encode(pcm: Int16Array): Buffer
  Napi::Value Encode(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    dsp::Encoder& enc = impl(env);
    auto pcm = typed_array_arg<int16_t>(info, 0, "pcm");
    const size_t channels = static_cast<size_t>(enc.config().channels);
    if (pcm.length % channels != 0) {
      throw_range_error(env, "ERR_OPUS_FRAME", "pcm length " + std::to_string(pcm.length) +
                        " is not a multiple of the channel count " + std::to_string(channels));
    }
    const size_t n = guarded(env, [&] {
      return enc.encode(pcm.data, static_cast<int>(pcm.length / channels), scratch_, sizeof scratch_);
    });
    return Napi::Buffer<uint8_t>::Copy(env, scratch_, n);
  }

  Napi::Value SetComplexity(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    dsp::Encoder& enc = impl(env);
    const int c = static_cast<int>(integer_arg(info, 0, "complexity", 0, 10));
    guarded(env, [&] { enc.set_complexity(c); });
    return env.Undefined();
  }

  Napi::Value SetBitrate(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    dsp::Encoder& enc = impl(env);
    const int b = static_cast<int>(integer_arg(info, 0, "bitrate", -1, 512000));
    guarded(env, [&] { enc.set_bitrate(b); });
    return env.Undefined();
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

  std::unique_ptr<dsp::Encoder> impl_;
  uint8_t scratch_[dsp::kOpusMaxPacket];
};

class OpusDecoderWrap : public Napi::ObjectWrap<OpusDecoderWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "NativeOpusDecoder",
                       {InstanceMethod<&OpusDecoderWrap::Decode>("decode"),
                        InstanceMethod<&OpusDecoderWrap::Reset>("reset"),
                        InstanceMethod<&OpusDecoderWrap::Close>("close"),
                        InstanceAccessor<&OpusDecoderWrap::LastFrame>("lastFrameSize")});
  }

  // new NativeOpusDecoder(sampleRate, channels)
  explicit OpusDecoderWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<OpusDecoderWrap>(info) {
    Napi::Env env = info.Env();
    const int rate = static_cast<int>(integer_arg(info, 0, "sampleRate", 1, 384000));
    const int channels = static_cast<int>(integer_arg(info, 1, "channels", 1, 255));
    guarded(env, [&] { impl_ = std::make_unique<dsp::Decoder>(rate, channels); });
    pcm_.resize(static_cast<size_t>(dsp::kOpusMaxFrameSamples) * static_cast<size_t>(channels));
  }

 private:
  dsp::Decoder& impl(Napi::Env env) { return open_or_throw(env, impl_.get(), "OpusDecoder"); }

  // decode(packet: Uint8Array | null, fec: boolean, frameSize: number): Int16Array
  //   packet null -> PLC for one frame of frameSize (0 = last frame's size)
  //   fec true    -> recover the frame before `packet` from its in-band FEC
  Napi::Value Decode(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    dsp::Decoder& dec = impl(env);
    const bool fec = info.Length() > 1 && info[1].ToBoolean();
    const int frame = is_nullish(info, 2) ? 0 : static_cast<int>(integer_arg(info, 2, "frameSize", 0, dsp::kOpusMaxFrameSamples));
    int n = 0;
    if (is_nullish(info, 0)) {
      n = guarded(env, [&] { return dec.conceal(frame, pcm_.data(), dsp::kOpusMaxFrameSamples); });
    } else {
      auto packet = typed_array_arg<uint8_t>(info, 0, "packet");
      n = guarded(env, [&] {
        return fec ? dec.decode_fec(packet.data, packet.length, frame, pcm_.data(), dsp::kOpusMaxFrameSamples)
                   : dec.decode(packet.data, packet.length, pcm_.data(), dsp::kOpusMaxFrameSamples);
      });
    }
    const size_t samples = static_cast<size_t>(n) * static_cast<size_t>(dec.channels());
    auto out = Napi::Int16Array::New(env, samples);
    std::copy_n(pcm_.data(), samples, out.Data());
    return out;
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

  Napi::Value LastFrame(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), impl(info.Env()).last_frame_samples());
  }

  std::unique_ptr<dsp::Decoder> impl_;
  std::vector<int16_t> pcm_;
};

}  // namespace

void init_opus(Napi::Env env, Napi::Object exports) {
  exports.Set("NativeOpusEncoder", OpusEncoderWrap::Define(env));
  exports.Set("NativeOpusDecoder", OpusDecoderWrap::Define(env));
}

}  // namespace xz::binding
