// Argument access for native entry points. The TypeScript layer validates first and produces the
// detailed messages; these checks are the last line, so a caller that bypasses the wrappers still
// gets a coded TypeError/RangeError instead of undefined behaviour.
#pragma once

#include <napi.h>

#include <cstdint>
#include <cstring>
#include <string>

#include "errors.h"

namespace xz::binding {

// A view of a typed array's bytes that honours byteOffset (node-addon-api's Data() includes it).
template <typename T>
struct View {
  T* data;
  size_t length;  // elements
};

template <typename T>
napi_typedarray_type typed_array_type();
template <> inline napi_typedarray_type typed_array_type<int16_t>() { return napi_int16_array; }
template <> inline napi_typedarray_type typed_array_type<float>() { return napi_float32_array; }
template <> inline napi_typedarray_type typed_array_type<uint8_t>() { return napi_uint8_array; }

template <typename T>
const char* typed_array_name();
template <> inline const char* typed_array_name<int16_t>() { return "Int16Array"; }
template <> inline const char* typed_array_name<float>() { return "Float32Array"; }
template <> inline const char* typed_array_name<uint8_t>() { return "Uint8Array (or Buffer)"; }

template <typename T>
View<T> typed_array_arg(const Napi::CallbackInfo& info, size_t index, const char* name) {
  // One napi_get_typedarray_info call is the type check, the length and the data pointer (already
  // offset by byteOffset): three node-addon-api calls cost twice as much on the per-frame paths.
  napi_typedarray_type type;
  size_t length = 0;
  void* data = nullptr;
  if (index >= info.Length() ||
      napi_get_typedarray_info(info.Env(), info[index], &type, &length, &data, nullptr, nullptr) != napi_ok ||
      type != typed_array_type<T>()) {
    throw_type_error(info.Env(), "ERR_INVALID_ARG_TYPE",
                     std::string("The \"") + name + "\" argument must be a " + typed_array_name<T>());
  }
  return View<T>{static_cast<T*>(data), length};
}

inline bool is_nullish(const Napi::CallbackInfo& info, size_t index) {
  return index >= info.Length() || info[index].IsUndefined() || info[index].IsNull();
}

inline int64_t integer_arg(const Napi::CallbackInfo& info, size_t index, const char* name, int64_t min, int64_t max) {
  Napi::Env env = info.Env();
  if (index >= info.Length() || !info[index].IsNumber()) {
    throw_type_error(env, "ERR_INVALID_ARG_TYPE", std::string("The \"") + name + "\" argument must be a number");
  }
  const double d = info[index].As<Napi::Number>().DoubleValue();
  if (!(d >= static_cast<double>(min) && d <= static_cast<double>(max)) || d != static_cast<double>(static_cast<int64_t>(d))) {
    throw_range_error(env, "ERR_OUT_OF_RANGE",
                      std::string("The \"") + name + "\" argument must be an integer in [" + std::to_string(min) +
                          ", " + std::to_string(max) + "]");
  }
  return static_cast<int64_t>(d);
}

// Options objects: a missing key takes the fallback; a wrong type or value is a coded error naming
// "options.<key>".
inline int int_option(Napi::Env env, Napi::Object o, const char* key, int fallback, int min, int max) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined()) return fallback;
  if (!v.IsNumber()) throw_type_error(env, "ERR_INVALID_ARG_TYPE", std::string("options.") + key + " must be a number");
  const double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= min && d <= max) || d != static_cast<double>(static_cast<int64_t>(d))) {
    throw_range_error(env, "ERR_OUT_OF_RANGE", std::string("options.") + key + " must be an integer in [" +
                      std::to_string(min) + ", " + std::to_string(max) + "]");
  }
  return static_cast<int>(d);
}

inline bool bool_option(Napi::Env env, Napi::Object o, const char* key, bool fallback) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined()) return fallback;
  if (!v.IsBoolean()) throw_type_error(env, "ERR_INVALID_ARG_TYPE", std::string("options.") + key + " must be a boolean");
  return v.As<Napi::Boolean>().Value();
}

inline Napi::Object object_arg(const Napi::CallbackInfo& info, size_t i, const char* name) {
  if (info.Length() <= i || !info[i].IsObject()) {
    throw_type_error(info.Env(), "ERR_INVALID_ARG_TYPE", std::string("The \"") + name + "\" argument must be an object");
  }
  return info[i].As<Napi::Object>();
}

// (key, nonce, ...) entry points: two 16-byte Uint8Arrays copied out, coded RangeErrors otherwise.
inline void copy_key_nonce(const Napi::CallbackInfo& info, uint8_t key[16], uint8_t nonce[16]) {
  auto k = typed_array_arg<uint8_t>(info, 0, "key");
  auto n = typed_array_arg<uint8_t>(info, 1, "nonce");
  if (k.length != 16) throw_range_error(info.Env(), "ERR_AES_KEY_LENGTH", "key must be 16 bytes");
  if (n.length != 16) throw_range_error(info.Env(), "ERR_NONCE_LENGTH", "nonce must be 16 bytes");
  std::memcpy(key, k.data, 16);
  std::memcpy(nonce, n.data, 16);
}

inline bool overlaps(const void* a, size_t a_bytes, const void* b, size_t b_bytes) {
  auto pa = reinterpret_cast<uintptr_t>(a), pb = reinterpret_cast<uintptr_t>(b);
  return pa < pb + b_bytes && pb < pa + a_bytes;
}

// Base for wrapped native objects with an explicit close(): use after close and double close are
// TypeErrors with code ERR_CLOSED.
template <typename Impl>
Impl& open_or_throw(Napi::Env env, Impl* impl, const char* class_name) {
  if (!impl) throw_type_error(env, "ERR_CLOSED", std::string(class_name) + " is closed");
  return *impl;
}

}  // namespace xz::binding
