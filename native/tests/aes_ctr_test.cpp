// Tests for xz::dsp::AesCtr (native/dsp/aes_ctr.h). Outside Node the EVP functions come from the
// system libcrypto that this test binary links (AesCtr looks them up with dlsym).
//
// References, independent of the code under test:
//  * NIST SP 800-38A, Appendix F.5.1/F.5.2 (CTR-AES128), typed in from the standard;
//  * a fresh OpenSSL EVP aes-128-ctr context per case, created here;
//  * AES-128-ECB of counter blocks that this test increments itself with 128-bit integers, so the
//    full-width counter increment (PROTOCOL.md §3.1: the 16 header bytes are the counter, incremented
//    over all 128 bits, as node:crypto's aes-128-ctr does) is checked by construction.
#include "../dsp/aes_ctr.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "../dsp/dsp_error.h"

namespace dsp = xz::dsp;
using Bytes = std::vector<uint8_t>;
using u128 = unsigned __int128;

namespace {

Bytes Hex(const std::string& hex) {
  Bytes out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2) out.push_back(static_cast<uint8_t>(std::stoul(hex.substr(i, 2), nullptr, 16)));
  return out;
}

std::string ToHex(const Bytes& b) {
  static const char* digits = "0123456789abcdef";
  std::string s;
  for (uint8_t v : b) {
    s += digits[v >> 4];
    s += digits[v & 15];
  }
  return s;
}

// Reference 1: a brand-new EVP aes-128-ctr context for this one message.
Bytes EvpCtr(const Bytes& key, const Bytes& iv, const Bytes& in) {
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  EXPECT_NE(ctx, nullptr);
  EXPECT_EQ(EVP_EncryptInit_ex(ctx, EVP_aes_128_ctr(), nullptr, key.data(), iv.data()), 1);
  Bytes out(in.size() + 16);
  int len = 0, fin = 0;
  const uint8_t dummy = 0;
  EXPECT_EQ(EVP_EncryptUpdate(ctx, out.data(), &len, in.empty() ? &dummy : in.data(), static_cast<int>(in.size())), 1);
  EXPECT_EQ(EVP_EncryptFinal_ex(ctx, out.data() + len, &fin), 1);
  EVP_CIPHER_CTX_free(ctx);
  out.resize(static_cast<size_t>(len + fin));
  return out;
}

u128 Load128(const uint8_t* p) {
  u128 v = 0;
  for (int i = 0; i < 16; ++i) v = (v << 8) | p[i];
  return v;
}

void Store128(u128 v, uint8_t* p) {
  for (int i = 15; i >= 0; --i) {
    p[i] = static_cast<uint8_t>(v);
    v >>= 8;
  }
}

// Reference 2: keystream block i = AES-ECB(key, iv + i mod 2^128), counter arithmetic done here.
Bytes EcbCtr(const Bytes& key, const Bytes& iv, const Bytes& in) {
  const size_t blocks = (in.size() + 15) / 16;
  Bytes counters(blocks * 16);
  const u128 base = Load128(iv.data());
  for (size_t i = 0; i < blocks; ++i) Store128(base + static_cast<u128>(i), counters.data() + 16 * i);
  Bytes keystream(blocks * 16 + 16);
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  EXPECT_EQ(EVP_EncryptInit_ex(ctx, EVP_aes_128_ecb(), nullptr, key.data(), nullptr), 1);
  EVP_CIPHER_CTX_set_padding(ctx, 0);
  int len = 0;
  if (blocks) {
    EXPECT_EQ(EVP_EncryptUpdate(ctx, keystream.data(), &len, counters.data(), static_cast<int>(counters.size())), 1);
  }
  EVP_CIPHER_CTX_free(ctx);
  Bytes out(in.size());
  for (size_t i = 0; i < in.size(); ++i) out[i] = in[i] ^ keystream[i];
  return out;
}

Bytes Crypt(dsp::AesCtr& aes, const Bytes& iv, const Bytes& in) {
  Bytes out(in.size());
  aes.crypt(iv.data(), in.data(), out.data(), in.size());
  return out;
}

Bytes Random(std::mt19937& rng, size_t n) {
  Bytes b(n);
  for (auto& v : b) v = static_cast<uint8_t>(rng());
  return b;
}

// NIST SP 800-38A F.5.1 CTR-AES128.Encrypt (F.5.2 decrypt uses the same values reversed).
const char* kNistKey = "2b7e151628aed2a6abf7158809cf4f3c";
const char* kNistCounter = "f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff";
const char* kNistInputBlocks[4] = {"f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff", "f0f1f2f3f4f5f6f7f8f9fafbfcfdff00",
                                   "f0f1f2f3f4f5f6f7f8f9fafbfcfdff01", "f0f1f2f3f4f5f6f7f8f9fafbfcfdff02"};
const char* kNistOutputBlocks[4] = {"ec8cdf7398607cb0f2d21675ea9ea1e4", "362b7c3c6773516318a077d7fc5073ae",
                                    "6a2cc3787889374fbeb4c81b17ba6c44", "e89c399ff0f198c6d40a31db156cabfe"};
const char* kNistPlaintext[4] = {"6bc1bee22e409f96e93d7e117393172a", "ae2d8a571e03ac9c9eb76fac45af8e51",
                                 "30c81c46a35ce411e5fbc1191a0a52ef", "f69f2445df4f9b17ad2b417be66c3710"};
const char* kNistCiphertext[4] = {"874d6191b620e3261bef6864990db6ce", "9806f66b7970fdff8617187bb9fffdff",
                                  "5ae4df3edbd5d35e5b4f09020db03eab", "1e031dda2fbe03d1792170a0f3009cee"};

std::string Join(const char* const parts[4]) { return std::string(parts[0]) + parts[1] + parts[2] + parts[3]; }

TEST(AesCtrOpenSsl, AvailableInThisProcess) {
  EXPECT_EQ(dsp::openssl_unavailable_reason(), "");
  const std::string v = dsp::openssl_version();
  EXPECT_EQ(v.rfind("OpenSSL", 0), 0u) << v;
  std::printf("[ info     ] %s\n", v.c_str());
}

TEST(AesCtrKnownAnswer, NistSp800_38A_F51_Encrypt) {
  const Bytes key = Hex(kNistKey), iv = Hex(kNistCounter);
  const Bytes pt = Hex(Join(kNistPlaintext)), ct = Hex(Join(kNistCiphertext));
  dsp::AesCtr aes(key.data());
  EXPECT_EQ(ToHex(Crypt(aes, iv, pt)), ToHex(ct));
  // The references agree with the standard too (this validates them as references).
  EXPECT_EQ(ToHex(EvpCtr(key, iv, pt)), ToHex(ct));
  EXPECT_EQ(ToHex(EcbCtr(key, iv, pt)), ToHex(ct));
  // The standard's counter blocks are our 128-bit increments, and its output blocks are the keystream.
  for (int i = 0; i < 4; ++i) {
    Bytes block(16);
    Store128(Load128(iv.data()) + static_cast<u128>(i), block.data());
    EXPECT_EQ(ToHex(block), kNistInputBlocks[i]);
    EXPECT_EQ(ToHex(Crypt(aes, block, Bytes(16, 0))), kNistOutputBlocks[i]) << "keystream block " << i;
  }
  // Block by block, each starting from its own counter block, as separate packets would.
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(ToHex(Crypt(aes, Hex(kNistInputBlocks[i]), Hex(kNistPlaintext[i]))), kNistCiphertext[i]);
  }
}

TEST(AesCtrKnownAnswer, NistSp800_38A_F52_DecryptInPlace) {
  const Bytes key = Hex(kNistKey), iv = Hex(kNistCounter);
  Bytes buf = Hex(Join(kNistCiphertext));
  dsp::AesCtr aes(key.data());
  aes.crypt(iv.data(), buf.data(), buf.data(), buf.size());
  EXPECT_EQ(ToHex(buf), Join(kNistPlaintext));
  // Truncated messages: every prefix length of the 64-byte vector.
  const Bytes pt = Hex(Join(kNistPlaintext)), ct = Hex(Join(kNistCiphertext));
  for (size_t n = 0; n <= 64; ++n) {
    const Bytes prefix(pt.begin(), pt.begin() + static_cast<std::ptrdiff_t>(n));
    EXPECT_EQ(ToHex(Crypt(aes, iv, prefix)), ToHex(Bytes(ct.begin(), ct.begin() + static_cast<std::ptrdiff_t>(n)))) << n;
  }
}

TEST(AesCtr, CounterWrapsOverAll128Bits) {
  std::mt19937 rng(11);
  const Bytes key = Random(rng, 16);
  dsp::AesCtr aes(key.data());
  const char* ivs[] = {
      "ffffffffffffffffffffffffffffffff",  // wraps to zero after the first block
      "fffffffffffffffffffffffffffffffe",
      "0000000000000000ffffffffffffffff",  // carry from the low 64 bits into the high 64
      "00000000ffffffffffffffffffffffff",
      "0100abcd12345678ffffffffffffffff",  // a packet header whose sequence is 0xffffffff
      "0100abcd1234567800000000fffffffa",  // carry out of the sequence field into the timestamp
      "000000000000000000000000000000ff",  // carry out of the low byte
      "000000000000000000000000ffffffff",  // carry out of the low 32 bits (a 32-bit counter would wrap)
  };
  for (const char* iv_hex : ivs) {
    const Bytes iv = Hex(iv_hex);
    for (size_t n : {size_t{16}, size_t{17}, size_t{32}, size_t{95}, size_t{100}, size_t{160}, size_t{1484}}) {
      const Bytes pt = Random(rng, n);
      const Bytes expected = EcbCtr(key, iv, pt);
      EXPECT_EQ(ToHex(Crypt(aes, iv, pt)), ToHex(expected)) << iv_hex << " n=" << n;
      EXPECT_EQ(ToHex(EvpCtr(key, iv, pt)), ToHex(expected)) << iv_hex << " n=" << n;
    }
  }
  // After ff..ff comes 00..00: the second keystream block is AES(0).
  const Bytes all_ff = Hex("ffffffffffffffffffffffffffffffff");
  const Bytes zero_block(16, 0);
  const Bytes ks = Crypt(aes, all_ff, Bytes(32, 0));
  EXPECT_EQ(ToHex(Bytes(ks.begin() + 16, ks.end())), ToHex(Crypt(aes, zero_block, Bytes(16, 0))));
}

TEST(AesCtr, EveryLengthZeroTo100MatchesFreshEvpAndEcb) {
  std::mt19937 rng(12);
  for (int k = 0; k < 4; ++k) {
    const Bytes key = Random(rng, 16);
    dsp::AesCtr aes(key.data());
    for (size_t n = 0; n <= 100; ++n) {
      const Bytes iv = Random(rng, 16);
      const Bytes pt = Random(rng, n);
      const Bytes got = Crypt(aes, iv, pt);
      ASSERT_EQ(got.size(), n);
      ASSERT_EQ(ToHex(got), ToHex(EvpCtr(key, iv, pt))) << "n=" << n;
      ASSERT_EQ(ToHex(got), ToHex(EcbCtr(key, iv, pt))) << "n=" << n;
      // Decrypting is the same operation.
      ASSERT_EQ(ToHex(Crypt(aes, iv, got)), ToHex(pt)) << "n=" << n;
    }
  }
}

TEST(AesCtr, ZeroLengthTouchesNothing) {
  const Bytes key(16, 7), iv(16, 9);
  dsp::AesCtr aes(key.data());
  uint8_t sentinel = 0x42;
  aes.crypt(iv.data(), &sentinel, &sentinel, 0);
  EXPECT_EQ(sentinel, 0x42);
  aes.crypt(iv.data(), nullptr, nullptr, 0);  // no data pointer needed for nothing
  // And the context is still fine afterwards.
  const Bytes pt(33, 1);
  EXPECT_EQ(ToHex(Crypt(aes, iv, pt)), ToHex(EvpCtr(key, iv, pt)));
}

TEST(AesCtr, InPlaceEqualsOutOfPlace) {
  std::mt19937 rng(13);
  const Bytes key = Random(rng, 16);
  dsp::AesCtr aes(key.data());
  for (size_t n = 0; n <= 100; ++n) {
    const Bytes iv = Random(rng, 16);
    const Bytes pt = Random(rng, n);
    Bytes buf = pt;
    aes.crypt(iv.data(), buf.data(), buf.data(), n);
    ASSERT_EQ(ToHex(buf), ToHex(EvpCtr(key, iv, pt))) << n;
    aes.crypt(iv.data(), buf.data(), buf.data(), n);
    ASSERT_EQ(ToHex(buf), ToHex(pt)) << n;
  }
  // A full-size packet, in place at an odd address.
  Bytes big(1 + 1484);
  for (auto& v : big) v = static_cast<uint8_t>(rng());
  const Bytes pt(big.begin() + 1, big.end());
  const Bytes iv = Random(rng, 16);
  aes.crypt(iv.data(), big.data() + 1, big.data() + 1, 1484);
  EXPECT_EQ(ToHex(Bytes(big.begin() + 1, big.end())), ToHex(EvpCtr(key, iv, pt)));
}

TEST(AesCtr, ReuseAcrossIvsStartsEachPacketAtItsOwnCounter) {
  // One context serves a whole stream: after a packet whose length is not a multiple of 16 the next
  // packet must start at block 0 of its own IV, not continue the previous keystream.
  std::mt19937 rng(14);
  const Bytes key = Random(rng, 16);
  dsp::AesCtr aes(key.data());
  Bytes iv(16, 0);
  iv[0] = 0x01;
  for (uint32_t seq = 1; seq <= 3000; ++seq) {
    const size_t n = rng() % 200;
    iv[2] = static_cast<uint8_t>(n >> 8);
    iv[3] = static_cast<uint8_t>(n);
    iv[12] = static_cast<uint8_t>(seq >> 24);
    iv[13] = static_cast<uint8_t>(seq >> 16);
    iv[14] = static_cast<uint8_t>(seq >> 8);
    iv[15] = static_cast<uint8_t>(seq);
    const Bytes pt = Random(rng, n);
    ASSERT_EQ(ToHex(Crypt(aes, iv, pt)), ToHex(EvpCtr(key, iv, pt))) << "seq=" << seq << " n=" << n;
  }
  // The same IV twice gives the same output (nothing carried over between calls).
  const Bytes iv2 = Random(rng, 16);
  const Bytes pt = Random(rng, 37);
  const Bytes first = Crypt(aes, iv2, pt);
  Crypt(aes, Random(rng, 16), Random(rng, 5));
  EXPECT_EQ(ToHex(Crypt(aes, iv2, pt)), ToHex(first));
}

TEST(AesCtr, IndependentContextsWithDifferentKeys) {
  std::mt19937 rng(15);
  const Bytes k1 = Random(rng, 16), k2 = Random(rng, 16);
  dsp::AesCtr a(k1.data());
  dsp::AesCtr b(k2.data());
  for (int i = 0; i < 200; ++i) {
    const Bytes iv = Random(rng, 16);
    const Bytes pt = Random(rng, rng() % 120);
    const Bytes ca = Crypt(a, iv, pt);
    const Bytes cb = Crypt(b, iv, pt);
    ASSERT_EQ(ToHex(ca), ToHex(EvpCtr(k1, iv, pt)));
    ASSERT_EQ(ToHex(cb), ToHex(EvpCtr(k2, iv, pt)));
    if (pt.size() >= 8) {
      ASSERT_NE(ToHex(ca), ToHex(cb));
    }
  }
}

TEST(AesCtr, LargeBuffer) {
  std::mt19937 rng(16);
  const Bytes key = Random(rng, 16);
  const Bytes iv = Hex("fffffffffffffffffffffffffffff000");  // wraps inside the buffer
  dsp::AesCtr aes(key.data());
  const Bytes pt = Random(rng, (1u << 20) + 7);
  const Bytes got = Crypt(aes, iv, pt);
  EXPECT_TRUE(got == EvpCtr(key, iv, pt));
  EXPECT_TRUE(got == EcbCtr(key, iv, pt));
}

TEST(AesCtr, ManyContextsCreatedAndDestroyed) {
  // Construction/destruction is balanced (EVP contexts freed): run it enough times that a leak or a
  // double free would show under a sanitizer, and keep checking results.
  std::mt19937 rng(17);
  for (int i = 0; i < 2000; ++i) {
    const Bytes key = Random(rng, 16), iv = Random(rng, 16), pt = Random(rng, 20);
    dsp::AesCtr aes(key.data());
    ASSERT_EQ(ToHex(Crypt(aes, iv, pt)), ToHex(EvpCtr(key, iv, pt)));
  }
}

}  // namespace
