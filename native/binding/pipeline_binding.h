#pragma once
#include <napi.h>
namespace xz::binding {
void init_pipeline(Napi::Env env, Napi::Object exports);
}  // namespace xz::binding
