#include "opus_frame_parts.h"

#include <opus.h>

#include <algorithm>

#include "dsp_error.h"

namespace xz::dsp {
namespace {

// TOC configurations 0..11 are SILK-only (RFC 6716 §3.1).
bool silk_only_toc(uint8_t toc) { return (toc >> 3) < 12; }

}  // namespace

FramePartsEncoder::FramePartsEncoder(Encoder& encoder, int frame_samples, size_t packet_capacity)
    : enc_(encoder),
      frame_samples_(frame_samples),
      part_samples_(frame_samples),
      parts_(1),
      packet_capacity_(std::min(packet_capacity, kOpusMaxPacket)) {
  const int twenty_ms = encoder.config().sample_rate / 50;
  if (encoder.config().vbr && frame_samples > twenty_ms && frame_samples % twenty_ms == 0) {
    parts_ = frame_samples / twenty_ms;
    part_samples_ = twenty_ms;
    // The share of the packet libopus gives each frame of a multi-frame packet: what is left after
    // the worst-case code 2/3 header, split evenly, at most one frame's maximum.
    const size_t header = parts_ == 2 ? 3 : 2 + static_cast<size_t>(parts_ - 1) * 2;
    part_capacity_ = std::min<size_t>(1276, 1 + (packet_capacity_ - std::min(packet_capacity_, header)) / parts_);
    saved_.resize(encoder.state_size());
    part_data_.resize(part_capacity_ * static_cast<size_t>(parts_));
    part_len_.resize(static_cast<size_t>(parts_));
    rp_ = opus_repacketizer_create();
    if (!rp_) throw DspError(ErrorKind::kInternal, "ERR_OPUS_CONFIG", "opus_repacketizer_create failed");
  }
}

FramePartsEncoder::~FramePartsEncoder() {
  if (rp_) opus_repacketizer_destroy(rp_);
}

bool FramePartsEncoder::code_part(const int16_t* frame) {
  const int k = coded_;
  if (k == 0) enc_.save_state(saved_.data());
  uint8_t* dst = part_data_.data() + static_cast<size_t>(k) * part_capacity_;
  const int16_t* pcm = frame + static_cast<size_t>(k) * static_cast<size_t>(part_samples_) * static_cast<size_t>(enc_.config().channels);
  ++coded_;
  try {
    part_len_[static_cast<size_t>(k)] = static_cast<int>(enc_.encode(pcm, part_samples_, dst, part_capacity_));
  } catch (const DspError&) {
    whole_ = true;  // finish() restores the state and codes the frame whole (and reports a failure)
    return false;
  }
  if (k == 0) {
    toc_ = dst[0];
    // SILK codes 40/60 ms natively (one SILK packet, cheaper than 20 ms parts): code it whole.
    if (silk_only_toc(toc_)) whole_ = true;
  } else if ((dst[0] ^ toc_) & 0xFC) {
    whole_ = true;  // mode, bandwidth or channels changed within the frame: one packet cannot hold both
  }
  return true;
}

bool FramePartsEncoder::code_ready_parts(const int16_t* frame, size_t filled) {
  if (parts_ == 1 || silk_only_ || whole_) return false;
  // The last part is coded by finish(), once the frame is complete.
  const int ready = std::min(parts_ - 1, static_cast<int>(filled / static_cast<size_t>(part_samples_)));
  bool any = false;
  while (coded_ < ready && !whole_) any = code_part(frame) || any;
  return any;
}

size_t FramePartsEncoder::code_whole(const int16_t* frame, uint8_t* out) {
  return enc_.encode(frame, frame_samples_, out, packet_capacity_);
}

size_t FramePartsEncoder::finish(const int16_t* frame, uint8_t* out) {
  struct NextFrame {  // whatever happens below, the next frame starts afresh
    FramePartsEncoder& self;
    ~NextFrame() { self.coded_ = 0; self.whole_ = false; }
  } next{*this};
  size_t n = 0;
  last_outcome_ = Outcome::kWhole;
  if (parts_ == 1 || silk_only_) {
    n = code_whole(frame, out);
  } else {
    while (coded_ < parts_ && !whole_) code_part(frame);
    bool joined = false;
    if (!whole_) {
      OpusRepacketizer* rp = opus_repacketizer_init(rp_);
      joined = true;
      for (int k = 0; k < parts_ && joined; ++k) {
        joined = opus_repacketizer_cat(rp, part_data_.data() + static_cast<size_t>(k) * part_capacity_,
                                       part_len_[static_cast<size_t>(k)]) == OPUS_OK;
      }
      if (joined) {
        const opus_int32 r = opus_repacketizer_out(rp, out, static_cast<opus_int32>(packet_capacity_));
        joined = r > 0;
        if (joined) n = static_cast<size_t>(r);
      }
    }
    if (joined) {
      last_outcome_ = Outcome::kParts;
    } else {
      last_outcome_ = Outcome::kRecodedWhole;
      enc_.restore_state(saved_.data());
      n = code_whole(frame, out);
    }
  }
  silk_only_ = n > 0 && silk_only_toc(out[0]);
  return n;
}

}  // namespace xz::dsp
