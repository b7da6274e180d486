// libFuzzer target: hostile bytes into xz::dsp::Decoder (decode, decode_fec, conceal) at the
// protocol's rates, 16 kHz (uplink) and 24 kHz (downlink), mono and stereo. Every output buffer is a
// heap block of exactly the capacity passed in, so a write past it is an ASan report. Results are
// checked: a decode returns a legal Opus duration that fits the buffer, and the only exceptions are
// DspError with ERR_OPUS_DECODE or ERR_OPUS_FRAME (anything else escapes and is reported as a crash).
//
// Input layout:
//   [0]    bit 0: 16 kHz / 24 kHz; bit 1: stereo
//   then operations, each: op byte, capacity byte, frame byte, 2-byte big-endian length L, L bytes
//     op & 3: 0, 1 = decode, 2 = decode_fec, 3 = conceal; op & 0x80 also resets the decoder first
//     capacity byte picks the output capacity per channel (table below, or a raw value)
//     frame byte picks samples_per_channel for decode_fec/conceal (0 = last frame size)
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>

#include "../dsp/dsp_error.h"
#include "../dsp/opus_codec.h"

namespace dsp = xz::dsp;

namespace {

[[noreturn]] void Fail(const char* what) {
  std::fprintf(stderr, "opus_decode_fuzz invariant violated: %s\n", what);
  std::abort();
}

#define CHECK(cond)             \
  do {                          \
    if (!(cond)) Fail(#cond);   \
  } while (0)

bool LegalDuration(int rate, int n) {
  // Opus packets carry 2.5 ms .. 120 ms in multiples of 2.5 ms.
  const int unit = rate / 400;
  return n > 0 && n % unit == 0 && n <= rate * 120 / 1000;
}

void ExpectCode(const dsp::DspError& e) {
  const bool known = std::strcmp(e.code(), "ERR_OPUS_DECODE") == 0 || std::strcmp(e.code(), "ERR_OPUS_FRAME") == 0;
  if (!known) {
    std::fprintf(stderr, "unexpected DspError code %s: %s\n", e.code(), e.what());
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const int rate = (data[0] & 1) ? 24000 : 16000;
  const int channels = (data[0] & 2) ? 2 : 1;
  dsp::Decoder decoder(rate, channels);
  CHECK(decoder.last_frame_samples() == rate / 50);

  const int unit = rate / 400;
  const int capacities[] = {0, 1, unit, 2 * unit, 4 * unit, 8 * unit, 16 * unit, 24 * unit, 24 * unit - 1,
                            32 * unit, 40 * unit, 48 * unit, dsp::kOpusMaxFrameSamples, 48 * unit - 1, 7, 9};
  const int frames[] = {0, unit, 2 * unit, 4 * unit, 8 * unit, 16 * unit, 24 * unit, 48 * unit, 3, -unit};

  size_t pos = 1;
  int ops = 0;
  while (pos + 5 <= size && ops < 64) {
    ++ops;
    const uint8_t op = data[pos];
    const uint8_t cap_sel = data[pos + 1];
    const uint8_t frame_sel = data[pos + 2];
    size_t len = (size_t{data[pos + 3]} << 8) | data[pos + 4];
    pos += 5;
    if (len > size - pos) len = size - pos;
    // An exact-size copy of the packet: any over-read is an ASan report.
    std::unique_ptr<uint8_t[]> packet(new uint8_t[len ? len : 1]);
    if (len) std::memcpy(packet.get(), data + pos, len);
    pos += len;

    const int capacity = (cap_sel & 0x80) ? (cap_sel & 0x7f) * unit / 2 + (cap_sel & 1)
                                          : capacities[cap_sel % (sizeof capacities / sizeof capacities[0])];
    const int frame = frames[frame_sel % (sizeof frames / sizeof frames[0])];
    std::unique_ptr<int16_t[]> out(new int16_t[capacity > 0 ? static_cast<size_t>(capacity) * channels : 1]);

    if (op & 0x80) {
      decoder.reset();
    }
    const int last_before = decoder.last_frame_samples();
    try {
      switch (op & 3) {
        case 0:
        case 1: {
          const int n = decoder.decode(packet.get(), len, out.get(), capacity);
          CHECK(LegalDuration(rate, n));
          CHECK(n <= capacity);
          CHECK(decoder.last_frame_samples() == n);
          break;
        }
        case 2: {
          const int n = decoder.decode_fec(packet.get(), len, frame, out.get(), capacity);
          CHECK(LegalDuration(rate, n));
          CHECK(n <= capacity);
          CHECK(n == (frame == 0 ? last_before : frame));
          CHECK(decoder.last_frame_samples() == last_before);
          break;
        }
        case 3: {
          const int n = decoder.conceal(frame, out.get(), capacity);
          CHECK(LegalDuration(rate, n));
          CHECK(n <= capacity);
          CHECK(n == (frame == 0 ? last_before : frame));
          CHECK(decoder.last_frame_samples() == last_before);
          break;
        }
      }
    } catch (const dsp::DspError& e) {
      ExpectCode(e);
      CHECK(decoder.last_frame_samples() == last_before);  // a refused call changes nothing visible
    }
  }
  return 0;
}
