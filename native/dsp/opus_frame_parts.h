// Codes a 40 or 60 ms Opus frame in 20 ms parts, each as soon as its audio is there, so that when a
// frame's last audio arrives only its last part is left to code: the frame's latency is one part's
// coding time instead of the whole frame's.
//
// This is how libopus itself codes hybrid and CELT frames longer than 20 ms
// (encode_multiframe_packet in opus_encoder.c): it codes 20 ms frames and joins them with its
// repacketizer into one packet (code 3). Here the parts are coded as the audio arrives rather than
// all at once, with libopus's own 20 ms decisions (mode, bandwidth, channels) for each part. When
// the parts cannot form one packet — libopus changed mode, bandwidth or channels between them (its
// decisions have hysteresis: this is rare), or chose SILK-only, which codes 40/60 ms natively —
// the encoder state saved before the first part is restored and the frame is coded whole, exactly
// as Encoder::encode() would have coded it. While the stream stays SILK-only, frames are coded
// whole from the start (no parts are wasted).
//
// Frames of 20 ms or less, and CBR encoders (whose packets libopus pads to a fixed size), are
// always coded whole.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "opus_codec.h"

struct OpusRepacketizer;

namespace xz::dsp {

class FramePartsEncoder {
 public:
  // `encoder` must outlive this object; `frame_samples` per channel, a valid Opus frame size;
  // `packet_capacity`: the size of the buffer finish() writes to (parts get the share of it libopus
  // would give them).
  FramePartsEncoder(Encoder& encoder, int frame_samples, size_t packet_capacity);
  ~FramePartsEncoder();
  FramePartsEncoder(const FramePartsEncoder&) = delete;
  FramePartsEncoder& operator=(const FramePartsEncoder&) = delete;

  // 1 when frames are always coded whole.
  int parts() const { return parts_; }
  int part_samples() const { return part_samples_; }
  // Parts of the current frame coded so far.
  int coded() const { return coded_; }
  // How the last finished frame was coded.
  enum class Outcome { kWhole, kParts, kRecodedWhole /* parts were coded, then undone */ };
  Outcome last_outcome() const { return last_outcome_; }

  // Codes the frame's parts whose audio is complete: `frame` holds the frame's first `filled`
  // samples per channel (interleaved). Returns whether anything was coded.
  bool code_ready_parts(const int16_t* frame, size_t filled);
  // `frame` is complete: codes what is left and writes the frame's packet. Returns its size.
  // Throws ERR_OPUS_ENCODE (the frame is forgotten; the encoder stays usable).
  size_t finish(const int16_t* frame, uint8_t* out);
  // Forgets a frame in progress (the caller also resets the encoder: barge-in).
  void abandon() { coded_ = 0; whole_ = false; }

 private:
  bool code_part(const int16_t* frame);
  size_t code_whole(const int16_t* frame, uint8_t* out);

  Encoder& enc_;
  int frame_samples_;
  int part_samples_;
  int parts_;
  size_t packet_capacity_;
  int coded_ = 0;
  bool whole_ = false;         // this frame's parts cannot be joined: code it whole at the end
  bool silk_only_ = false;     // the last packet was SILK-only: code whole from the start
  uint8_t toc_ = 0;            // the first part's TOC byte
  Outcome last_outcome_ = Outcome::kWhole;
  size_t part_capacity_ = 0;
  std::vector<uint8_t> saved_;      // encoder state before the frame's first part
  std::vector<uint8_t> part_data_;  // parts_ * part_capacity_
  std::vector<int> part_len_;
  OpusRepacketizer* rp_ = nullptr;  // reused for every frame (no allocation per frame)
};

}  // namespace xz::dsp
