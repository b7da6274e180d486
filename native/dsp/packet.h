// The device's UDP packet format (PROTOCOL.md §3): a 16-byte big-endian header followed by the
// AES-128-CTR encrypted Opus packet; the header, exactly as on the wire, is the CTR initial counter.
#pragma once

#include <cstddef>
#include <cstdint>

namespace xz::dsp {

constexpr size_t kPacketHeaderSize = 16;
constexpr uint8_t kPacketTypeAudio = 0x01;
constexpr size_t kMaxDatagramSize = 1500;

struct PacketHeader {
  uint8_t type = kPacketTypeAudio;
  uint8_t flags = 0;
  uint16_t payload_length = 0;
  uint32_t ssrc = 0;
  uint32_t timestamp = 0;
  uint32_t sequence = 0;
};

enum class PacketError {
  kOk = 0,
  kShort,           // fewer than 16 bytes
  kBadType,         // type byte is not 0x01
  kLengthMismatch,  // payload_length != datagram length - 16
};
const char* packet_error_code(PacketError e);     // stable code, e.g. "ERR_PACKET_SHORT"
const char* packet_error_message(PacketError e);

void write_header(const PacketHeader& h, uint8_t out[kPacketHeaderSize]);
PacketHeader read_header(const uint8_t in[kPacketHeaderSize]);
// Checks a received datagram; on kOk fills *header. Never reads past `length`.
PacketError parse_datagram(const uint8_t* datagram, size_t length, PacketHeader* header);

// Receiver-side sequence rule: strictly increasing, and a forward jump bounded by max_jump so a
// forged packet with a huge sequence cannot lock the real sender out. check() only inspects;
// commit() records a sequence after the packet proved valid (decrypted and decoded), so a forged
// packet that fails validation moves nothing.
class ReplayWindow {
 public:
  enum class Verdict { kFresh = 0, kReplay, kTooFarAhead };
  explicit ReplayWindow(uint32_t max_jump = kDefaultMaxJump) : max_jump_(max_jump) {}
  static constexpr uint32_t kDefaultMaxJump = 1024;  // ~61 s of 60 ms frames

  Verdict check(uint32_t sequence) const;
  void commit(uint32_t sequence) { last_ = sequence; started_ = true; }
  uint32_t last() const { return last_; }
  bool started() const { return started_; }
  uint32_t max_jump() const { return max_jump_; }
  void reset() { last_ = 0; started_ = false; }

 private:
  uint32_t max_jump_;
  uint32_t last_ = 0;  // sequence 0 is never fresh: the device's first packet is 1
  bool started_ = false;
};
const char* replay_verdict_code(ReplayWindow::Verdict v);

// Downlink IVs (PROTOCOL.md §3.2). The device ignores the flags byte and uses the timestamp only for
// AEC, so the server sets flags = nonce.flags ^ 1 (never equal to the uplink's flags, so no downlink
// counter block ever equals an uplink one) and a timestamp that grows by at least one per packet, so
// the counter ranges of two downlink packets are at least 2^32 apart and never overlap (a packet has
// at most 94 blocks). The sequence starts at 1 and increments per packet, as the device requires.
class DownlinkIvScheme {
 public:
  // nonce: the 16-byte template handed to the device in the hello reply.
  explicit DownlinkIvScheme(const uint8_t nonce[kPacketHeaderSize]);
  // Header (= IV) for the next packet. timestamp_ms is the caller's media clock; it is raised if
  // needed to stay strictly increasing. Returns false when the 32-bit timestamp or sequence space is
  // exhausted (after ~49 days): the session must re-key (new hello) before sending more.
  bool next(uint16_t payload_length, uint32_t timestamp_ms, PacketHeader* header);
  uint32_t last_sequence() const { return sequence_; }
  uint32_t last_timestamp() const { return timestamp_; }

 private:
  uint8_t type_;
  uint8_t flags_;
  uint32_t ssrc_;
  uint32_t sequence_ = 0;
  uint32_t timestamp_ = 0;
  bool any_sent_ = false;
};

}  // namespace xz::dsp
