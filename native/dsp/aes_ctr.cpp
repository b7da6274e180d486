#include "aes_ctr.h"

#include <openssl/evp.h>

#include <climits>
#include <cstring>

#include "dsp_error.h"

#if defined(_WIN32)
#include <windows.h>
#else
#include <dlfcn.h>
#endif

namespace xz::dsp {
namespace {

struct EvpApi {
  decltype(&EVP_CIPHER_CTX_new) ctx_new = nullptr;
  decltype(&EVP_CIPHER_CTX_free) ctx_free = nullptr;
  decltype(&EVP_aes_128_ctr) aes_128_ctr = nullptr;
  decltype(&EVP_EncryptInit_ex) init = nullptr;
  decltype(&EVP_EncryptUpdate) update = nullptr;
  decltype(&OpenSSL_version) version = nullptr;
  std::string missing;
};

void* find_symbol(const char* name) {
#if defined(_WIN32)
  return reinterpret_cast<void*>(GetProcAddress(GetModuleHandle(nullptr), name));
#else
  return dlsym(RTLD_DEFAULT, name);
#endif
}

template <typename Fn>
void resolve(EvpApi& api, Fn& slot, const char* name) {
  slot = reinterpret_cast<Fn>(find_symbol(name));
  if (!slot) api.missing += (api.missing.empty() ? "" : ", ") + std::string(name);
}

const EvpApi& evp() {
  static const EvpApi api = [] {
    EvpApi a;
    resolve(a, a.ctx_new, "EVP_CIPHER_CTX_new");
    resolve(a, a.ctx_free, "EVP_CIPHER_CTX_free");
    resolve(a, a.aes_128_ctr, "EVP_aes_128_ctr");
    resolve(a, a.init, "EVP_EncryptInit_ex");
    resolve(a, a.update, "EVP_EncryptUpdate");
    resolve(a, a.version, "OpenSSL_version");
    return a;
  }();
  return api;
}

}  // namespace

const std::string& openssl_unavailable_reason() {
  static const std::string reason =
      evp().missing.empty()
          ? std::string()
          : "this JavaScript runtime does not export OpenSSL's EVP API (missing: " + evp().missing +
                "). xiaozhi-gateway uses the OpenSSL built into Node.js for AES-128-CTR; runtimes built "
                "on BoringSSL (e.g. Electron) or without exported OpenSSL symbols are not supported. "
                "Run it with the official Node.js >= 20.";
  return reason;
}

std::string openssl_version() {
  if (!openssl_unavailable_reason().empty()) return "";
  return evp().version(OPENSSL_VERSION);
}

AesCtr::AesCtr(const uint8_t key[kKeySize]) : ctx_(nullptr) {
  const std::string& why = openssl_unavailable_reason();
  if (!why.empty()) throw DspError(ErrorKind::kInternal, "ERR_OPENSSL_UNAVAILABLE", why);
  const EvpApi& api = evp();
  EVP_CIPHER_CTX* ctx = api.ctx_new();
  if (!ctx) throw DspError(ErrorKind::kInternal, "ERR_AES_INIT", "EVP_CIPHER_CTX_new failed (out of memory)");
  if (api.init(ctx, api.aes_128_ctr(), nullptr, key, nullptr) != 1) {
    api.ctx_free(ctx);
    throw DspError(ErrorKind::kInternal, "ERR_AES_INIT", "EVP_EncryptInit_ex failed to set the AES-128 key");
  }
  ctx_ = ctx;
}

AesCtr::~AesCtr() { evp().ctx_free(static_cast<EVP_CIPHER_CTX*>(ctx_)); }

void AesCtr::crypt(const uint8_t iv[kIvSize], const uint8_t* in, uint8_t* out, size_t n) {
  const EvpApi& api = evp();
  auto* ctx = static_cast<EVP_CIPHER_CTX*>(ctx_);
  // Re-initialising with only an IV keeps the key schedule and resets the counter and keystream
  // position: each packet starts at its own IV.
  if (api.init(ctx, nullptr, nullptr, nullptr, iv) != 1) {
    throw DspError(ErrorKind::kInternal, "ERR_AES_CRYPT", "EVP_EncryptInit_ex failed to set the IV");
  }
  while (n > 0) {
    const int chunk = n > static_cast<size_t>(INT_MAX / 2) ? INT_MAX / 2 : static_cast<int>(n);
    int written = 0;
    if (api.update(ctx, out, &written, in, chunk) != 1 || written != chunk) {
      throw DspError(ErrorKind::kInternal, "ERR_AES_CRYPT", "EVP_EncryptUpdate failed");
    }
    in += chunk;
    out += chunk;
    n -= static_cast<size_t>(chunk);
  }
}

}  // namespace xz::dsp
