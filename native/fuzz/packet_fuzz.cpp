// libFuzzer target: hostile UDP datagrams through the uplink's packet stages (PROTOCOL.md §3):
// parse_datagram, the replay window and AES-128-CTR decryption, plus the header codec and the
// downlink IV scheme driven by the same bytes. Every result is checked against a model written here
// (and the decryption against a fresh OpenSSL EVP context); a mismatch aborts, so the fuzzer reports
// logic errors as well as memory errors (ASan) and undefined behaviour (UBSan).
//
// Input layout (anything goes; short inputs just exercise less):
//   the whole input is first parsed as one datagram; then
//   [0, 16)   AES key, and the hello nonce for the downlink scheme
//   [16]      replay window max_jump selector
//   rest      records: 2-byte big-endian length L, then L bytes of datagram (truncated at the end)
//
// Build (see test/native.test.ts for the exact commands): clang++ -fsanitize=fuzzer,address,undefined
// against native/dsp and libcrypto.
#include <openssl/evp.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "../dsp/aes_ctr.h"
#include "../dsp/packet.h"

namespace dsp = xz::dsp;

namespace {

[[noreturn]] void Fail(const char* what) {
  std::fprintf(stderr, "packet_fuzz invariant violated: %s\n", what);
  std::abort();
}

#define CHECK(cond)             \
  do {                          \
    if (!(cond)) Fail(#cond);   \
  } while (0)

uint32_t Be32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}

// Parses a copy held in a heap block of exactly `len` bytes, so any read past the end is an ASan
// report, and checks the verdict against the model.
dsp::PacketError ParseChecked(const uint8_t* data, size_t len, dsp::PacketHeader* out) {
  std::unique_ptr<uint8_t[]> exact(new uint8_t[len ? len : 1]);
  if (len) std::memcpy(exact.get(), data, len);
  dsp::PacketHeader h;
  h.sequence = 0xdeadbeef;
  const dsp::PacketError e = dsp::parse_datagram(len ? exact.get() : nullptr, len, &h);
  dsp::PacketError model;
  if (len < 16) model = dsp::PacketError::kShort;
  else if (data[0] != 0x01) model = dsp::PacketError::kBadType;
  else if (((size_t{data[2]} << 8) | data[3]) != len - 16) model = dsp::PacketError::kLengthMismatch;
  else model = dsp::PacketError::kOk;
  CHECK(e == model);
  CHECK(dsp::packet_error_code(e) != nullptr && dsp::packet_error_message(e) != nullptr);
  if (e == dsp::PacketError::kOk) {
    CHECK(h.type == data[0] && h.flags == data[1]);
    CHECK(h.payload_length == len - 16);
    CHECK(h.ssrc == Be32(data + 4) && h.timestamp == Be32(data + 8) && h.sequence == Be32(data + 12));
    uint8_t again[16];
    dsp::write_header(h, again);
    CHECK(std::memcmp(again, data, 16) == 0);
  } else {
    CHECK(h.sequence == 0xdeadbeef);  // nothing written on error
  }
  *out = h;
  return e;
}

void EvpReference(const uint8_t key[16], const uint8_t iv[16], const uint8_t* in, size_t n, uint8_t* out) {
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  CHECK(ctx != nullptr);
  CHECK(EVP_EncryptInit_ex(ctx, EVP_aes_128_ctr(), nullptr, key, iv) == 1);
  int len = 0;
  const uint8_t dummy = 0;
  CHECK(EVP_EncryptUpdate(ctx, out, &len, n ? in : &dummy, static_cast<int>(n)) == 1);
  CHECK(static_cast<size_t>(len) == n);
  EVP_CIPHER_CTX_free(ctx);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  dsp::PacketHeader header;
  ParseChecked(data, size, &header);
  if (size < 17) return 0;

  uint8_t key[16];
  std::memcpy(key, data, 16);
  static const uint32_t kJumps[] = {0, 1, 2, 16, 1024, 0x7fffffffu, 0xfffffffeu, 0xffffffffu};
  const uint32_t max_jump = (data[16] & 0x80) ? kJumps[data[16] & 7] : dsp::ReplayWindow::kDefaultMaxJump;
  dsp::ReplayWindow window(max_jump);
  uint32_t model_last = 0;
  bool model_started = false;

  dsp::AesCtr aes(key);
  dsp::DownlinkIvScheme downlink(data);  // the key bytes double as a hello nonce
  const dsp::PacketHeader nonce = dsp::read_header(data);
  uint32_t down_seq = 0, down_ts = 0;
  bool down_any = false;

  size_t pos = 17;
  while (pos + 2 <= size) {
    size_t len = (size_t{data[pos]} << 8) | data[pos + 1];
    pos += 2;
    if (len > size - pos) len = size - pos;
    const uint8_t* d = data + pos;
    pos += len;

    dsp::PacketHeader h;
    if (ParseChecked(d, len, &h) == dsp::PacketError::kOk) {
      // Replay window against the model (64-bit arithmetic, no wrap).
      const dsp::ReplayWindow::Verdict v = window.check(h.sequence);
      const uint64_t base = model_started ? model_last : 0;
      const dsp::ReplayWindow::Verdict mv =
          uint64_t{h.sequence} <= base ? dsp::ReplayWindow::Verdict::kReplay
          : uint64_t{h.sequence} - base > max_jump ? dsp::ReplayWindow::Verdict::kTooFarAhead
                                                   : dsp::ReplayWindow::Verdict::kFresh;
      CHECK(v == mv);
      CHECK(dsp::replay_verdict_code(v) != nullptr);

      // Decrypt out of place into an exact-size buffer, in place, and with a fresh EVP context.
      const size_t n = len - 16;
      std::unique_ptr<uint8_t[]> in(new uint8_t[n ? n : 1]);
      std::unique_ptr<uint8_t[]> out(new uint8_t[n ? n : 1]);
      std::unique_ptr<uint8_t[]> ref(new uint8_t[n ? n : 1]);
      if (n) std::memcpy(in.get(), d + 16, n);
      aes.crypt(d, in.get(), out.get(), n);
      EvpReference(key, d, d + 16, n, ref.get());
      CHECK(n == 0 || std::memcmp(out.get(), ref.get(), n) == 0);
      aes.crypt(d, in.get(), in.get(), n);
      CHECK(n == 0 || std::memcmp(in.get(), ref.get(), n) == 0);
      aes.crypt(d, in.get(), in.get(), n);  // CTR is its own inverse
      CHECK(n == 0 || std::memcmp(in.get(), d + 16, n) == 0);

      // "Valid Opus" stand-in: commit only some fresh packets, as the real path commits only packets
      // that decode; a refused one must leave the window alone.
      if (v == dsp::ReplayWindow::Verdict::kFresh && (n == 0 || (out[0] & 1))) {
        window.commit(h.sequence);
        model_last = h.sequence;
        model_started = true;
      }
      CHECK(window.last() == (model_started ? model_last : 0));
      CHECK(window.started() == model_started);
    }

    // Downlink: payload length and media clock taken from the datagram bytes.
    if (len >= 6) {
      const uint16_t plen = static_cast<uint16_t>((d[0] << 8) | d[1]);
      const uint32_t clock = Be32(d + 2);
      dsp::PacketHeader out;
      out.sequence = 0x5a5a5a5a;
      const bool ok = downlink.next(plen, clock, &out);
      uint32_t ts = clock;
      if (down_any && ts <= down_ts) ts = down_ts + 1;  // (down_ts < UINT32_MAX always holds here)
      const bool model_ok = down_seq != UINT32_MAX && ts != UINT32_MAX;
      CHECK(ok == model_ok);
      if (ok) {
        CHECK(out.type == nonce.type && out.flags == (nonce.flags ^ 1) && out.ssrc == nonce.ssrc);
        CHECK(out.payload_length == plen && out.sequence == down_seq + 1 && out.timestamp == ts);
        CHECK(!down_any || out.timestamp > down_ts);
        down_seq = out.sequence;
        down_ts = out.timestamp;
        down_any = true;
      } else {
        CHECK(out.sequence == 0x5a5a5a5a);  // refused (exhausted): nothing written, nothing consumed
      }
      CHECK(downlink.last_sequence() == down_seq && downlink.last_timestamp() == down_ts);
    }
  }
  return 0;
}
