#include "downlink_stream.h"

#include <algorithm>
#include <cstring>
#include <cstdlib>

#include "dsp/convert.h"
#include "dsp/dsp_error.h"

namespace xz::pipeline {
namespace {
// Input is resampled in sub-chunks of this many samples so every scratch buffer has a fixed size.
constexpr size_t kSubChunk = 1024;
}  // namespace

DownlinkStream::DownlinkStream(const DownlinkConfig& config)
    : config_(config),
      aes_(config.key),
      encoder_(config.encoder),
      parts_(encoder_, static_cast<int>(config.encoder.sample_rate / 1000 * config.frame_ms),
             dsp::kMaxDatagramSize - dsp::kPacketHeaderSize),
      resampler_(config.input_rate, config.encoder.sample_rate),
      iv_(config.nonce),
      frame_samples_(static_cast<size_t>(config.encoder.sample_rate / 1000 * config.frame_ms)),
      converted_(Pools::kPcmSlab / sizeof(int16_t)),
      resampled_(resampler_.max_output(kSubChunk) + static_cast<size_t>(resampler_.max_flush())),
      frame_(frame_samples_),
      up_(static_cast<uint64_t>(resampler_.up_factor())),
      down_(static_cast<uint64_t>(resampler_.down_factor())),
      wake_samples_(static_cast<uint64_t>(parts_.part_samples())) {
  if (!dsp::valid_opus_frame(config.encoder.sample_rate, static_cast<int>(frame_samples_))) {
    throw dsp::DspError(dsp::ErrorKind::kRange, "ERR_PIPELINE_CONFIG",
                        "downlink frame of " + std::to_string(config.frame_ms) + " ms is not a valid Opus frame");
  }
}

void DownlinkStream::apply_ladder(ProcessContext& ctx) {
  if (!config_.adaptive || ctx.ladder_level == applied_level_) return;
  // Level 0 is this stream's configured quality; level k >= 1 is rung k-1 of the ladder.
  if (ctx.ladder_level == 0) {
    encoder_.set_complexity(config_.encoder.complexity);
    encoder_.set_celt_only(base_celt_only_);
    encoder_.set_bitrate(config_.encoder.bitrate);
  } else {
    const EncoderRung& rung = ctx.ladder.rung(ctx.ladder_level - 1);
    encoder_.set_complexity(rung.complexity);
    encoder_.set_celt_only(rung.celt_only);
    encoder_.set_bitrate(rung.bitrate != 0 ? rung.bitrate : config_.encoder.bitrate);
  }
  applied_level_ = ctx.ladder_level;
}

void DownlinkStream::encode_frame(const InputItem& item, uint32_t flags, ProcessContext& ctx) {
  MetricsBlock& m = ctx.metrics;
  const uint32_t ts = static_cast<uint32_t>(media_ms_);
  media_ms_ += static_cast<uint64_t>(config_.frame_ms);
  const uint64_t parts_ns = frame_encode_ns_;
  frame_encode_ns_ = 0;
  const bool loud = frame_loud_;
  frame_loud_ = false;
  if (config_.silence_threshold > 0 && !loud) {
    m.add(kDropSilence);  // no part of it was coded (parts of a silent frame so far wait, see code_ready_parts)
    return;
  }
  if (parts_.coded() == 0) apply_ladder(ctx);  // settings change between frames, never within one
  dsp::PooledBuffer out(ctx.pools.datagram);
  const uint64_t t0 = now_ns();
  const size_t n = parts_.finish(frame_.data(), out.data() + dsp::kPacketHeaderSize);
  m.observe(kHistDownEncode, parts_ns + (now_ns() - t0));
  if (parts_.last_outcome() == dsp::FramePartsEncoder::Outcome::kParts) m.add(kDownFramesInParts);
  if (parts_.last_outcome() == dsp::FramePartsEncoder::Outcome::kRecodedWhole) m.add(kDownFramesRecoded);
  if (n + dsp::kPacketHeaderSize > dsp::kMaxDatagramSize) {
    m.add(kDropDecode);  // cannot happen (the encoder's capacity is the datagram's); never send an oversize one
    return;
  }
  dsp::PacketHeader h;
  if (!iv_.next(static_cast<uint16_t>(n), ts, &h)) {
    throw dsp::DspError(dsp::ErrorKind::kState, "ERR_IV_EXHAUSTED", "downlink IV space exhausted: re-key the session");
  }
  dsp::write_header(h, out.data());
  const uint64_t t1 = now_ns();
  aes_.crypt(out.data(), out.data() + dsp::kPacketHeaderSize, out.data() + dsp::kPacketHeaderSize, n);
  m.observe(kHistDownEncrypt, now_ns() - t1);

  Result r = result_for(item, ResultKind::kDownlinkDatagram);
  r.flags = flags;
  r.pool = &ctx.pools.datagram;
  r.slab = out.release_ownership();
  r.length = static_cast<uint32_t>(n + dsp::kPacketHeaderSize);
  r.sequence = h.sequence;
  r.timestamp = h.timestamp;
  ctx.results.push_back(r);
  m.add(kDownFramesOut);
  m.add(kDownBytesOut, r.length);
}

void DownlinkStream::code_ready_parts(ProcessContext& ctx) {
  // With the silence gate on, a frame silent so far may yet be dropped whole: its parts wait.
  if (config_.silence_threshold > 0 && !frame_loud_) return;
  if (parts_.coded() == 0 && filled_ >= static_cast<size_t>(parts_.part_samples())) apply_ladder(ctx);
  const uint64_t t0 = now_ns();
  if (parts_.code_ready_parts(frame_.data(), filled_)) frame_encode_ns_ += now_ns() - t0;
}

void DownlinkStream::append_pcm(const int16_t* pcm, size_t n, const InputItem& item, ProcessContext& ctx) {
  const int threshold = config_.silence_threshold;
  while (n > 0) {
    const size_t take = std::min(n, frame_samples_ - filled_);
    std::memcpy(frame_.data() + filled_, pcm, take * sizeof(int16_t));
    for (size_t i = 0; i < take && threshold > 0 && !frame_loud_; ++i) frame_loud_ = std::abs(int{pcm[i]}) > threshold;
    filled_ += take;
    pcm += take;
    n -= take;
    if (filled_ == frame_samples_) {
      filled_ = 0;  // first: a frame that fails to code must not stay full (the next append would spin)
      encode_frame(item, 0, ctx);
    } else if (parts_.parts() > 1) {
      code_ready_parts(ctx);
    }
  }
}

void DownlinkStream::process(const InputItem& item, ProcessContext& ctx) {
  MetricsBlock& m = ctx.metrics;
  switch (item.kind) {
    case ItemKind::kReset:
      // Forget everything of the interrupted turn, including the encoder's lookahead.
      filled_ = 0;
      frame_loud_ = false;
      frame_encode_ns_ = 0;
      epoch_input_ = 0;
      resampler_.reset();
      encoder_.reset();
      parts_.abandon();
      return;
    case ItemKind::kFlush: {
      uint64_t t0 = now_ns();
      const size_t tail = resampler_.flush(resampled_.data(), resampled_.size());  // resets it
      epoch_input_ = 0;
      m.observe(kHistDownResample, now_ns() - t0);
      append_pcm(resampled_.data(), tail, item, ctx);
      if (filled_ > 0) {
        std::fill(frame_.begin() + static_cast<std::ptrdiff_t>(filled_), frame_.end(), int16_t{0});
        filled_ = 0;
        encode_frame(item, 0, ctx);
      }
      // Report the end of the turn so the sender can schedule `tts stop` after the last datagram
      // (the scheduler marks that datagram kResultLastOfTurn if it is not delivered yet).
      ctx.results.push_back(result_for(item, ResultKind::kDownlinkTurnEnd));
      return;
    }
    case ItemKind::kData: break;
    case ItemKind::kProbe: return;  // uplink only
  }
  m.add(kDownFramesIn);
  m.add(kDownBytesIn, item.length);
  const int16_t* s16;
  size_t samples;
  if (item.format == SampleFormat::kF32) {
    samples = item.length / sizeof(float);
    const uint64_t t0 = now_ns();
    dsp::f32_to_s16(reinterpret_cast<const float*>(item.slab), converted_.data(), samples);
    m.observe(kHistDownConvert, now_ns() - t0);
    s16 = converted_.data();
  } else {
    samples = item.length / sizeof(int16_t);
    s16 = reinterpret_cast<const int16_t*>(item.slab);
  }
  epoch_input_ += samples;
  while (samples > 0) {
    const size_t take = std::min(samples, kSubChunk);
    const uint64_t t0 = now_ns();
    const size_t n = resampler_.process(s16, take, resampled_.data(), resampled_.size());
    m.observe(kHistDownResample, now_ns() - t0);
    append_pcm(resampled_.data(), n, item, ctx);
    s16 += take;
    samples -= take;
  }
}

Stream::Wake DownlinkStream::wake_for(const InputItem& item) {
  if (item.kind != ItemKind::kData) {
    predicted_input_ = 0;  // flush and reset restart the resampler (and the frame)
    return Wake::kUrgent;
  }
  // The frame fills with resampler output from its last reset on: a frame completes when the
  // output count crosses a multiple of the frame length, and a part of it (coded as soon as its
  // audio is there) at multiples of the part length.
  const uint64_t before = resampled_after(predicted_input_);
  predicted_input_ += item_samples(item);
  const uint64_t after = resampled_after(predicted_input_);
  if (after / frame_samples_ != before / frame_samples_) return Wake::kUrgent;
  return after / wake_samples_ != before / wake_samples_ ? Wake::kAhead : Wake::kRide;
}

void DownlinkStream::resync_prediction(const std::vector<InputItem>& ring, size_t head, size_t count) {
  uint64_t total = epoch_input_;
  for (size_t i = 0; i < count; ++i) {
    const InputItem& item = ring[(head + i) % ring.size()];
    total = item.kind == ItemKind::kData ? total + item_samples(item) : 0;
  }
  predicted_input_ = total;
}

}  // namespace xz::pipeline
