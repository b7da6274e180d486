#include "errors.h"

namespace xz::binding {
namespace {
[[noreturn]] void throw_with_code(Napi::Error error, const char* code) {
  error.Set("code", Napi::String::New(error.Env(), code));
  throw error;
}
}  // namespace

void throw_type_error(Napi::Env env, const char* code, const std::string& message) {
  throw_with_code(Napi::TypeError::New(env, message), code);
}

void throw_range_error(Napi::Env env, const char* code, const std::string& message) {
  throw_with_code(Napi::RangeError::New(env, message), code);
}

void throw_error(Napi::Env env, const char* code, const std::string& message) {
  throw_with_code(Napi::Error::New(env, message), code);
}

void throw_dsp_error(Napi::Env env, const dsp::DspError& e) {
  switch (e.kind()) {
    case dsp::ErrorKind::kType: throw_type_error(env, e.code(), e.what());
    case dsp::ErrorKind::kRange: throw_range_error(env, e.code(), e.what());
    case dsp::ErrorKind::kState: throw_type_error(env, e.code(), e.what());
    case dsp::ErrorKind::kInternal: throw_error(env, e.code(), e.what());
  }
  throw_error(env, e.code(), e.what());
}

}  // namespace xz::binding
