// Tests for the libopus wrappers (native/dsp/opus_codec.h): frame-size table, configuration
// validation with stable error codes, a round trip whose quality is measured against the input tone,
// packet loss concealment, in-band FEC, and hostile packets (the decoder must throw ERR_OPUS_DECODE
// and stay usable, with its state untouched by packets that fail to parse).
#include "../dsp/opus_codec.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "../dsp/dsp_error.h"

namespace dsp = xz::dsp;
using dsp::Decoder;
using dsp::DspError;
using dsp::Encoder;
using dsp::OpusEncoderConfig;

namespace {

constexpr double kPi = 3.14159265358979323846;

// Runs fn, expects a DspError with `code` (and `kind` if given); returns its message.
std::string ExpectDspError(const std::function<void()>& fn, const char* code,
                           const dsp::ErrorKind* kind = nullptr) {
  try {
    fn();
  } catch (const DspError& e) {
    EXPECT_STREQ(e.code(), code) << e.what();
    if (kind) {
      EXPECT_EQ(static_cast<int>(e.kind()), static_cast<int>(*kind)) << e.what();
    }
    EXPECT_GT(std::strlen(e.what()), 5u);
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected DspError " << code << ", got std::exception: " << e.what();
    return "";
  } catch (...) {
    ADD_FAILURE() << "expected DspError " << code << ", got an unknown exception";
    return "";
  }
  ADD_FAILURE() << "expected DspError " << code << ", nothing was thrown";
  return "";
}

const dsp::ErrorKind kRange = dsp::ErrorKind::kRange;

std::vector<int16_t> Tone(int rate, int channels, size_t frames, double freq, double amplitude, double phase = 0) {
  std::vector<int16_t> pcm(frames * static_cast<size_t>(channels));
  for (size_t i = 0; i < frames; ++i) {
    const double v = amplitude * std::sin(2 * kPi * freq * static_cast<double>(i) / rate + phase);
    for (int c = 0; c < channels; ++c) pcm[i * channels + c] = static_cast<int16_t>(std::lround(v * 32767));
  }
  return pcm;
}

// Least-squares fit of a sinusoid at exactly `freq` over x[begin, end): returns the power ratio of
// the fitted tone to everything else, in dB, and the fitted amplitude (full scale = 1).
struct ToneFit {
  double snr_db;
  double amplitude;
};
ToneFit FitTone(const std::vector<int16_t>& x, int channels, int channel, int rate, double freq, size_t begin,
                size_t end) {
  double ss = 0, cc = 0, sc = 0, xs = 0, xc = 0;
  for (size_t i = begin; i < end; ++i) {
    const double s = std::sin(2 * kPi * freq * static_cast<double>(i) / rate);
    const double c = std::cos(2 * kPi * freq * static_cast<double>(i) / rate);
    const double v = x[i * channels + channel] / 32768.0;
    ss += s * s;
    cc += c * c;
    sc += s * c;
    xs += v * s;
    xc += v * c;
  }
  const double det = ss * cc - sc * sc;
  const double a = (xs * cc - xc * sc) / det;
  const double b = (xc * ss - xs * sc) / det;
  double signal = 0, residual = 0;
  for (size_t i = begin; i < end; ++i) {
    const double fit = a * std::sin(2 * kPi * freq * static_cast<double>(i) / rate) +
                       b * std::cos(2 * kPi * freq * static_cast<double>(i) / rate);
    const double v = x[i * channels + channel] / 32768.0;
    signal += fit * fit;
    residual += (v - fit) * (v - fit);
  }
  return {10 * std::log10(signal / std::max(residual, 1e-30)), std::sqrt(a * a + b * b)};
}

double Energy(const int16_t* x, size_t n) {
  double e = 0;
  for (size_t i = 0; i < n; ++i) e += static_cast<double>(x[i]) * x[i];
  return e / std::max<size_t>(n, 1);
}

// ---------------------------------------------------------------------------------------------
// Static helpers

TEST(OpusInfo, VersionAndSimd) {
  EXPECT_NE(dsp::opus_version().find("1.5.2"), std::string::npos) << dsp::opus_version();
  ASSERT_NE(dsp::opus_simd_summary(), nullptr);
  EXPECT_GT(std::strlen(dsp::opus_simd_summary()), 0u);
  std::printf("[ info     ] %s; SIMD: %s\n", dsp::opus_version().c_str(), dsp::opus_simd_summary());
}

TEST(OpusFrameTable, ValidRates) {
  for (int r : {8000, 12000, 16000, 24000, 48000}) EXPECT_TRUE(dsp::valid_opus_rate(r)) << r;
  for (int r : {0, -1, 1, 7999, 11025, 22050, 32000, 44100, 96000, 16001}) EXPECT_FALSE(dsp::valid_opus_rate(r)) << r;
}

TEST(OpusFrameTable, ValidFramesEqualTheDurationTableForEverySize) {
  // 2.5, 5, 10, 20, 40, 60 ms, in tenths of a millisecond.
  const int tenths_ms[] = {25, 50, 100, 200, 400, 600};
  for (int rate : {8000, 12000, 16000, 24000, 48000}) {
    std::vector<int> valid;
    for (int t : tenths_ms) valid.push_back(rate * t / 10000);
    for (int n = -10; n <= 6000; ++n) {
      const bool expected = std::find(valid.begin(), valid.end(), n) != valid.end();
      ASSERT_EQ(dsp::valid_opus_frame(rate, n), expected) << "rate=" << rate << " n=" << n;
    }
  }
  // The protocol's frames.
  EXPECT_TRUE(dsp::valid_opus_frame(16000, 960));
  EXPECT_TRUE(dsp::valid_opus_frame(24000, 1440));
  EXPECT_TRUE(dsp::valid_opus_frame(48000, 120));
  EXPECT_TRUE(dsp::valid_opus_frame(8000, 20));
  // 80, 100 and 120 ms exist in Opus packets (multi-frame) but are not single encoder frames here.
  EXPECT_FALSE(dsp::valid_opus_frame(48000, 3840));
  EXPECT_FALSE(dsp::valid_opus_frame(48000, 4800));
  EXPECT_FALSE(dsp::valid_opus_frame(48000, 5760));
  // Invalid rates never have valid frames.
  for (int rate : {0, -16000, 44100, 22050, 11025}) {
    for (int n : {0, 1, 20, 110, 441, 882, 1764, 960, 1440}) EXPECT_FALSE(dsp::valid_opus_frame(rate, n)) << rate;
  }
}

// ---------------------------------------------------------------------------------------------
// Configuration validation

TEST(OpusEncoderConfigValidation, RejectsOutOfRangeValuesWithErrOpusConfig) {
  auto expect_bad = [](const std::function<void(OpusEncoderConfig&)>& mutate, const char* what) {
    OpusEncoderConfig c;
    mutate(c);
    const std::string msg = ExpectDspError([&] { Encoder e(c); }, "ERR_OPUS_CONFIG", &kRange);
    EXPECT_FALSE(msg.empty()) << what;
  };
  for (int r : {0, -1, 44100, 22050, 96000, 16001}) expect_bad([r](OpusEncoderConfig& c) { c.sample_rate = r; }, "rate");
  for (int ch : {0, -1, 3, 8}) expect_bad([ch](OpusEncoderConfig& c) { c.channels = ch; }, "channels");
  for (int b : {0, -2, 1, 499, 512001, 1000000}) expect_bad([b](OpusEncoderConfig& c) { c.bitrate = b; }, "bitrate");
  for (int x : {-1, 11, 100}) expect_bad([x](OpusEncoderConfig& c) { c.complexity = x; }, "complexity");
  for (int p : {-1, 101}) expect_bad([p](OpusEncoderConfig& c) { c.packet_loss_percent = p; }, "loss");

  // Messages name the field and the value, for the JS error.
  OpusEncoderConfig c;
  c.sample_rate = 44100;
  const std::string msg = ExpectDspError([&] { Encoder e(c); }, "ERR_OPUS_CONFIG");
  EXPECT_NE(msg.find("44100"), std::string::npos) << msg;
}

TEST(OpusEncoderConfigValidation, AcceptsEveryBoundaryAndEnumValue) {
  for (int r : {8000, 12000, 16000, 24000, 48000}) {
    for (int ch : {1, 2}) {
      OpusEncoderConfig c;
      c.sample_rate = r;
      c.channels = ch;
      EXPECT_NO_THROW(Encoder e(c)) << r << "/" << ch;
    }
  }
  for (int b : {-1, 500, 512000, 24000}) {
    OpusEncoderConfig c;
    c.bitrate = b;
    EXPECT_NO_THROW(Encoder e(c)) << b;
  }
  for (int x : {0, 10}) {
    OpusEncoderConfig c;
    c.complexity = x;
    EXPECT_NO_THROW(Encoder e(c));
  }
  for (int p : {0, 100}) {
    OpusEncoderConfig c;
    c.packet_loss_percent = p;
    EXPECT_NO_THROW(Encoder e(c));
  }
  for (auto app : {dsp::OpusApplication::kVoip, dsp::OpusApplication::kAudio, dsp::OpusApplication::kRestrictedLowDelay}) {
    for (auto bw : {dsp::OpusBandwidth::kNarrow, dsp::OpusBandwidth::kMedium, dsp::OpusBandwidth::kWide,
                    dsp::OpusBandwidth::kSuperWide, dsp::OpusBandwidth::kFull}) {
      for (auto sig : {dsp::OpusSignal::kAuto, dsp::OpusSignal::kVoice, dsp::OpusSignal::kMusic}) {
        OpusEncoderConfig c;
        c.application = app;
        c.max_bandwidth = bw;
        c.signal = sig;
        c.vbr = false;
        c.vbr_constraint = false;
        c.inband_fec = true;
        c.dtx = true;
        EXPECT_NO_THROW(Encoder e(c));
      }
    }
  }
}

TEST(OpusEncoderConfigValidation, RuntimeTuningValidatesAndKeepsConfigOnError) {
  Encoder e(OpusEncoderConfig{});
  EXPECT_EQ(e.complexity(), 10);
  ExpectDspError([&] { e.set_complexity(11); }, "ERR_OPUS_CONFIG", &kRange);
  ExpectDspError([&] { e.set_complexity(-1); }, "ERR_OPUS_CONFIG", &kRange);
  EXPECT_EQ(e.complexity(), 10);
  e.set_complexity(3);
  EXPECT_EQ(e.complexity(), 3);
  EXPECT_EQ(e.config().complexity, 3);
  ExpectDspError([&] { e.set_bitrate(499); }, "ERR_OPUS_CONFIG", &kRange);
  ExpectDspError([&] { e.set_bitrate(0); }, "ERR_OPUS_CONFIG", &kRange);
  ExpectDspError([&] { e.set_bitrate(512001); }, "ERR_OPUS_CONFIG", &kRange);
  EXPECT_EQ(e.config().bitrate, -1);
  e.set_bitrate(16000);
  EXPECT_EQ(e.config().bitrate, 16000);
  e.set_bitrate(-1);
  EXPECT_EQ(e.config().bitrate, -1);
  // Still encodes after all that.
  const std::vector<int16_t> pcm = Tone(24000, 1, 1440, 300, 0.3);
  uint8_t out[dsp::kOpusMaxPacket];
  EXPECT_GT(e.encode(pcm.data(), 1440, out, sizeof out), 0u);
}

TEST(OpusDecoderConfigValidation, RejectsBadRateAndChannels) {
  for (int r : {0, 44100, 22050, -8000}) ExpectDspError([r] { Decoder d(r, 1); }, "ERR_OPUS_CONFIG", &kRange);
  for (int ch : {0, 3, -1}) ExpectDspError([ch] { Decoder d(16000, ch); }, "ERR_OPUS_CONFIG", &kRange);
  for (int r : {8000, 12000, 16000, 24000, 48000}) {
    for (int ch : {1, 2}) {
      Decoder d(r, ch);
      EXPECT_EQ(d.sample_rate(), r);
      EXPECT_EQ(d.channels(), ch);
      EXPECT_EQ(d.last_frame_samples(), r / 50);  // 20 ms until a packet says otherwise
    }
  }
}

TEST(OpusEncoder, RejectsInvalidFrameSizesAndBuffers) {
  OpusEncoderConfig c;
  c.sample_rate = 16000;
  Encoder e(c);
  std::vector<int16_t> pcm(5760 * 2, 0);
  uint8_t out[dsp::kOpusMaxPacket];
  for (int n : {0, -1, 1, 959, 961, 1440, 1920 /* 120 ms */, 1280 /* 80 ms */}) {
    ExpectDspError([&] { e.encode(pcm.data(), n, out, sizeof out); }, "ERR_OPUS_FRAME", &kRange);
  }
  ExpectDspError([&] { e.encode(pcm.data(), 960, out, 0); }, "ERR_OPUS_ENCODE");
  // A huge capacity is clamped, not passed through as a negative int.
  std::vector<uint8_t> big(static_cast<size_t>(1) << 20);
  EXPECT_GT(e.encode(pcm.data(), 960, big.data(), size_t{1} << 40), 0u);
}

// ---------------------------------------------------------------------------------------------
// Round trips

struct RoundTrip {
  int rate;
  int channels;
  int frame;
  double freq;
};

class OpusRoundTrip : public ::testing::TestWithParam<RoundTrip> {};

TEST_P(OpusRoundTrip, SineSurvivesEncodeDecode) {
  const RoundTrip p = GetParam();
  OpusEncoderConfig c;
  c.sample_rate = p.rate;
  c.channels = p.channels;
  c.bitrate = 32000 * p.channels;
  Encoder enc(c);
  Decoder dec(p.rate, p.channels);
  constexpr int kFrames = 30;
  const std::vector<int16_t> input = Tone(p.rate, p.channels, static_cast<size_t>(p.frame) * kFrames, p.freq, 0.5);
  std::vector<int16_t> output;
  std::vector<int16_t> buf(static_cast<size_t>(dsp::kOpusMaxFrameSamples) * p.channels);
  uint8_t packet[dsp::kOpusMaxPacket];
  size_t total_bytes = 0;
  for (int f = 0; f < kFrames; ++f) {
    const size_t n = enc.encode(input.data() + static_cast<size_t>(f) * p.frame * p.channels, p.frame, packet, sizeof packet);
    ASSERT_GE(n, 1u);
    ASSERT_LE(n, 1275u * 3);
    total_bytes += n;
    const int got = dec.decode(packet, n, buf.data(), dsp::kOpusMaxFrameSamples);
    ASSERT_EQ(got, p.frame);
    EXPECT_EQ(dec.last_frame_samples(), p.frame);
    output.insert(output.end(), buf.begin(), buf.begin() + got * p.channels);
  }
  // Skip the first 100 ms (codec delay and start-up), fit the tone over the rest.
  const size_t begin = static_cast<size_t>(p.rate / 10);
  const size_t end = output.size() / p.channels;
  for (int ch = 0; ch < p.channels; ++ch) {
    const ToneFit fit = FitTone(output, p.channels, ch, p.rate, p.freq, begin, end);
    EXPECT_GT(fit.snr_db, 15.0) << "rate=" << p.rate << " ch=" << ch;
    EXPECT_NEAR(fit.amplitude, 0.5, 0.1) << "rate=" << p.rate << " ch=" << ch;
    std::printf("[ info     ] %d Hz x%d, %d-sample frames: tone SNR %.1f dB, amplitude %.3f, %.1f kbit/s\n", p.rate,
                p.channels, p.frame, fit.snr_db, fit.amplitude,
                total_bytes * 8.0 / (kFrames * p.frame / static_cast<double>(p.rate)) / 1000);
  }
}

INSTANTIATE_TEST_SUITE_P(Rates, OpusRoundTrip,
                         ::testing::Values(RoundTrip{16000, 1, 960, 440}, RoundTrip{24000, 1, 1440, 440},
                                           RoundTrip{48000, 2, 960, 1000}, RoundTrip{8000, 1, 160, 300},
                                           RoundTrip{24000, 1, 480, 700}),
                         [](const ::testing::TestParamInfo<RoundTrip>& i) {
                           return std::to_string(i.param.rate) + "Hz_" + std::to_string(i.param.channels) + "ch_" +
                                  std::to_string(i.param.frame);
                         });

TEST(OpusEncoder, DtxMakesSilenceTiny) {
  OpusEncoderConfig c;
  c.sample_rate = 16000;
  c.dtx = true;
  Encoder e(c);
  const std::vector<int16_t> silence(960, 0);
  uint8_t out[dsp::kOpusMaxPacket];
  size_t last = 0;
  for (int i = 0; i < 20; ++i) last = e.encode(silence.data(), 960, out, sizeof out);
  EXPECT_LE(last, 2u);
  e.reset();
  EXPECT_GE(e.encode(silence.data(), 960, out, sizeof out), 1u);
}

// ---------------------------------------------------------------------------------------------
// PLC and FEC

std::vector<std::vector<uint8_t>> EncodeStream(Encoder& enc, const std::vector<int16_t>& pcm, int frame) {
  std::vector<std::vector<uint8_t>> packets;
  uint8_t buf[dsp::kOpusMaxPacket];
  for (size_t off = 0; off + frame <= pcm.size(); off += frame) {
    const size_t n = enc.encode(pcm.data() + off, frame, buf, sizeof buf);
    packets.emplace_back(buf, buf + n);
  }
  return packets;
}

// A voiced, speech-like signal (harmonics of a gliding pitch with a syllable envelope) so the encoder
// runs SILK, which is the layer that carries in-band FEC.
std::vector<int16_t> SpeechLike(int rate, size_t n) {
  std::vector<int16_t> x(n);
  double phase = 0;
  for (size_t i = 0; i < n; ++i) {
    const double t = static_cast<double>(i) / rate;
    const double f0 = 140 + 30 * std::sin(2 * kPi * 0.7 * t);
    phase += 2 * kPi * f0 / rate;
    const double env = 0.6 + 0.4 * std::sin(2 * kPi * 3 * t);
    double v = 0;
    for (int h = 1; h <= 12; ++h) v += std::sin(h * phase) / h;
    x[i] = static_cast<int16_t>(std::lround(0.25 * env * v * 32767));
  }
  return x;
}

TEST(OpusDecoder, ConcealmentFramesAndErrors) {
  OpusEncoderConfig c;
  c.sample_rate = 24000;
  Encoder enc(c);
  Decoder dec(24000, 1);
  std::vector<int16_t> out(dsp::kOpusMaxFrameSamples);
  // Fresh decoder: no packet yet, PLC still produces a 20 ms frame.
  EXPECT_EQ(dec.conceal(0, out.data(), static_cast<int>(out.size())), 480);

  const auto packets = EncodeStream(enc, Tone(24000, 1, 1440 * 10, 300, 0.5), 1440);
  for (const auto& p : packets) ASSERT_EQ(dec.decode(p.data(), p.size(), out.data(), 5760), 1440);
  EXPECT_EQ(dec.last_frame_samples(), 1440);

  // 0 = the last frame's size (60 ms), and the concealed audio continues the tone (not silence).
  std::fill(out.begin(), out.end(), 0);
  EXPECT_EQ(dec.conceal(0, out.data(), 1440), 1440);
  EXPECT_GT(Energy(out.data(), 480), 1e5) << "PLC output of a steady tone should not be silent";
  // Explicit sizes.
  for (int n : {60, 120, 240, 480, 960, 1440}) EXPECT_EQ(dec.conceal(n, out.data(), 1440), n) << n;
  // Invalid size, or an output too small.
  for (int n : {1, 100, 1439, 2880, -480}) ExpectDspError([&] { dec.conceal(n, out.data(), 5760); }, "ERR_OPUS_FRAME", &kRange);
  ExpectDspError([&] { dec.conceal(0, out.data(), 1439); }, "ERR_OPUS_FRAME", &kRange);
  ExpectDspError([&] { dec.conceal(480, out.data(), 479); }, "ERR_OPUS_FRAME", &kRange);
  EXPECT_EQ(dec.last_frame_samples(), 1440) << "concealment does not change the frame size";
  // And decoding resumes.
  EXPECT_EQ(dec.decode(packets[3].data(), packets[3].size(), out.data(), 5760), 1440);
}

TEST(OpusDecoder, InBandFecRecoversALostFrame) {
  OpusEncoderConfig c;
  c.sample_rate = 16000;
  c.application = dsp::OpusApplication::kVoip;
  c.signal = dsp::OpusSignal::kVoice;
  c.bitrate = 24000;
  c.inband_fec = true;
  c.packet_loss_percent = 30;
  Encoder enc(c);
  constexpr int kFrame = 960;
  const std::vector<int16_t> input = SpeechLike(16000, kFrame * 40);
  const auto packets = EncodeStream(enc, input, kFrame);
  ASSERT_EQ(packets.size(), 40u);

  // Reference: everything received.
  Decoder full(16000, 1);
  std::vector<int16_t> ref, out(dsp::kOpusMaxFrameSamples);
  for (const auto& p : packets) {
    ASSERT_EQ(full.decode(p.data(), p.size(), out.data(), 5760), kFrame);
    ref.insert(ref.end(), out.begin(), out.begin() + kFrame);
  }

  // Lose every 5th packet (from the 10th on): recover it from the next packet's FEC, or conceal it.
  auto run = [&](bool use_fec) {
    Decoder d(16000, 1);
    std::vector<int16_t> got;
    for (size_t i = 0; i < packets.size(); ++i) {
      const bool lost = i >= 10 && i % 5 == 0 && i + 1 < packets.size();
      if (lost) {
        int n;
        if (use_fec) {
          n = d.decode_fec(packets[i + 1].data(), packets[i + 1].size(), 0, out.data(), 5760);
        } else {
          n = d.conceal(0, out.data(), 5760);
        }
        EXPECT_EQ(n, kFrame);
      } else {
        EXPECT_EQ(d.decode(packets[i].data(), packets[i].size(), out.data(), 5760), kFrame);
      }
      got.insert(got.end(), out.begin(), out.begin() + kFrame);
    }
    return got;
  };
  const std::vector<int16_t> with_fec = run(true);
  const std::vector<int16_t> with_plc = run(false);
  // Error against the loss-free decode, over the recovered frames only.
  double err_fec = 0, err_plc = 0, sig = 0;
  for (size_t i = 10; i + 1 < packets.size(); i += 5) {
    for (size_t k = i * kFrame; k < (i + 1) * kFrame; ++k) {
      err_fec += std::pow(with_fec[k] - ref[k], 2);
      err_plc += std::pow(with_plc[k] - ref[k], 2);
      sig += std::pow(static_cast<double>(ref[k]), 2);
    }
  }
  const double snr_fec = 10 * std::log10(sig / std::max(err_fec, 1.0));
  const double snr_plc = 10 * std::log10(sig / std::max(err_plc, 1.0));
  std::printf("[ info     ] lost frames vs loss-free decode: FEC %.1f dB, PLC %.1f dB\n", snr_fec, snr_plc);
  EXPECT_GT(sig, 0);
  EXPECT_GT(snr_fec, snr_plc) << "in-band FEC should beat plain concealment on a voiced signal";

  // Argument checks.
  Decoder d(16000, 1);
  const auto& p = packets[5];
  EXPECT_EQ(d.decode_fec(p.data(), p.size(), 320, out.data(), 5760), 320);  // explicit 20 ms
  ExpectDspError([&] { d.decode_fec(p.data(), p.size(), 333, out.data(), 5760); }, "ERR_OPUS_FRAME", &kRange);
  ExpectDspError([&] { d.decode_fec(p.data(), p.size(), 960, out.data(), 959); }, "ERR_OPUS_FRAME", &kRange);
  ExpectDspError([&] { d.decode_fec(p.data(), 0, 960, out.data(), 960); }, "ERR_OPUS_DECODE", &kRange);
  ExpectDspError([&] { d.decode_fec(p.data(), 4001, 960, out.data(), 960); }, "ERR_OPUS_DECODE", &kRange);
  const uint8_t bad[] = {0x03, 0x00};
  ExpectDspError([&] { d.decode_fec(bad, sizeof bad, 960, out.data(), 960); }, "ERR_OPUS_DECODE", &kRange);
  EXPECT_EQ(d.decode(p.data(), p.size(), out.data(), 5760), kFrame);
}

// ---------------------------------------------------------------------------------------------
// Hostile packets

struct Corrupt {
  const char* name;
  std::vector<uint8_t> bytes;
};

std::vector<Corrupt> CorruptPackets() {
  std::vector<Corrupt> v;
  v.push_back({"code 3 with zero frames", {0x03, 0x00}});
  v.push_back({"code 3 with 49 frames (> 120 ms)", {0x03, 0x31, 0, 0, 0, 0}});
  v.push_back({"code 3 CBR, 48 x 60 ms frames", {0x1B, 0x30, 1, 2, 3, 4, 5, 6}});
  v.push_back({"code 2 without the length byte", {0x02}});
  v.push_back({"code 2 first frame longer than the packet", {0x02, 0x05, 0x00}});
  v.push_back({"code 2 two-byte length truncated", {0x02, 0xFC}});
  v.push_back({"code 1 with an odd payload", {0x01, 0xAA, 0xBB, 0xCC}});
  v.push_back({"code 3 padding longer than the packet", {0x03, 0x41, 0xFF, 0xFF, 0x10}});
  v.push_back({"code 3 VBR lengths past the end", {0x03, 0x82, 0xFB, 0x00}});
  std::vector<uint8_t> big(1 + 1276, 0x55);
  big[0] = 0x00;  // code 0: one frame of 1276 bytes (> 1275)
  v.push_back({"code 0 frame over 1275 bytes", big});
  return v;
}

TEST(OpusDecoder, CorruptPacketsThrowAndLeaveStateUntouched) {
  OpusEncoderConfig c;
  c.sample_rate = 16000;
  Encoder enc(c);
  const auto packets = EncodeStream(enc, SpeechLike(16000, 960 * 12), 960);
  Decoder clean(16000, 1), hit(16000, 1);
  std::vector<int16_t> a(5760), b(5760);
  const std::vector<Corrupt> corrupt = CorruptPackets();
  for (size_t i = 0; i < packets.size(); ++i) {
    // Between real packets, throw every corrupt packet at `hit`.
    for (const Corrupt& k : corrupt) {
      ExpectDspError([&] { hit.decode(k.bytes.data(), k.bytes.size(), b.data(), 5760); }, "ERR_OPUS_DECODE", &kRange);
      if (HasFailure()) {
        ADD_FAILURE() << "while decoding: " << k.name;
        return;
      }
    }
    ExpectDspError([&] { hit.decode(packets[i].data(), 0, b.data(), 5760); }, "ERR_OPUS_DECODE", &kRange);
    ExpectDspError([&] { hit.decode(packets[i].data(), dsp::kOpusMaxPacket + 1, b.data(), 5760); }, "ERR_OPUS_DECODE");
    // A valid packet into an output that is too small is refused before anything is decoded.
    ExpectDspError([&] { hit.decode(packets[i].data(), packets[i].size(), b.data(), 959); }, "ERR_OPUS_DECODE");
    ASSERT_EQ(clean.decode(packets[i].data(), packets[i].size(), a.data(), 5760), 960);
    ASSERT_EQ(hit.decode(packets[i].data(), packets[i].size(), b.data(), 5760), 960);
    ASSERT_EQ(std::memcmp(a.data(), b.data(), 960 * sizeof(int16_t)), 0)
        << "a refused packet changed the decoder state (frame " << i << ")";
    EXPECT_EQ(hit.last_frame_samples(), 960);
  }
}

TEST(OpusDecoder, RandomGarbageEitherDecodesOrThrowsAndDecoderStaysUsable) {
  std::mt19937 rng(5);
  for (int rate : {16000, 24000}) {
    Decoder d(rate, 1);
    std::vector<int16_t> out(dsp::kOpusMaxFrameSamples);
    OpusEncoderConfig c;
    c.sample_rate = rate;
    Encoder enc(c);
    const int frame = rate * 60 / 1000;
    const auto good = EncodeStream(enc, Tone(rate, 1, static_cast<size_t>(frame) * 4, 440, 0.4), frame);
    size_t decoded = 0, refused = 0;
    for (int i = 0; i < 20000; ++i) {
      std::vector<uint8_t> junk(1 + rng() % 300);
      for (auto& v : junk) v = static_cast<uint8_t>(rng());
      try {
        const int n = d.decode(junk.data(), junk.size(), out.data(), dsp::kOpusMaxFrameSamples);
        ASSERT_GT(n, 0);
        ASSERT_LE(n, rate * 120 / 1000);
        ASSERT_EQ(n % (rate / 400), 0);
        ASSERT_EQ(d.last_frame_samples(), n);
        ++decoded;
      } catch (const DspError& e) {
        ASSERT_STREQ(e.code(), "ERR_OPUS_DECODE") << e.what();
        ++refused;
      }
      if (i % 1000 == 0) {
        // PLC and FEC on whatever state the garbage left behind.
        EXPECT_GT(d.conceal(0, out.data(), dsp::kOpusMaxFrameSamples), 0);
        try {
          d.decode_fec(junk.data(), junk.size(), frame, out.data(), dsp::kOpusMaxFrameSamples);
        } catch (const DspError& e) {
          ASSERT_STREQ(e.code(), "ERR_OPUS_DECODE") << e.what();
        }
      }
    }
    EXPECT_GT(decoded, 0u);
    EXPECT_GT(refused, 0u);
    d.reset();
    for (const auto& p : good) EXPECT_EQ(d.decode(p.data(), p.size(), out.data(), 5760), frame);
    std::printf("[ info     ] %d Hz: %zu garbage packets decoded, %zu refused\n", rate, decoded, refused);
  }
}

TEST(OpusDecoder, MultiFramePacketsUpTo120ms) {
  // Code 3 CBR packets of 6 x 20 ms (120 ms): legal for Opus, returned whole.
  OpusEncoderConfig c;
  c.sample_rate = 24000;
  c.application = dsp::OpusApplication::kRestrictedLowDelay;  // CELT only: frames are self-contained
  c.vbr = false;  // CBR: every frame the same size, as a code-3 CBR packet requires
  c.bitrate = 32000;
  Encoder enc_cbr(c);
  const auto cbr_frames = EncodeStream(enc_cbr, Tone(24000, 1, 480 * 6, 500, 0.3), 480);
  ASSERT_EQ(cbr_frames.size(), 6u);
  const size_t fs = cbr_frames[0].size();
  for (const auto& f : cbr_frames) {
    ASSERT_EQ(f.size(), fs);
    ASSERT_EQ(f[0], cbr_frames[0][0]) << "frames must share one TOC configuration";
  }
  std::vector<uint8_t> packet = {static_cast<uint8_t>((cbr_frames[0][0] & 0xFC) | 0x03), 0x06};
  for (const auto& f : cbr_frames) packet.insert(packet.end(), f.begin() + 1, f.end());
  Decoder d(24000, 1);
  std::vector<int16_t> out(dsp::kOpusMaxFrameSamples);
  EXPECT_EQ(d.decode(packet.data(), packet.size(), out.data(), 5760), 2880);
  EXPECT_EQ(d.last_frame_samples(), 2880);
  EXPECT_EQ(d.conceal(0, out.data(), 5760), 2880);  // PLC of a "last frame" of 120 ms
  ExpectDspError([&] { d.decode(packet.data(), packet.size(), out.data(), 2879); }, "ERR_OPUS_DECODE");
}

// ---------------------------------------------------------------------------------------------
// Cheap packet inspection and runtime mode switching

TEST(OpusPacketInspection, SamplesAndChannelsOfRealPackets) {
  for (int rate : {16000, 24000, 48000}) {
    for (int ch : {1, 2}) {
      OpusEncoderConfig c;
      c.sample_rate = rate;
      c.channels = ch;
      Encoder enc(c);
      Decoder dec(rate, ch);
      std::vector<int16_t> out(static_cast<size_t>(dsp::kOpusMaxFrameSamples) * ch);
      for (int ms10 : {25, 50, 100, 200, 400, 600}) {
        const int frame = rate * ms10 / 10000;
        const std::vector<int16_t> pcm = Tone(rate, ch, static_cast<size_t>(frame), 440, 0.3);
        uint8_t buf[dsp::kOpusMaxPacket];
        const size_t len = enc.encode(pcm.data(), frame, buf, sizeof buf);
        const std::vector<uint8_t> p(buf, buf + len);
        EXPECT_EQ(dsp::opus_packet_samples(p.data(), p.size(), rate), frame) << rate << "/" << ch << "/" << frame;
        // The same packet at another decoder rate scales with the rate.
        EXPECT_EQ(dsp::opus_packet_samples(p.data(), p.size(), 48000), frame * 48000 / rate);
        EXPECT_EQ(dsp::opus_packet_channels(p.data(), p.size()), ch);
        EXPECT_EQ(dec.decode(p.data(), p.size(), out.data(), dsp::kOpusMaxFrameSamples), frame);
      }
    }
  }
}

TEST(OpusPacketInspection, RejectsWhatTheTocAlreadyRulesOut) {
  const uint8_t one = 0x00;
  EXPECT_EQ(dsp::opus_packet_samples(nullptr, 10, 16000), -1);
  EXPECT_EQ(dsp::opus_packet_samples(&one, 0, 16000), -1);
  std::vector<uint8_t> huge(dsp::kOpusMaxPacket + 1, 0);
  EXPECT_EQ(dsp::opus_packet_samples(huge.data(), huge.size(), 16000), -1);
  const uint8_t zero_frames[] = {0x03, 0x00};
  EXPECT_EQ(dsp::opus_packet_samples(zero_frames, sizeof zero_frames, 16000), -1);
  const uint8_t too_long[] = {0x03, 0x31, 0, 0};  // 49 x 10 ms
  EXPECT_EQ(dsp::opus_packet_samples(too_long, sizeof too_long, 16000), -1);
  const uint8_t code3_no_count[] = {0x03};
  EXPECT_EQ(dsp::opus_packet_samples(code3_no_count, 1, 16000), -1);
  EXPECT_EQ(dsp::opus_packet_channels(nullptr, 0), -1);
  EXPECT_EQ(dsp::opus_packet_channels(&one, 0), -1);
  const uint8_t stereo_toc = 0x04;
  EXPECT_EQ(dsp::opus_packet_channels(&stereo_toc, 1), 2);
}

TEST(OpusPacketInspection, NeverRejectsAPacketTheDecoderAccepts) {
  // opus_packet_samples reads the TOC and frame count only; it does not validate frame lengths, so
  // it may pass packets the decoder then refuses (e.g. code 2 without its length byte). The safe
  // direction must hold: a packet it rejects is one the decoder rejects too, and for a packet that
  // decodes it predicts the decoded size exactly.
  std::mt19937 rng(8);
  for (int rate : {16000, 24000}) {
    Decoder d(rate, 1);
    std::vector<int16_t> out(dsp::kOpusMaxFrameSamples);
    size_t predicted_but_refused = 0;
    for (int i = 0; i < 20000; ++i) {
      std::vector<uint8_t> junk(1 + rng() % 64);
      for (auto& v : junk) v = static_cast<uint8_t>(rng());
      const int predicted = dsp::opus_packet_samples(junk.data(), junk.size(), rate);
      try {
        const int n = d.decode(junk.data(), junk.size(), out.data(), dsp::kOpusMaxFrameSamples);
        ASSERT_EQ(predicted, n) << "packet " << i;
      } catch (const DspError& e) {
        ASSERT_STREQ(e.code(), "ERR_OPUS_DECODE");
        if (predicted > 0) ++predicted_but_refused;
      }
    }
    std::printf("[ info     ] %d Hz: %zu random packets passed opus_packet_samples but failed to decode\n", rate,
                predicted_but_refused);
  }
}

TEST(OpusEncoder, CeltOnlySwitchesTheCodedMode) {
  OpusEncoderConfig c;
  c.sample_rate = 24000;
  c.bitrate = 24000;
  c.application = dsp::OpusApplication::kVoip;
  c.signal = dsp::OpusSignal::kVoice;
  Encoder enc(c);
  EXPECT_FALSE(enc.celt_only());
  const std::vector<int16_t> speech = SpeechLike(24000, 1440 * 8);
  auto modes = [&](int first, int count) {
    std::vector<int> configs;
    uint8_t out[dsp::kOpusMaxPacket];
    for (int f = first; f < first + count; ++f) {
      const size_t n = enc.encode(speech.data() + static_cast<size_t>(f) * 1440, 1440, out, sizeof out);
      EXPECT_GE(n, 1u);
      configs.push_back(out[0] >> 3);  // TOC config: 0-11 SILK, 12-15 hybrid, 16-31 CELT
    }
    return configs;
  };
  const std::vector<int> automatic = modes(0, 3);
  for (int cfg : automatic) EXPECT_LT(cfg, 16) << "voice at 24 kbit/s is expected to use SILK or hybrid";
  enc.set_celt_only(true);
  EXPECT_TRUE(enc.celt_only());
  // libopus codes the frame at a SILK -> CELT switch still in the old mode (with CELT redundancy for
  // a smooth transition): the switch shows from the frame after it.
  const std::vector<int> forced = modes(3, 4);
  std::printf("[ info     ] TOC configs: auto %d %d %d, after set_celt_only(true) %d %d %d %d\n", automatic[0],
              automatic[1], automatic[2], forced[0], forced[1], forced[2], forced[3]);
  for (size_t i = 1; i < forced.size(); ++i) EXPECT_GE(forced[i], 16) << "CELT-only must produce CELT packets";
  enc.set_celt_only(false);
  EXPECT_FALSE(enc.celt_only());
  // A decoder follows the switches within one stream.
  Decoder dec(24000, 1);
  std::vector<int16_t> out(dsp::kOpusMaxFrameSamples);
  Encoder enc2(c);
  uint8_t pkt[dsp::kOpusMaxPacket];
  for (int f = 0; f < 6; ++f) {
    enc2.set_celt_only(f % 2 == 1);
    const size_t n = enc2.encode(speech.data() + static_cast<size_t>(f) * 1440, 1440, pkt, sizeof pkt);
    EXPECT_EQ(dec.decode(pkt, n, out.data(), dsp::kOpusMaxFrameSamples), 1440);
  }
}

}  // namespace
