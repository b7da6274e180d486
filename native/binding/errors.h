// Throwing JS errors with a stable `code`. Every native entry point converts failures into a
// TypeError/RangeError/Error carrying a code; nothing from JS can abort the process.
#pragma once

#include <napi.h>

#include <string>

#include "dsp/dsp_error.h"

namespace xz::binding {

[[noreturn]] void throw_type_error(Napi::Env env, const char* code, const std::string& message);
[[noreturn]] void throw_range_error(Napi::Env env, const char* code, const std::string& message);
[[noreturn]] void throw_error(Napi::Env env, const char* code, const std::string& message);
// Maps a DspError onto the JS error type its kind calls for.
[[noreturn]] void throw_dsp_error(Napi::Env env, const dsp::DspError& e);

// Runs fn and turns C++ exceptions into JS exceptions with codes.
template <typename Fn>
auto guarded(Napi::Env env, Fn&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const Napi::Error&) {
    throw;
  } catch (const dsp::DspError& e) {
    throw_dsp_error(env, e);
  } catch (const std::bad_alloc&) {
    throw_range_error(env, "ERR_OUT_OF_MEMORY", "out of memory");
  } catch (const std::exception& e) {
    throw_error(env, "ERR_NATIVE", e.what());
  }
}

}  // namespace xz::binding
