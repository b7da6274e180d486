#include "packet_binding.h"

#include <algorithm>
#include <memory>

#include "args.h"
#include "dsp/packet.h"

namespace xz::binding {
namespace {

constexpr int64_t kU32Max = 0xFFFFFFFFLL;

// packetEncode(type, flags, ssrc, timestamp, sequence, payload: Uint8Array, out: Uint8Array): void
// out must be exactly 16 + payload.length bytes.
Napi::Value PacketEncode(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  dsp::PacketHeader h;
  h.type = static_cast<uint8_t>(integer_arg(info, 0, "type", 0, 255));
  h.flags = static_cast<uint8_t>(integer_arg(info, 1, "flags", 0, 255));
  h.ssrc = static_cast<uint32_t>(integer_arg(info, 2, "ssrc", 0, kU32Max));
  h.timestamp = static_cast<uint32_t>(integer_arg(info, 3, "timestamp", 0, kU32Max));
  h.sequence = static_cast<uint32_t>(integer_arg(info, 4, "sequence", 0, kU32Max));
  auto payload = typed_array_arg<uint8_t>(info, 5, "payload");
  auto out = typed_array_arg<uint8_t>(info, 6, "out");
  if (payload.length + dsp::kPacketHeaderSize > dsp::kMaxDatagramSize) {
    throw_range_error(env, "ERR_PACKET_TOO_LARGE", "payload of " + std::to_string(payload.length) +
                      " bytes exceeds the 1484 bytes a 1500-byte datagram can carry");
  }
  if (out.length != payload.length + dsp::kPacketHeaderSize) {
    throw_range_error(env, "ERR_OUT_OF_RANGE", "out must be exactly 16 + payload.length bytes");
  }
  if (overlaps(payload.data, payload.length, out.data, out.length)) {
    throw_range_error(env, "ERR_OVERLAP", "payload and out must not share memory");
  }
  h.payload_length = static_cast<uint16_t>(payload.length);
  dsp::write_header(h, out.data);
  std::copy_n(payload.data, payload.length, out.data + dsp::kPacketHeaderSize);
  return env.Undefined();
}

// packetParse(datagram: Uint8Array, fields: Uint32Array(6)): string — "" when valid, else the error
// code; fields receive [type, flags, payloadLength, ssrc, timestamp, sequence].
Napi::Value PacketParse(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto datagram = typed_array_arg<uint8_t>(info, 0, "datagram");
  if (info.Length() < 2 || !info[1].IsTypedArray() ||
      info[1].As<Napi::TypedArray>().TypedArrayType() != napi_uint32_array ||
      info[1].As<Napi::TypedArray>().ElementLength() < 6) {
    throw_type_error(env, "ERR_INVALID_ARG_TYPE", "fields must be a Uint32Array of 6 elements");
  }
  uint32_t* fields = info[1].As<Napi::Uint32Array>().Data();
  dsp::PacketHeader h;
  const dsp::PacketError e = dsp::parse_datagram(datagram.data, datagram.length, &h);
  if (e != dsp::PacketError::kOk) return Napi::String::New(env, dsp::packet_error_code(e));
  fields[0] = h.type;
  fields[1] = h.flags;
  fields[2] = h.payload_length;
  fields[3] = h.ssrc;
  fields[4] = h.timestamp;
  fields[5] = h.sequence;
  return Napi::String::New(env, "");
}

Napi::Value PacketErrorMessage(const Napi::CallbackInfo& info) {
  const std::string code = info.Length() > 0 && info[0].IsString() ? info[0].As<Napi::String>().Utf8Value() : "";
  for (auto e : {dsp::PacketError::kShort, dsp::PacketError::kBadType, dsp::PacketError::kLengthMismatch}) {
    if (code == dsp::packet_error_code(e)) return Napi::String::New(info.Env(), dsp::packet_error_message(e));
  }
  return Napi::String::New(info.Env(), "unknown packet error");
}

class ReplayWindowWrap : public Napi::ObjectWrap<ReplayWindowWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "NativeReplayWindow",
                       {InstanceMethod<&ReplayWindowWrap::Check>("check"),
                        InstanceMethod<&ReplayWindowWrap::Commit>("commit"),
                        InstanceMethod<&ReplayWindowWrap::Reset>("reset"),
                        InstanceAccessor<&ReplayWindowWrap::Last>("last")});
  }
  explicit ReplayWindowWrap(const Napi::CallbackInfo& info)
      : Napi::ObjectWrap<ReplayWindowWrap>(info),
        window_(static_cast<uint32_t>(integer_arg(info, 0, "maxJump", 1, kU32Max))) {}

 private:
  // check(sequence): "" when fresh, else ERR_PACKET_REPLAY / ERR_PACKET_SEQUENCE_JUMP
  Napi::Value Check(const Napi::CallbackInfo& info) {
    const auto seq = static_cast<uint32_t>(integer_arg(info, 0, "sequence", 0, kU32Max));
    const auto v = window_.check(seq);
    return Napi::String::New(info.Env(), v == dsp::ReplayWindow::Verdict::kFresh ? "" : dsp::replay_verdict_code(v));
  }
  Napi::Value Commit(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const auto seq = static_cast<uint32_t>(integer_arg(info, 0, "sequence", 0, kU32Max));
    const auto v = window_.check(seq);
    if (v != dsp::ReplayWindow::Verdict::kFresh) {
      throw_range_error(env, dsp::replay_verdict_code(v), "sequence " + std::to_string(seq) +
                        " is not fresh (last accepted " + std::to_string(window_.last()) + ")");
    }
    window_.commit(seq);
    return env.Undefined();
  }
  Napi::Value Reset(const Napi::CallbackInfo& info) {
    window_.reset();
    return info.Env().Undefined();
  }
  Napi::Value Last(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), window_.last()); }

  dsp::ReplayWindow window_;
};

class DownlinkIvWrap : public Napi::ObjectWrap<DownlinkIvWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "NativeDownlinkIv", {InstanceMethod<&DownlinkIvWrap::Next>("next")});
  }
  // new NativeDownlinkIv(nonce: Uint8Array(16))
  explicit DownlinkIvWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<DownlinkIvWrap>(info) {
    auto nonce = typed_array_arg<uint8_t>(info, 0, "nonce");
    if (nonce.length != dsp::kPacketHeaderSize) {
      throw_range_error(info.Env(), "ERR_NONCE_LENGTH", "nonce must be 16 bytes, got " + std::to_string(nonce.length));
    }
    scheme_ = std::make_unique<dsp::DownlinkIvScheme>(nonce.data);
  }

 private:
  // next(payloadLength, timestampMs, out: Uint8Array(16)): void — writes the header (= IV).
  Napi::Value Next(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const auto len = static_cast<uint16_t>(integer_arg(info, 0, "payloadLength", 0, 1484));
    const auto ts = static_cast<uint32_t>(integer_arg(info, 1, "timestampMs", 0, kU32Max));
    auto out = typed_array_arg<uint8_t>(info, 2, "out");
    if (out.length < dsp::kPacketHeaderSize) throw_range_error(env, "ERR_OUT_OF_RANGE", "out must hold 16 bytes");
    dsp::PacketHeader h;
    if (!scheme_->next(len, ts, &h)) {
      throw_range_error(env, "ERR_IV_EXHAUSTED",
                        "downlink sequence/timestamp space exhausted: the session must re-key with a new hello");
    }
    dsp::write_header(h, out.data);
    return env.Undefined();
  }
  std::unique_ptr<dsp::DownlinkIvScheme> scheme_;
};

}  // namespace

void init_packet(Napi::Env env, Napi::Object exports) {
  exports.Set("packetEncode", Napi::Function::New(env, PacketEncode, "packetEncode"));
  exports.Set("packetParse", Napi::Function::New(env, PacketParse, "packetParse"));
  exports.Set("packetErrorMessage", Napi::Function::New(env, PacketErrorMessage, "packetErrorMessage"));
  exports.Set("NativeReplayWindow", ReplayWindowWrap::Define(env));
  exports.Set("NativeDownlinkIv", DownlinkIvWrap::Define(env));
}

}  // namespace xz::binding
