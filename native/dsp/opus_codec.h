// Thin, validated C++ wrappers over libopus (compiled into the addon from the pinned source tree).
// Each Encoder/Decoder owns its libopus state; one stream's frames must be coded in order and never
// on two threads at once (the pipeline guarantees it).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

struct OpusEncoder;
struct OpusDecoder;

namespace xz::dsp {

enum class OpusApplication { kVoip, kAudio, kRestrictedLowDelay };
enum class OpusBandwidth { kNarrow, kMedium, kWide, kSuperWide, kFull };
enum class OpusSignal { kAuto, kVoice, kMusic };

struct OpusEncoderConfig {
  int sample_rate = 24000;  // 8000, 12000, 16000, 24000 or 48000
  int channels = 1;         // 1 or 2
  OpusApplication application = OpusApplication::kVoip;
  int bitrate = -1;         // bits/s in [500, 512000]; -1 = libopus default for the mode
  int complexity = 10;      // 0..10
  bool vbr = true;
  bool vbr_constraint = true;  // constrained VBR (libopus default)
  bool inband_fec = false;
  int packet_loss_percent = 0;  // 0..100, tunes FEC
  bool dtx = false;
  OpusBandwidth max_bandwidth = OpusBandwidth::kFull;
  OpusSignal signal = OpusSignal::kAuto;
};

// Largest packet libopus can produce for one frame (RFC 6716 limit for a 120 ms frame is 1275 * 6).
constexpr size_t kOpusMaxPacket = 4000;
// Largest decoded frame: 120 ms at 48 kHz, per channel.
constexpr int kOpusMaxFrameSamples = 5760;

std::string opus_version();       // "libopus 1.5.2"
const char* opus_simd_summary();  // what SIMD the libopus build carries, from the build system
bool valid_opus_rate(int rate);
// True when samples_per_channel is 2.5/5/10/20/40/60 ms at sample_rate.
bool valid_opus_frame(int sample_rate, int samples_per_channel);
// Samples per channel the packet decodes to at sample_rate, or -1 if its TOC/framing is invalid.
// Cheap (no decoding): used to reject garbage before it touches decoder state.
int opus_packet_samples(const uint8_t* packet, size_t length, int sample_rate);
// Channels coded in the packet's TOC byte (1 or 2), or -1 for an empty packet.
int opus_packet_channels(const uint8_t* packet, size_t length);

class Encoder {
 public:
  explicit Encoder(const OpusEncoderConfig& config);  // throws DspError (ERR_OPUS_CONFIG)
  ~Encoder();
  Encoder(const Encoder&) = delete;
  Encoder& operator=(const Encoder&) = delete;

  // pcm holds samples_per_channel * channels interleaved samples. Returns the packet size (>= 1;
  // with DTX a 1- or 2-byte packet means silence). Throws ERR_OPUS_FRAME for an invalid frame size,
  // ERR_OPUS_ENCODE if libopus fails.
  size_t encode(const int16_t* pcm, int samples_per_channel, uint8_t* out, size_t out_capacity);
  // Runtime tuning (the adaptive ladder): these take effect from the next frame.
  void set_complexity(int complexity);
  void set_bitrate(int bitrate);
  // Forces CELT-only coding (cheapest mode, ~4x less CPU than hybrid at 24 kHz) or returns to the
  // application's automatic mode choice. libopus codes one more frame in the old mode while it
  // switches; the decoder follows mode switches within the stream.
  void set_celt_only(bool celt_only);
  bool celt_only() const { return celt_only_; }
  int complexity() const { return config_.complexity; }
  const OpusEncoderConfig& config() const { return config_; }
  void reset();

  // The whole libopus state is one block that a shallow copy saves (opus.h guarantees it): lets a
  // caller undo frames it coded speculatively (FramePartsEncoder).
  size_t state_size() const;
  void save_state(uint8_t* to) const;
  void restore_state(const uint8_t* from);

 private:
  void apply(int request, int value, const char* what);
  OpusEncoder* st_;
  OpusEncoderConfig config_;
  bool celt_only_ = false;
};

class Decoder {
 public:
  Decoder(int sample_rate, int channels);  // throws DspError (ERR_OPUS_CONFIG)
  ~Decoder();
  Decoder(const Decoder&) = delete;
  Decoder& operator=(const Decoder&) = delete;

  // Decodes one packet into out (capacity in samples per channel). Returns samples per channel.
  // Throws ERR_OPUS_DECODE for a corrupt packet (the decoder state stays usable).
  int decode(const uint8_t* packet, size_t length, int16_t* out, int capacity_per_channel);
  // Packet loss concealment for one missing frame of `samples_per_channel` (0 = the last frame's size).
  int conceal(int samples_per_channel, int16_t* out, int capacity_per_channel);
  // Recovers the frame *before* `packet` from its in-band FEC data (falls back to PLC inside libopus
  // when the packet carries none). samples_per_channel: the lost frame's size (0 = last frame size).
  int decode_fec(const uint8_t* packet, size_t length, int samples_per_channel, int16_t* out,
                 int capacity_per_channel);
  int sample_rate() const { return sample_rate_; }
  int channels() const { return channels_; }
  int last_frame_samples() const { return last_frame_; }
  void reset();

 private:
  int frame_or_last(int samples_per_channel) const;
  OpusDecoder* st_;
  int sample_rate_;
  int channels_;
  int last_frame_;
};

}  // namespace xz::dsp
