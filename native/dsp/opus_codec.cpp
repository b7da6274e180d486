#include "opus_codec.h"

#include <opus.h>

#include <cstring>

#include "dsp_error.h"

#ifndef XZ_OPUS_SIMD
#define XZ_OPUS_SIMD "unknown"
#endif

namespace xz::dsp {
namespace {

// libopus's private "force mode" request (src/opus_private.h, unchanged since 1.0): not in the public
// headers, but it is the only way to switch an existing encoder to CELT-only without a new state.
constexpr int kOpusSetForceModeRequest = 11002;
constexpr int kOpusModeCeltOnly = 1002;

[[noreturn]] void config_error(const std::string& message) {
  throw DspError(ErrorKind::kRange, "ERR_OPUS_CONFIG", message);
}

int to_opus(OpusApplication a) {
  switch (a) {
    case OpusApplication::kVoip: return OPUS_APPLICATION_VOIP;
    case OpusApplication::kAudio: return OPUS_APPLICATION_AUDIO;
    case OpusApplication::kRestrictedLowDelay: return OPUS_APPLICATION_RESTRICTED_LOWDELAY;
  }
  return OPUS_APPLICATION_VOIP;
}

int to_opus(OpusBandwidth b) {
  switch (b) {
    case OpusBandwidth::kNarrow: return OPUS_BANDWIDTH_NARROWBAND;
    case OpusBandwidth::kMedium: return OPUS_BANDWIDTH_MEDIUMBAND;
    case OpusBandwidth::kWide: return OPUS_BANDWIDTH_WIDEBAND;
    case OpusBandwidth::kSuperWide: return OPUS_BANDWIDTH_SUPERWIDEBAND;
    case OpusBandwidth::kFull: return OPUS_BANDWIDTH_FULLBAND;
  }
  return OPUS_BANDWIDTH_FULLBAND;
}

int to_opus(OpusSignal s) {
  switch (s) {
    case OpusSignal::kAuto: return OPUS_AUTO;
    case OpusSignal::kVoice: return OPUS_SIGNAL_VOICE;
    case OpusSignal::kMusic: return OPUS_SIGNAL_MUSIC;
  }
  return OPUS_AUTO;
}

void check_channels(int channels) {
  if (channels != 1 && channels != 2) {
    config_error("channels must be 1 or 2, got " + std::to_string(channels));
  }
}

void check_rate(int rate) {
  if (!valid_opus_rate(rate)) {
    config_error("sampleRate must be one of 8000, 12000, 16000, 24000, 48000, got " + std::to_string(rate));
  }
}

}  // namespace

std::string opus_version() { return opus_get_version_string(); }
const char* opus_simd_summary() { return XZ_OPUS_SIMD; }

bool valid_opus_rate(int rate) {
  return rate == 8000 || rate == 12000 || rate == 16000 || rate == 24000 || rate == 48000;
}

bool valid_opus_frame(int sample_rate, int samples_per_channel) {
  if (!valid_opus_rate(sample_rate) || samples_per_channel <= 0) return false;
  // 2.5 ms is rate/400 samples; the valid sizes are 1, 2, 4, 8, 16 and 24 times that.
  const int unit = sample_rate / 400;
  if (samples_per_channel % unit != 0) return false;
  const int k = samples_per_channel / unit;
  return k == 1 || k == 2 || k == 4 || k == 8 || k == 16 || k == 24;
}

Encoder::Encoder(const OpusEncoderConfig& config) : st_(nullptr), config_(config) {
  check_rate(config.sample_rate);
  check_channels(config.channels);
  if (config.bitrate != -1 && (config.bitrate < 500 || config.bitrate > 512000)) {
    config_error("bitrate must be in [500, 512000] bits/s (or omitted for the default), got " +
                 std::to_string(config.bitrate));
  }
  if (config.complexity < 0 || config.complexity > 10) {
    config_error("complexity must be an integer in [0, 10], got " + std::to_string(config.complexity));
  }
  if (config.packet_loss_percent < 0 || config.packet_loss_percent > 100) {
    config_error("packetLossPercent must be in [0, 100], got " + std::to_string(config.packet_loss_percent));
  }
  int err = OPUS_OK;
  st_ = opus_encoder_create(config.sample_rate, config.channels, to_opus(config.application), &err);
  if (err != OPUS_OK || !st_) {
    throw DspError(ErrorKind::kInternal, "ERR_OPUS_CONFIG", std::string("opus_encoder_create: ") + opus_strerror(err));
  }
  try {
    apply(OPUS_SET_BITRATE_REQUEST, config.bitrate == -1 ? OPUS_AUTO : config.bitrate, "bitrate");
    apply(OPUS_SET_COMPLEXITY_REQUEST, config.complexity, "complexity");
    apply(OPUS_SET_VBR_REQUEST, config.vbr ? 1 : 0, "vbr");
    apply(OPUS_SET_VBR_CONSTRAINT_REQUEST, config.vbr_constraint ? 1 : 0, "vbrConstraint");
    apply(OPUS_SET_INBAND_FEC_REQUEST, config.inband_fec ? 1 : 0, "inbandFec");
    apply(OPUS_SET_PACKET_LOSS_PERC_REQUEST, config.packet_loss_percent, "packetLossPercent");
    apply(OPUS_SET_DTX_REQUEST, config.dtx ? 1 : 0, "dtx");
    apply(OPUS_SET_MAX_BANDWIDTH_REQUEST, to_opus(config.max_bandwidth), "maxBandwidth");
    apply(OPUS_SET_SIGNAL_REQUEST, to_opus(config.signal), "signal");
  } catch (...) {
    opus_encoder_destroy(st_);
    throw;
  }
}

Encoder::~Encoder() { opus_encoder_destroy(st_); }

void Encoder::apply(int request, int value, const char* what) {
  const int rc = opus_encoder_ctl(st_, request, value);
  if (rc != OPUS_OK) {
    throw DspError(ErrorKind::kRange, "ERR_OPUS_CONFIG",
                   std::string("libopus rejected ") + what + "=" + std::to_string(value) + ": " + opus_strerror(rc));
  }
}

size_t Encoder::encode(const int16_t* pcm, int samples_per_channel, uint8_t* out, size_t out_capacity) {
  if (!valid_opus_frame(config_.sample_rate, samples_per_channel)) {
    throw DspError(ErrorKind::kRange, "ERR_OPUS_FRAME",
                   "frame of " + std::to_string(samples_per_channel) + " samples per channel is not 2.5, 5, 10, "
                   "20, 40 or 60 ms at " + std::to_string(config_.sample_rate) + " Hz");
  }
  const int cap = out_capacity > kOpusMaxPacket ? static_cast<int>(kOpusMaxPacket) : static_cast<int>(out_capacity);
  const opus_int32 n = opus_encode(st_, pcm, samples_per_channel, out, cap);
  if (n < 0) throw DspError(ErrorKind::kInternal, "ERR_OPUS_ENCODE", std::string("opus_encode: ") + opus_strerror(n));
  return static_cast<size_t>(n);
}

void Encoder::set_complexity(int complexity) {
  if (complexity < 0 || complexity > 10) {
    config_error("complexity must be an integer in [0, 10], got " + std::to_string(complexity));
  }
  apply(OPUS_SET_COMPLEXITY_REQUEST, complexity, "complexity");
  config_.complexity = complexity;
}

void Encoder::set_bitrate(int bitrate) {
  if (bitrate != -1 && (bitrate < 500 || bitrate > 512000)) {
    config_error("bitrate must be in [500, 512000] bits/s, got " + std::to_string(bitrate));
  }
  apply(OPUS_SET_BITRATE_REQUEST, bitrate == -1 ? OPUS_AUTO : bitrate, "bitrate");
  config_.bitrate = bitrate;
}

void Encoder::set_celt_only(bool celt_only) {
  apply(kOpusSetForceModeRequest, celt_only ? kOpusModeCeltOnly : OPUS_AUTO, "forceMode");
  celt_only_ = celt_only;
}

void Encoder::reset() { opus_encoder_ctl(st_, OPUS_RESET_STATE); }

size_t Encoder::state_size() const { return static_cast<size_t>(opus_encoder_get_size(config_.channels)); }
void Encoder::save_state(uint8_t* to) const { std::memcpy(to, st_, state_size()); }
void Encoder::restore_state(const uint8_t* from) { std::memcpy(st_, from, state_size()); }

int opus_packet_samples(const uint8_t* packet, size_t length, int sample_rate) {
  if (!packet || length == 0 || length > kOpusMaxPacket) return -1;
  // opus_packet_parse checks the whole framing (frame count, sizes, padding), not just the TOC byte.
  unsigned char toc = 0;
  const unsigned char* frames[48];
  opus_int16 sizes[48];
  if (opus_packet_parse(packet, static_cast<opus_int32>(length), &toc, frames, sizes, nullptr) <= 0) return -1;
  const int n = opus_packet_get_nb_samples(packet, static_cast<opus_int32>(length), sample_rate);
  return n > 0 ? n : -1;
}

int opus_packet_channels(const uint8_t* packet, size_t length) {
  if (!packet || length == 0) return -1;
  return opus_packet_get_nb_channels(packet);
}

Decoder::Decoder(int sample_rate, int channels)
    : st_(nullptr), sample_rate_(sample_rate), channels_(channels), last_frame_(sample_rate / 50) {
  check_rate(sample_rate);
  check_channels(channels);
  int err = OPUS_OK;
  st_ = opus_decoder_create(sample_rate, channels, &err);
  if (err != OPUS_OK || !st_) {
    throw DspError(ErrorKind::kInternal, "ERR_OPUS_CONFIG", std::string("opus_decoder_create: ") + opus_strerror(err));
  }
}

Decoder::~Decoder() { opus_decoder_destroy(st_); }

int Decoder::frame_or_last(int samples_per_channel) const {
  if (samples_per_channel == 0) return last_frame_;
  if (!valid_opus_frame(sample_rate_, samples_per_channel)) {
    throw DspError(ErrorKind::kRange, "ERR_OPUS_FRAME",
                   "frame of " + std::to_string(samples_per_channel) + " samples per channel is not 2.5, 5, 10, "
                   "20, 40 or 60 ms at " + std::to_string(sample_rate_) + " Hz");
  }
  return samples_per_channel;
}

int Decoder::decode(const uint8_t* packet, size_t length, int16_t* out, int capacity_per_channel) {
  if (length == 0 || length > kOpusMaxPacket) {
    throw DspError(ErrorKind::kRange, "ERR_OPUS_DECODE",
                   "Opus packet length must be in [1, " + std::to_string(kOpusMaxPacket) + "], got " + std::to_string(length));
  }
  const int n = opus_decode(st_, packet, static_cast<opus_int32>(length), out, capacity_per_channel, 0);
  if (n < 0) throw DspError(ErrorKind::kRange, "ERR_OPUS_DECODE", std::string("corrupt Opus packet: ") + opus_strerror(n));
  last_frame_ = n;
  return n;
}

int Decoder::conceal(int samples_per_channel, int16_t* out, int capacity_per_channel) {
  const int frame = frame_or_last(samples_per_channel);
  if (frame > capacity_per_channel) {
    throw DspError(ErrorKind::kRange, "ERR_OPUS_FRAME", "output too small for the concealed frame");
  }
  const int n = opus_decode(st_, nullptr, 0, out, frame, 0);
  if (n < 0) throw DspError(ErrorKind::kInternal, "ERR_OPUS_DECODE", std::string("opus PLC: ") + opus_strerror(n));
  return n;
}

int Decoder::decode_fec(const uint8_t* packet, size_t length, int samples_per_channel, int16_t* out,
                        int capacity_per_channel) {
  const int frame = frame_or_last(samples_per_channel);
  if (frame > capacity_per_channel) {
    throw DspError(ErrorKind::kRange, "ERR_OPUS_FRAME", "output too small for the recovered frame");
  }
  if (length == 0 || length > kOpusMaxPacket) {
    throw DspError(ErrorKind::kRange, "ERR_OPUS_DECODE", "Opus packet length must be in [1, 4000]");
  }
  const int n = opus_decode(st_, packet, static_cast<opus_int32>(length), out, frame, 1);
  if (n < 0) throw DspError(ErrorKind::kRange, "ERR_OPUS_DECODE", std::string("corrupt Opus packet: ") + opus_strerror(n));
  return n;
}

void Decoder::reset() { opus_decoder_ctl(st_, OPUS_RESET_STATE); }

}  // namespace xz::dsp
