// Errors raised by the DSP stages. Each carries a stable code (the binding turns it into the JS
// error's `code`) and whether it is a type problem or a range/value problem, so the binding can pick
// TypeError vs RangeError without knowing each stage.
#pragma once

#include <stdexcept>
#include <string>

namespace xz::dsp {

enum class ErrorKind { kRange, kType, kState, kInternal };

class DspError : public std::runtime_error {
 public:
  DspError(ErrorKind kind, const char* code, const std::string& message)
      : std::runtime_error(message), kind_(kind), code_(code) {}
  ErrorKind kind() const noexcept { return kind_; }
  const char* code() const noexcept { return code_; }

 private:
  ErrorKind kind_;
  const char* code_;  // always a string literal
};

}  // namespace xz::dsp
