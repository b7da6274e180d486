#include "uplink_stream.h"

#include <cstring>

#include "dsp/dsp_error.h"

namespace xz::pipeline {

UplinkStream::UplinkStream(const UplinkConfig& config)
    : config_(config),
      aes_(config.key),
      window_(config.max_sequence_jump),
      decoder_(config.decode_rate, 1),
      resampler_(config.decode_rate, config.output_rate),
      expected_samples_(config.frame_ms > 0 ? config.decode_rate / 1000 * config.frame_ms : 0),
      decoded_(dsp::kOpusMaxFrameSamples) {
  // The longest Opus packet is 120 ms: its decoded and resampled frame must fit one PCM slab.
  const size_t max_decoded = static_cast<size_t>(config.decode_rate / 1000 * 120);
  const size_t max_out = resampler_.max_output(max_decoded) * sizeof(int16_t);
  if (max_out > Pools::kPcmSlab) {
    throw dsp::DspError(dsp::ErrorKind::kRange, "ERR_PIPELINE_CONFIG", "uplink output rate too high for one PCM slab");
  }
}

void UplinkStream::emit_pcm(const int16_t* pcm, int samples, const InputItem& item, uint32_t sequence,
                            uint32_t flags, ProcessContext& ctx) {
  MetricsBlock& m = ctx.metrics;
  dsp::PooledBuffer out(ctx.pools.pcm);
  const uint64_t t0 = now_ns();
  const size_t n = resampler_.process(pcm, static_cast<size_t>(samples), reinterpret_cast<int16_t*>(out.data()),
                                      Pools::kPcmSlab / sizeof(int16_t));
  m.observe(kHistUpResample, now_ns() - t0);
  if (n == 0) return;  // the resampler can hold back a few samples of a tiny frame
  Result r = result_for(item, ResultKind::kUplinkPcm);
  r.flags = flags;
  r.pool = &ctx.pools.pcm;
  r.slab = out.data();
  r.length = static_cast<uint32_t>(n * sizeof(int16_t));
  r.sequence = sequence;
  ctx.results.push_back(r);
  static_cast<void>(out.release_ownership());
  m.add(kUpFramesOut);
  m.add(kUpBytesOut, r.length);
}

bool UplinkStream::check_packet(const InputItem& item, dsp::PacketHeader& h, int& samples, ProcessContext& ctx) {
  MetricsBlock& m = ctx.metrics;
  switch (dsp::parse_datagram(item.slab, item.length, &h)) {
    case dsp::PacketError::kOk: break;
    case dsp::PacketError::kShort: m.add(kDropShort); return false;
    case dsp::PacketError::kBadType: m.add(kDropBadType); return false;
    case dsp::PacketError::kLengthMismatch: m.add(kDropLength); return false;
  }
  switch (window_.check(h.sequence)) {
    case dsp::ReplayWindow::Verdict::kFresh: break;
    case dsp::ReplayWindow::Verdict::kReplay: m.add(kDropReplay); return false;
    case dsp::ReplayWindow::Verdict::kTooFarAhead: m.add(kDropSequenceJump); return false;
  }
  uint8_t* payload = item.slab + dsp::kPacketHeaderSize;
  const uint64_t t0 = now_ns();
  aes_.crypt(item.slab, payload, payload, h.payload_length);  // the header bytes are the IV
  m.observe(kHistUpDecrypt, now_ns() - t0);
  // Without an authentication tag, "decrypts to a well-formed Opus packet of the session's shape"
  // is the only evidence a packet is genuine; check it before the decoder state is touched.
  samples = dsp::opus_packet_samples(payload, h.payload_length, config_.decode_rate);
  if (samples <= 0 || (expected_samples_ > 0 && samples != expected_samples_) ||
      dsp::opus_packet_channels(payload, h.payload_length) != 1) {
    m.add(kDropDecode);
    return false;
  }
  return true;
}

void UplinkStream::process(const InputItem& item, ProcessContext& ctx) {
  MetricsBlock& m = ctx.metrics;
  if (item.kind == ItemKind::kFlush) {
    Result r = result_for(item, ResultKind::kUplinkDrained);
    ctx.results.push_back(r);
    return;
  }
  if (item.kind != ItemKind::kData && item.kind != ItemKind::kProbe) return;
  m.add(kUpFramesIn);
  m.add(kUpBytesIn, item.length);

  dsp::PacketHeader h;
  int samples = 0;
  const bool ok = check_packet(item, h, samples, ctx);
  if (item.kind == ItemKind::kProbe) {
    // Every probe is reported, valid or not, so the gateway can demand consecutive valid ones.
    Result r = result_for(item, ResultKind::kUplinkProbe);
    r.flags = ok ? kResultProbeValid : 0;
    r.sequence = ok ? h.sequence : 0;
    ctx.results.push_back(r);
    return;
  }
  if (!ok) return;

  uint8_t* payload = item.slab + dsp::kPacketHeaderSize;
  const size_t payload_len = h.payload_length;
  const uint64_t t0 = now_ns();
  const uint32_t gap = window_.started() ? h.sequence - window_.last() - 1 : 0;
  if (gap > 0 && gap <= static_cast<uint32_t>(config_.max_concealed_frames)) {
    for (uint32_t k = 0; k < gap; ++k) {
      const bool last_missing = k + 1 == gap;
      int n;
      try {
        // The packet right after the gap may carry the last missing frame as in-band FEC.
        n = last_missing ? decoder_.decode_fec(payload, payload_len, samples, decoded_.data(), dsp::kOpusMaxFrameSamples)
                         : decoder_.conceal(samples, decoded_.data(), dsp::kOpusMaxFrameSamples);
      } catch (const dsp::DspError&) {
        n = 0;
      }
      if (n > 0) {
        m.add(last_missing ? kUpFecFrames : kUpPlcFrames);
        emit_pcm(decoded_.data(), n, item, h.sequence - gap + k,
                 last_missing ? kResultRecovered : kResultConcealed, ctx);
      }
    }
  }
  int n;
  try {
    n = decoder_.decode(payload, payload_len, decoded_.data(), dsp::kOpusMaxFrameSamples);
  } catch (const dsp::DspError&) {
    m.add(kDropDecode);
    return;
  }
  m.observe(kHistUpDecode, now_ns() - t0);
  window_.commit(h.sequence);
  emit_pcm(decoded_.data(), n, item, h.sequence, 0, ctx);
}

}  // namespace xz::pipeline
