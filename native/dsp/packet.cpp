#include "packet.h"

namespace xz::dsp {
namespace {
inline uint32_t load_be32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}
inline void store_be32(uint8_t* p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v >> 24);
  p[1] = static_cast<uint8_t>(v >> 16);
  p[2] = static_cast<uint8_t>(v >> 8);
  p[3] = static_cast<uint8_t>(v);
}
}  // namespace

const char* packet_error_code(PacketError e) {
  switch (e) {
    case PacketError::kOk: return "OK";
    case PacketError::kShort: return "ERR_PACKET_SHORT";
    case PacketError::kBadType: return "ERR_PACKET_TYPE";
    case PacketError::kLengthMismatch: return "ERR_PACKET_LENGTH";
  }
  return "ERR_PACKET_UNKNOWN";
}

const char* packet_error_message(PacketError e) {
  switch (e) {
    case PacketError::kOk: return "ok";
    case PacketError::kShort: return "datagram shorter than the 16-byte header";
    case PacketError::kBadType: return "packet type byte is not 0x01 (audio)";
    case PacketError::kLengthMismatch: return "header payload_length does not equal datagram length - 16";
  }
  return "unknown packet error";
}

void write_header(const PacketHeader& h, uint8_t out[kPacketHeaderSize]) {
  out[0] = h.type;
  out[1] = h.flags;
  out[2] = static_cast<uint8_t>(h.payload_length >> 8);
  out[3] = static_cast<uint8_t>(h.payload_length);
  store_be32(out + 4, h.ssrc);
  store_be32(out + 8, h.timestamp);
  store_be32(out + 12, h.sequence);
}

PacketHeader read_header(const uint8_t in[kPacketHeaderSize]) {
  PacketHeader h;
  h.type = in[0];
  h.flags = in[1];
  h.payload_length = static_cast<uint16_t>((in[2] << 8) | in[3]);
  h.ssrc = load_be32(in + 4);
  h.timestamp = load_be32(in + 8);
  h.sequence = load_be32(in + 12);
  return h;
}

PacketError parse_datagram(const uint8_t* datagram, size_t length, PacketHeader* header) {
  if (length < kPacketHeaderSize) return PacketError::kShort;
  PacketHeader h = read_header(datagram);
  if (h.type != kPacketTypeAudio) return PacketError::kBadType;
  if (size_t{h.payload_length} != length - kPacketHeaderSize) return PacketError::kLengthMismatch;
  *header = h;
  return PacketError::kOk;
}

ReplayWindow::Verdict ReplayWindow::check(uint32_t sequence) const {
  if (sequence <= last_) return Verdict::kReplay;  // also rejects 0 before the first packet
  if (started_ ? sequence - last_ > max_jump_ : sequence > max_jump_) return Verdict::kTooFarAhead;
  return Verdict::kFresh;
}

const char* replay_verdict_code(ReplayWindow::Verdict v) {
  switch (v) {
    case ReplayWindow::Verdict::kFresh: return "OK";
    case ReplayWindow::Verdict::kReplay: return "ERR_PACKET_REPLAY";
    case ReplayWindow::Verdict::kTooFarAhead: return "ERR_PACKET_SEQUENCE_JUMP";
  }
  return "ERR_PACKET_UNKNOWN";
}

DownlinkIvScheme::DownlinkIvScheme(const uint8_t nonce[kPacketHeaderSize]) {
  PacketHeader n = read_header(nonce);
  type_ = n.type;
  flags_ = static_cast<uint8_t>(n.flags ^ 0x01);
  ssrc_ = n.ssrc;
}

bool DownlinkIvScheme::next(uint16_t payload_length, uint32_t timestamp_ms, PacketHeader* header) {
  if (sequence_ == UINT32_MAX) return false;
  uint32_t ts = timestamp_ms;
  if (any_sent_ && ts <= timestamp_) {
    if (timestamp_ == UINT32_MAX) return false;
    ts = timestamp_ + 1;
  }
  // A timestamp of UINT32_MAX would let the next packet's counter carry into the ssrc bytes.
  if (ts == UINT32_MAX) return false;
  timestamp_ = ts;
  ++sequence_;
  any_sent_ = true;
  header->type = type_;
  header->flags = flags_;
  header->payload_length = payload_length;
  header->ssrc = ssrc_;
  header->timestamp = ts;
  header->sequence = sequence_;
  return true;
}

}  // namespace xz::dsp
