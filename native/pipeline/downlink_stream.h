// Agent -> device: PCM chunks of any size (Int16 or Float32, at the agent's rate) -> Int16 ->
// resample to the device rate -> accumulate one frame (60 ms) -> optional silence gate -> Opus
// encode -> header with the downlink IV scheme (PROTOCOL.md §3.2) -> AES-CTR encrypt.
// A 60 ms frame is Opus-coded in 20 ms parts as its audio arrives (dsp::FramePartsEncoder), so the
// chunk that completes a frame waits for one part's coding, not the whole frame's.
// A flush item ends a speech turn: the resampler tail and the partial frame are padded and sent.
#pragma once

#include <cstdint>
#include <vector>

#include "dsp/aes_ctr.h"
#include "dsp/opus_codec.h"
#include "dsp/opus_frame_parts.h"
#include "dsp/packet.h"
#include "dsp/resampler.h"
#include "stream.h"

namespace xz::pipeline {

struct DownlinkConfig {
  uint8_t key[16] = {};
  uint8_t nonce[16] = {};
  int input_rate = 48000;   // what the agent delivers
  int frame_ms = 60;        // device frame (hello reply audio_params.frame_duration)
  dsp::OpusEncoderConfig encoder;  // sample_rate = device rate (24000)
  bool adaptive = true;     // follow the pipeline's encoder ladder under load
  int silence_threshold = 0;  // frames whose every |sample| <= this are not sent (0 = gate off)
};

class DownlinkStream final : public Stream {
 public:
  explicit DownlinkStream(const DownlinkConfig& config);
  bool is_uplink() const override { return false; }
  // Configured quality is CELT-only (used for the "restricted" default rungs and benchmarks).
  void force_celt_only() { encoder_.set_celt_only(true); base_celt_only_ = true; }
  void process(const InputItem& item, ProcessContext& ctx) override;
  Wake wake_for(const InputItem& item) override;
  void resync_prediction(const std::vector<InputItem>& ring, size_t head, size_t count) override;

 private:
  // Resampler output after `input` samples since its last reset: exactly ceil(input * L / M).
  uint64_t resampled_after(uint64_t input) const { return (input * up_ + down_ - 1) / down_; }
  uint64_t item_samples(const InputItem& item) const {
    return item.length / (item.format == SampleFormat::kF32 ? sizeof(float) : sizeof(int16_t));
  }
  void append_pcm(const int16_t* pcm, size_t n, const InputItem& item, ProcessContext& ctx);
  void code_ready_parts(ProcessContext& ctx);
  void encode_frame(const InputItem& item, uint32_t flags, ProcessContext& ctx);
  void apply_ladder(ProcessContext& ctx);

  DownlinkConfig config_;
  dsp::AesCtr aes_;
  dsp::Encoder encoder_;
  dsp::FramePartsEncoder parts_;    // codes encoder_'s frames part by part
  dsp::Resampler resampler_;
  dsp::DownlinkIvScheme iv_;
  size_t frame_samples_;
  std::vector<int16_t> converted_;  // a Float32 chunk converted to Int16
  std::vector<int16_t> resampled_;  // resampler output for one sub-chunk
  std::vector<int16_t> frame_;      // accumulator, frame_samples_ long
  size_t filled_ = 0;
  bool frame_loud_ = false;         // a sample of the frame so far is above the silence threshold
  uint64_t frame_encode_ns_ = 0;    // coding time of the frame's parts so far
  uint64_t media_ms_ = 0;           // audio time of the next frame
  int applied_level_ = 0;
  uint64_t up_, down_;              // resampler ratio L/M
  uint64_t wake_samples_;           // resampler output that gives the worker something to code
  uint64_t epoch_input_ = 0;        // worker side: samples fed to the resampler since its last reset
  uint64_t predicted_input_ = 0;    // main side: the same once every queued item is processed
  bool base_celt_only_ = false;
};

}  // namespace xz::pipeline
