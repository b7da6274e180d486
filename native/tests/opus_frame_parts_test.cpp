// Tests for coding 40/60 ms Opus frames in 20 ms parts (native/dsp/opus_frame_parts.h):
//  * parts are coded as soon as their audio is there, and joined into one valid multi-frame packet;
//  * a frame coded whole (SILK-only streams, CBR, 20 ms frames) or re-coded whole after its parts
//    could not be joined is byte-identical to what Encoder::encode() gives from the same state;
//  * the audio decodes as well as whole-frame coding does.
#include "../dsp/opus_frame_parts.h"

#include <gtest/gtest.h>
#include <opus.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

namespace dsp = xz::dsp;
using dsp::Encoder;
using dsp::FramePartsEncoder;
using dsp::OpusEncoderConfig;
using Outcome = FramePartsEncoder::Outcome;

namespace {

constexpr double kPi = 3.14159265358979323846;
constexpr size_t kCapacity = 1484;  // a device datagram's payload

enum class Signal { kVoiced, kTone, kNoise, kSilence, kSwitching, kBursts };

const char* name(Signal s) {
  switch (s) {
    case Signal::kVoiced: return "voiced";
    case Signal::kTone: return "tone";
    case Signal::kNoise: return "noise";
    case Signal::kSilence: return "silence";
    case Signal::kSwitching: return "switching";
    case Signal::kBursts: return "bursts";
  }
  return "?";
}

// Deterministic test signals at `rate`, `seconds` long, mono.
std::vector<int16_t> Make(Signal kind, int rate, double seconds, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> noise(0, 1);
  const size_t n = static_cast<size_t>(rate * seconds);
  std::vector<int16_t> x(n);
  double phase = 0;
  for (size_t i = 0; i < n; ++i) {
    const double t = static_cast<double>(i) / rate;
    double v = 0;
    // A voiced, speech-like sound: harmonics of a gliding pitch up to ~10 kHz, a little breath
    // noise, syllable-rate envelope (wideband content: libopus codes it hybrid super-wideband).
    auto voiced = [&] {
      const double f0 = 120 + 40 * std::sin(2 * kPi * 0.7 * t);
      phase += 2 * kPi * f0 / rate;
      double s = 0;
      for (int h = 1; h * f0 < 10000; ++h) s += std::sin(h * phase) / (1 + 0.3 * h);
      return (0.25 * s + 0.02 * noise(rng)) * (0.55 + 0.45 * std::sin(2 * kPi * 3.1 * t));
    };
    switch (kind) {
      case Signal::kVoiced: v = voiced(); break;
      case Signal::kTone: v = 0.4 * std::sin(2 * kPi * 1000 * t) + 0.2 * std::sin(2 * kPi * 3000 * t); break;
      case Signal::kNoise: v = 0.15 * noise(rng); break;
      case Signal::kSilence: v = 0; break;
      // Alternates every 250 ms between tonal music-like sound and noisy speech-like sound: makes
      // libopus change its mode and bandwidth decisions while frames are in progress.
      case Signal::kSwitching:
        v = (static_cast<int>(t * 4) % 2) ? 0.5 * std::sin(2 * kPi * 440 * t) + 0.3 * std::sin(2 * kPi * 880 * t)
                                          : voiced() + 0.05 * noise(rng);
        break;
      // Speech-like sound in 170 ms bursts separated by digital silence.
      case Signal::kBursts: v = (static_cast<int>(t / 0.17) % 2) ? 0 : voiced(); break;
    }
    x[i] = static_cast<int16_t>(std::lround(std::clamp(v, -1.0, 1.0) * 32000));
  }
  return x;
}

struct Counts {
  int whole = 0, parts = 0, recoded = 0;
  int parts_identical = 0;  // coded in parts, and byte-identical to the whole-frame packet anyway
};

// Codes `x` frame by frame, feeding each frame 10 ms at a time the way the downlink stream does.
// Before every frame a shadow encoder gets a copy of the state and codes the frame whole: frames
// the parts encoder coded whole must be byte-identical to it; frames coded in parts must be one
// valid packet of `parts()` 20 ms frames with one TOC. Returns the packets.
std::vector<std::vector<uint8_t>> CodeAndCheck(const OpusEncoderConfig& config, int frame_samples,
                                               const std::vector<int16_t>& x, Counts* counts,
                                               const std::string& what) {
  Encoder enc(config);
  Encoder shadow(config);
  FramePartsEncoder parts(enc, frame_samples, kCapacity);
  std::vector<uint8_t> state(enc.state_size());
  std::vector<int16_t> frame(static_cast<size_t>(frame_samples));
  std::vector<std::vector<uint8_t>> packets;
  const size_t step = static_cast<size_t>(config.sample_rate / 100);
  for (size_t at = 0; at + frame.size() <= x.size(); at += frame.size()) {
    enc.save_state(state.data());
    shadow.restore_state(state.data());
    uint8_t expected[kCapacity];
    const size_t expected_n = shadow.encode(&x[at], frame_samples, expected, kCapacity);

    for (size_t filled = step; filled < frame.size(); filled += step) {
      std::copy(&x[at + filled - step], &x[at + filled], &frame[filled - step]);
      parts.code_ready_parts(frame.data(), filled);
      // Parts are coded as soon as their audio is complete (unless the stream codes whole frames).
      if (parts.parts() > 1 && parts.coded() > 0) {
        EXPECT_LE(parts.coded(), static_cast<int>(filled) / parts.part_samples()) << what;
      }
    }
    std::copy(&x[at + frame.size() - step], &x[at + frame.size()], &frame[frame.size() - step]);
    std::vector<uint8_t> packet(kCapacity);
    const size_t n = parts.finish(frame.data(), packet.data());
    packet.resize(n);
    EXPECT_GE(n, 1u) << what;
    EXPECT_EQ(opus_packet_get_nb_samples(packet.data(), static_cast<opus_int32>(n), config.sample_rate), frame_samples) << what;
    switch (parts.last_outcome()) {
      case Outcome::kWhole:
      case Outcome::kRecodedWhole:
        ++(parts.last_outcome() == Outcome::kWhole ? counts->whole : counts->recoded);
        EXPECT_EQ(packet, std::vector<uint8_t>(expected, expected + expected_n)) << what << " frame at " << at;
        break;
      case Outcome::kParts: {
        ++counts->parts;
        counts->parts_identical += packet == std::vector<uint8_t>(expected, expected + expected_n);
        unsigned char toc = 0;
        const unsigned char* frames[48];
        opus_int16 sizes[48];
        const int nf = opus_packet_parse(packet.data(), static_cast<opus_int32>(n), &toc, frames, sizes, nullptr);
        EXPECT_EQ(nf, parts.parts()) << what;
        // Code 1 (two frames of equal size) or 2 (two frames); code 3 (more than two).
        if (parts.parts() == 2) {
          EXPECT_TRUE((packet[0] & 3) == 1 || (packet[0] & 3) == 2) << what;
        } else {
          EXPECT_EQ(packet[0] & 3, 3) << what;
        }
        break;
      }
    }
    packets.push_back(std::move(packet));
  }
  return packets;
}

std::vector<int16_t> Decode(const std::vector<std::vector<uint8_t>>& packets, int rate, int frame_samples) {
  dsp::Decoder dec(rate, 1);
  std::vector<int16_t> out;
  std::vector<int16_t> buf(static_cast<size_t>(frame_samples));
  for (const auto& p : packets) {
    const int n = dec.decode(p.data(), p.size(), buf.data(), frame_samples);
    out.insert(out.end(), buf.begin(), buf.begin() + n);
  }
  return out;
}

// SNR of the decoded signal against the input, in dB, after the codec's delay (the best integer lag).
double SnrDb(const std::vector<int16_t>& input, const std::vector<int16_t>& decoded) {
  double best = -1e9;
  for (int lag = 0; lag < 400; ++lag) {
    double s = 0, e = 0;
    for (size_t i = 2400; i + static_cast<size_t>(lag) < decoded.size() && i < input.size(); ++i) {
      const double a = input[i], b = decoded[i + static_cast<size_t>(lag)];
      s += a * a;
      e += (a - b) * (a - b);
    }
    best = std::max(best, 10 * std::log10(s / std::max(e, 1.0)));
  }
  return best;
}

OpusEncoderConfig Config(dsp::OpusApplication app, int complexity, int bitrate) {
  OpusEncoderConfig c;
  c.sample_rate = 24000;
  c.application = app;
  c.complexity = complexity;
  c.bitrate = bitrate;
  return c;
}

}  // namespace

TEST(FramePartsEncoder, FramesAreCodedPartByPartAndJoinedIntoOnePacket) {
  // The predecessor's settings (@discordjs/opus defaults at 24 kHz).
  const OpusEncoderConfig c = Config(dsp::OpusApplication::kAudio, 9, 27000);
  Encoder enc(c);
  FramePartsEncoder parts(enc, 1440, kCapacity);
  ASSERT_EQ(parts.parts(), 3);
  ASSERT_EQ(parts.part_samples(), 480);
  const std::vector<int16_t> x = Make(Signal::kVoiced, 24000, 1.2, 1);
  std::vector<int16_t> frame(1440);
  int in_parts = 0, frames = 0;
  for (size_t at = 0; at + 1440 <= x.size(); at += 1440, ++frames) {
    std::copy(&x[at], &x[at + 1440], frame.begin());
    std::vector<int> progress;
    for (int k = 1; k <= 5; ++k) {
      parts.code_ready_parts(frame.data(), static_cast<size_t>(k) * 240);
      progress.push_back(parts.coded());
    }
    uint8_t packet[kCapacity];
    const size_t n = parts.finish(frame.data(), packet);
    ASSERT_EQ(parts.coded(), 0);  // ready for the next frame
    if (parts.last_outcome() != Outcome::kParts) continue;
    ++in_parts;
    // After 10, 20, 30, 40, 50 ms of audio: 0, 1, 1, 2, 2 parts coded; the last one in finish().
    EXPECT_EQ(progress, (std::vector<int>{0, 1, 1, 2, 2})) << "frame " << frames;
    EXPECT_EQ(packet[0] & 3, 3) << "code 3: several frames in one packet";
    EXPECT_EQ(opus_packet_get_nb_frames(packet, static_cast<opus_int32>(n)), 3);
    EXPECT_EQ(opus_packet_get_samples_per_frame(packet, 24000), 480);
    EXPECT_GE(packet[0] >> 3, 12) << "hybrid or CELT: SILK-only frames are coded whole";
  }
  // libopus may change mode or bandwidth within a frame now and then (that frame is re-coded whole).
  EXPECT_GE(in_parts, frames * 9 / 10) << in_parts << " of " << frames;
}

TEST(FramePartsEncoder, WholeFramesAreByteIdenticalToEncodeAndPartsAreValidPackets) {
  struct Case {
    const char* what;
    OpusEncoderConfig config;
    int frame_ms;
  };
  std::vector<Case> cases;
  cases.push_back({"discord defaults (audio c9 27k)", Config(dsp::OpusApplication::kAudio, 9, 27000), 60});
  cases.push_back({"gateway default (voip c6 32k)", Config(dsp::OpusApplication::kVoip, 6, 32000), 60});
  cases.push_back({"voip c2 12k (SILK)", Config(dsp::OpusApplication::kVoip, 2, 12000), 60});
  cases.push_back({"audio c10 16k", Config(dsp::OpusApplication::kAudio, 10, 16000), 60});
  cases.push_back({"restricted low delay c0 64k (CELT)", Config(dsp::OpusApplication::kRestrictedLowDelay, 0, 64000), 60});
  cases.push_back({"voip c6 32k, 40 ms", Config(dsp::OpusApplication::kVoip, 6, 32000), 40});
  cases.push_back({"voip c6 32k, 20 ms (always whole)", Config(dsp::OpusApplication::kVoip, 6, 32000), 20});
  Case fec{"voip c8 24k FEC 10 %", Config(dsp::OpusApplication::kVoip, 8, 24000), 60};
  fec.config.inband_fec = true;
  fec.config.packet_loss_percent = 10;
  cases.push_back(fec);
  Case dtx{"voip c6 16k DTX", Config(dsp::OpusApplication::kVoip, 6, 16000), 60};
  dtx.config.dtx = true;
  cases.push_back(dtx);
  Case cbr{"audio c9 32k CBR (always whole)", Config(dsp::OpusApplication::kAudio, 9, 32000), 60};
  cbr.config.vbr = false;
  cases.push_back(cbr);
  Case wb{"voip c6 32k max wideband (SILK)", Config(dsp::OpusApplication::kVoip, 6, 32000), 60};
  wb.config.max_bandwidth = dsp::OpusBandwidth::kWide;
  cases.push_back(wb);

  Counts total;
  for (const Case& k : cases) {
    const int frame = 24 * k.frame_ms;
    Counts counts;
    for (Signal s : {Signal::kVoiced, Signal::kTone, Signal::kNoise, Signal::kSilence, Signal::kSwitching, Signal::kBursts}) {
      const std::string what = std::string(k.what) + " / " + name(s);
      CodeAndCheck(k.config, frame, Make(s, 24000, 2.0, 7), &counts, what);
    }
    std::printf("[ info     ] %-40s parts %3d (%3d byte-identical to whole)  whole %3d  re-coded whole %3d\n", k.what,
                counts.parts, counts.parts_identical, counts.whole, counts.recoded);
    if (k.frame_ms == 20 || !k.config.vbr) {
      EXPECT_EQ(counts.parts + counts.recoded, 0) << k.what;
    }
    total.parts += counts.parts;
    total.whole += counts.whole;
    total.recoded += counts.recoded;
  }
  // Every path was taken (and checked) somewhere above.
  EXPECT_GT(total.parts, 0);
  EXPECT_GT(total.whole, 0);
  EXPECT_GT(total.recoded, 0);
}

TEST(FramePartsEncoder, DecodesAsWellAsWholeFrameCoding) {
  for (const OpusEncoderConfig& c : {Config(dsp::OpusApplication::kAudio, 9, 27000), Config(dsp::OpusApplication::kVoip, 6, 32000)}) {
    for (Signal s : {Signal::kVoiced, Signal::kSwitching}) {
      const std::vector<int16_t> x = Make(s, 24000, 3.0, 3);
      Counts counts;
      const auto in_parts = CodeAndCheck(c, 1440, x, &counts, name(s));
      Encoder whole(c);
      std::vector<std::vector<uint8_t>> reference;
      for (size_t at = 0; at + 1440 <= x.size(); at += 1440) {
        std::vector<uint8_t> p(kCapacity);
        p.resize(whole.encode(&x[at], 1440, p.data(), p.size()));
        reference.push_back(std::move(p));
      }
      size_t bytes_parts = 0, bytes_whole = 0;
      for (const auto& p : in_parts) bytes_parts += p.size();
      for (const auto& p : reference) bytes_whole += p.size();
      const double snr_parts = SnrDb(x, Decode(in_parts, 24000, 1440));
      const double snr_whole = SnrDb(x, Decode(reference, 24000, 1440));
      std::printf("[ info     ] %s c%d %d bit/s, %s: SNR parts %.2f dB vs whole %.2f dB; bytes %zu vs %zu (parts %d, re-coded %d)\n",
                  c.application == dsp::OpusApplication::kAudio ? "audio" : "voip", c.complexity, c.bitrate, name(s),
                  snr_parts, snr_whole, bytes_parts, bytes_whole, counts.parts, counts.recoded);
      EXPECT_GT(counts.parts, 0);
      EXPECT_GT(snr_parts, snr_whole - 1.0) << name(s);
      EXPECT_LT(static_cast<double>(bytes_parts), 1.05 * static_cast<double>(bytes_whole)) << name(s);
    }
  }
}

TEST(FramePartsEncoder, AbandonForgetsAFrameInProgress) {
  const OpusEncoderConfig c = Config(dsp::OpusApplication::kVoip, 6, 32000);
  Encoder enc(c);
  FramePartsEncoder parts(enc, 1440, kCapacity);
  const std::vector<int16_t> x = Make(Signal::kVoiced, 24000, 0.2, 5);
  parts.code_ready_parts(x.data(), 960);
  ASSERT_EQ(parts.coded(), 2);
  parts.abandon();
  enc.reset();
  EXPECT_EQ(parts.coded(), 0);
  // The next frame codes from scratch, like a fresh encoder (byte-identical).
  Encoder fresh(c);
  FramePartsEncoder fresh_parts(fresh, 1440, kCapacity);
  uint8_t a[kCapacity], b[kCapacity];
  parts.code_ready_parts(x.data() + 1440, 960);
  fresh_parts.code_ready_parts(x.data() + 1440, 960);
  const size_t na = parts.finish(x.data() + 1440, a);
  const size_t nb = fresh_parts.finish(x.data() + 1440, b);
  ASSERT_EQ(na, nb);
  EXPECT_EQ(std::vector<uint8_t>(a, a + na), std::vector<uint8_t>(b, b + nb));
}
