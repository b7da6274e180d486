// AES-128-CTR with the OpenSSL EVP API that the Node.js binary itself exports.
//
// Why Node's OpenSSL: the addon ships no crypto of its own, and Node's build is the one node:crypto
// uses (byte-identical results, AES-NI where available). The functions are looked up by name at run
// time instead of linked, so a runtime without them (Electron and others built on BoringSSL, or a
// Node built with OpenSSL symbols hidden) gets a clear error at load, not a crash at first use.
//
// One EVP context per stream: the key schedule is computed once; each packet only resets the IV.
// CTR increments the counter over the full 128 bits, as OpenSSL and node:crypto `aes-128-ctr` do.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace xz::dsp {

// Empty if the EVP functions are available; otherwise a message naming what is missing and why.
const std::string& openssl_unavailable_reason();
// Version string of the OpenSSL the runtime exports ("OpenSSL 3.0.15 ..."), or "" if unavailable.
std::string openssl_version();

class AesCtr {
 public:
  static constexpr size_t kKeySize = 16;
  static constexpr size_t kIvSize = 16;

  explicit AesCtr(const uint8_t key[kKeySize]);  // throws DspError if OpenSSL is unavailable
  ~AesCtr();
  AesCtr(const AesCtr&) = delete;
  AesCtr& operator=(const AesCtr&) = delete;

  // out may equal in (in place); otherwise the ranges must not overlap. Any length, including 0.
  void crypt(const uint8_t iv[kIvSize], const uint8_t* in, uint8_t* out, size_t n);

 private:
  void* ctx_;  // EVP_CIPHER_CTX*
};

}  // namespace xz::dsp
