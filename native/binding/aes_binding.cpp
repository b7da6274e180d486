#include "aes_binding.h"

#include <memory>

#include "args.h"
#include "dsp/aes_ctr.h"

namespace xz::binding {
namespace {

class AesCtrWrap : public Napi::ObjectWrap<AesCtrWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "NativeAesCtr",
                       {InstanceMethod<&AesCtrWrap::Crypt>("crypt"), InstanceMethod<&AesCtrWrap::Close>("close")});
  }

  // new NativeAesCtr(key: Uint8Array(16))
  explicit AesCtrWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<AesCtrWrap>(info) {
    Napi::Env env = info.Env();
    auto key = typed_array_arg<uint8_t>(info, 0, "key");
    if (key.length != dsp::AesCtr::kKeySize) {
      throw_range_error(env, "ERR_AES_KEY_LENGTH", "key must be 16 bytes, got " + std::to_string(key.length));
    }
    guarded(env, [&] { impl_ = std::make_unique<dsp::AesCtr>(key.data); });
  }

 private:
  // crypt(iv: Uint8Array(16), data: Uint8Array, output: Uint8Array): void — output may be data itself.
  Napi::Value Crypt(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    dsp::AesCtr& aes = open_or_throw(env, impl_.get(), "AesCtr");
    auto iv = typed_array_arg<uint8_t>(info, 0, "iv");
    auto data = typed_array_arg<uint8_t>(info, 1, "data");
    auto out = typed_array_arg<uint8_t>(info, 2, "output");
    if (iv.length != dsp::AesCtr::kIvSize) {
      throw_range_error(env, "ERR_AES_IV_LENGTH", "iv must be 16 bytes, got " + std::to_string(iv.length));
    }
    if (out.length < data.length) {
      throw_range_error(env, "ERR_OUT_OF_RANGE", "output has " + std::to_string(out.length) +
                        " bytes, data has " + std::to_string(data.length));
    }
    if (out.data != data.data && overlaps(out.data, data.length, data.data, data.length)) {
      throw_range_error(env, "ERR_OVERLAP", "output must be data itself (in place) or not share memory with it");
    }
    uint8_t iv_copy[dsp::AesCtr::kIvSize];  // the IV may live inside data (header before payload)
    std::copy_n(iv.data, sizeof iv_copy, iv_copy);
    guarded(env, [&] { aes.crypt(iv_copy, data.data, out.data, data.length); });
    return env.Undefined();
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    open_or_throw(info.Env(), impl_.get(), "AesCtr");
    impl_.reset();
    return info.Env().Undefined();
  }

  std::unique_ptr<dsp::AesCtr> impl_;
};

Napi::Value OpensslVersion(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), dsp::openssl_version());
}

Napi::Value OpensslUnavailableReason(const Napi::CallbackInfo& info) {
  return Napi::String::New(info.Env(), dsp::openssl_unavailable_reason());
}

}  // namespace

void init_aes(Napi::Env env, Napi::Object exports) {
  exports.Set("NativeAesCtr", AesCtrWrap::Define(env));
  exports.Set("opensslVersion", Napi::Function::New(env, OpensslVersion, "opensslVersion"));
  exports.Set("opensslUnavailableReason", Napi::Function::New(env, OpensslUnavailableReason, "opensslUnavailableReason"));
}

}  // namespace xz::binding
