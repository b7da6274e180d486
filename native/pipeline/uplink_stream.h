// Device -> agent: datagram -> header checks -> replay window -> AES-CTR decrypt (in place) -> Opus
// packet validation -> PLC/FEC for gaps -> Opus decode (16 kHz) -> resample to the output rate.
// The replay window only advances on a packet that decoded: a forged or corrupt packet changes no
// state, so it can neither lock the device out nor steer address binding (PROTOCOL.md §3.2).
// Datagrams from an address that has not proven itself are only probed: checked all the way to a
// well-formed Opus packet of the session's shape, reported, and never decoded or committed, so
// the gateway can require several consecutive genuine-looking packets before it binds an address.
#pragma once

#include <cstdint>
#include <vector>

#include "dsp/aes_ctr.h"
#include "dsp/opus_codec.h"
#include "dsp/packet.h"
#include "dsp/resampler.h"
#include "stream.h"

namespace xz::pipeline {

struct UplinkConfig {
  uint8_t key[16] = {};
  uint8_t nonce[16] = {};
  int decode_rate = 16000;      // the device's uplink rate (hello audio_params)
  int output_rate = 48000;      // what LiveKit sources want
  int frame_ms = 60;            // expected frame duration; other durations are rejected (0 = any)
  int max_concealed_frames = 3; // PLC/FEC fills gaps up to this many frames; longer gaps are left silent
  uint32_t max_sequence_jump = dsp::ReplayWindow::kDefaultMaxJump;
};

class UplinkStream final : public Stream {
 public:
  explicit UplinkStream(const UplinkConfig& config);
  bool is_uplink() const override { return true; }
  void process(const InputItem& item, ProcessContext& ctx) override;

 private:
  // Header, freshness, decryption and Opus shape; the payload is decrypted in place. Counts the
  // drop reason and returns false when the packet is not acceptable.
  bool check_packet(const InputItem& item, dsp::PacketHeader& h, int& samples, ProcessContext& ctx);
  void emit_pcm(const int16_t* pcm, int samples, const InputItem& item, uint32_t sequence, uint32_t flags,
                ProcessContext& ctx);

  UplinkConfig config_;
  dsp::AesCtr aes_;
  dsp::ReplayWindow window_;
  dsp::Decoder decoder_;
  dsp::Resampler resampler_;
  int expected_samples_;           // per frame at decode_rate (0 = any)
  std::vector<int16_t> decoded_;   // one decoded frame (max 120 ms at 48 kHz)
};

}  // namespace xz::pipeline
