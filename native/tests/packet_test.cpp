// Tests for the UDP packet format (native/dsp/packet.h, PROTOCOL.md §3): header layout and round
// trip, every malformed datagram, the receiver's replay window, and the downlink IV scheme, whose
// whole point (§3.2) is that no AES-CTR counter block is ever used twice: checked here with 128-bit
// integer arithmetic over thousands of packets against uplink IVs from the same nonce.
#include "../dsp/packet.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

namespace dsp = xz::dsp;
using dsp::PacketError;
using dsp::PacketHeader;
using dsp::ReplayWindow;
using Verdict = dsp::ReplayWindow::Verdict;
using u128 = unsigned __int128;

namespace {

bool SameHeader(const PacketHeader& a, const PacketHeader& b) {
  return a.type == b.type && a.flags == b.flags && a.payload_length == b.payload_length && a.ssrc == b.ssrc &&
         a.timestamp == b.timestamp && a.sequence == b.sequence;
}

std::vector<uint8_t> Datagram(const PacketHeader& h, size_t payload) {
  std::vector<uint8_t> d(dsp::kPacketHeaderSize + payload, 0xAB);
  dsp::write_header(h, d.data());
  return d;
}

// The header bytes read as one big-endian 128-bit number: the AES-CTR counter of the packet's first
// block. Block i uses counter + i (mod 2^128).
u128 CounterOf(const PacketHeader& h) {
  uint8_t bytes[dsp::kPacketHeaderSize];
  dsp::write_header(h, bytes);
  u128 v = 0;
  for (uint8_t b : bytes) v = (v << 8) | b;
  return v;
}

size_t BlocksOf(size_t payload_length) { return (payload_length + 15) / 16; }

// ---------------------------------------------------------------------------------------------
// Header layout

TEST(PacketHeader, WireLayoutIsBigEndianAsInProtocol) {
  PacketHeader h;
  h.type = 0x01;
  h.flags = 0x5c;
  h.payload_length = 0x0102;
  h.ssrc = 0xA1B2C3D4u;
  h.timestamp = 0x11223344u;
  h.sequence = 0xCAFEBABEu;
  uint8_t out[16];
  dsp::write_header(h, out);
  const uint8_t expected[16] = {0x01, 0x5c, 0x01, 0x02, 0xA1, 0xB2, 0xC3, 0xD4,
                                0x11, 0x22, 0x33, 0x44, 0xCA, 0xFE, 0xBA, 0xBE};
  EXPECT_EQ(std::memcmp(out, expected, 16), 0);
  EXPECT_TRUE(SameHeader(dsp::read_header(expected), h));
}

TEST(PacketHeader, DefaultsAreAnAudioPacket) {
  PacketHeader h;
  EXPECT_EQ(h.type, dsp::kPacketTypeAudio);
  EXPECT_EQ(h.type, 0x01);
  EXPECT_EQ(h.flags, 0);
  EXPECT_EQ(h.payload_length, 0);
  EXPECT_EQ(dsp::kPacketHeaderSize, 16u);
  EXPECT_EQ(dsp::kMaxDatagramSize, 1500u);
}

TEST(PacketHeader, RoundTripRandomHeadersAndRandomBytes) {
  std::mt19937_64 rng(42);
  for (int i = 0; i < 100000; ++i) {
    PacketHeader h;
    const uint64_t a = rng(), b = rng();
    h.type = static_cast<uint8_t>(a);
    h.flags = static_cast<uint8_t>(a >> 8);
    h.payload_length = static_cast<uint16_t>(a >> 16);
    h.ssrc = static_cast<uint32_t>(a >> 32);
    h.timestamp = static_cast<uint32_t>(b);
    h.sequence = static_cast<uint32_t>(b >> 32);
    uint8_t bytes[16];
    dsp::write_header(h, bytes);
    ASSERT_TRUE(SameHeader(dsp::read_header(bytes), h)) << i;
    // And bytes -> header -> bytes.
    uint8_t again[16];
    dsp::write_header(dsp::read_header(bytes), again);
    ASSERT_EQ(std::memcmp(bytes, again, 16), 0);
  }
  // Extremes.
  for (uint32_t v : {0u, 1u, 0x7fffffffu, 0x80000000u, 0xffffffffu}) {
    PacketHeader h;
    h.type = static_cast<uint8_t>(v);
    h.flags = static_cast<uint8_t>(v >> 24);
    h.payload_length = static_cast<uint16_t>(v);
    h.ssrc = v;
    h.timestamp = ~v;
    h.sequence = v;
    uint8_t bytes[16];
    dsp::write_header(h, bytes);
    EXPECT_TRUE(SameHeader(dsp::read_header(bytes), h));
  }
}

// ---------------------------------------------------------------------------------------------
// parse_datagram

// Copies into a heap block of exactly `length` bytes, so a read past the end is a real overrun (ASan
// builds report it) rather than a read of a neighbouring byte.
PacketError ParseExact(const std::vector<uint8_t>& bytes, size_t length, PacketHeader* h) {
  std::unique_ptr<uint8_t[]> exact(new uint8_t[length == 0 ? 1 : length]);
  if (length) std::memcpy(exact.get(), bytes.data(), length);
  return dsp::parse_datagram(exact.get(), length, h);
}

TEST(ParseDatagram, ValidPacketsEveryPayloadLength) {
  for (size_t payload = 0; payload <= dsp::kMaxDatagramSize - 16; ++payload) {
    PacketHeader h;
    h.flags = static_cast<uint8_t>(payload);
    h.payload_length = static_cast<uint16_t>(payload);
    h.ssrc = 0x01020304u;
    h.timestamp = static_cast<uint32_t>(payload * 7);
    h.sequence = static_cast<uint32_t>(payload + 1);
    const std::vector<uint8_t> d = Datagram(h, payload);
    PacketHeader got;
    got.ssrc = 0xdeadbeef;
    ASSERT_EQ(ParseExact(d, d.size(), &got), PacketError::kOk) << payload;
    ASSERT_TRUE(SameHeader(got, h)) << payload;
  }
}

TEST(ParseDatagram, LargestExpressiblePayload) {
  // parse_datagram checks the header against the datagram, not the 1500-byte MTU: the caller's
  // receive buffer bounds the datagram.
  PacketHeader h;
  h.payload_length = 0xffff;
  std::vector<uint8_t> d = Datagram(h, 0xffff);
  PacketHeader got;
  EXPECT_EQ(ParseExact(d, d.size(), &got), PacketError::kOk);
  d.push_back(0);
  EXPECT_EQ(ParseExact(d, d.size(), &got), PacketError::kLengthMismatch);  // 65536 not expressible
}

TEST(ParseDatagram, ShortDatagramsEveryLength) {
  const std::vector<uint8_t> full = Datagram(PacketHeader{}, 0);
  for (size_t len = 0; len < 16; ++len) {
    PacketHeader got;
    got.sequence = 777;
    EXPECT_EQ(ParseExact(full, len, &got), PacketError::kShort) << len;
    EXPECT_EQ(got.sequence, 777u) << "header written on error";
  }
  PacketHeader got;
  EXPECT_EQ(dsp::parse_datagram(nullptr, 0, &got), PacketError::kShort);
}

TEST(ParseDatagram, EveryWrongTypeByte) {
  for (int type = 0; type < 256; ++type) {
    PacketHeader h;
    h.type = static_cast<uint8_t>(type);
    h.payload_length = 3;
    const std::vector<uint8_t> d = Datagram(h, 3);
    PacketHeader got;
    got.sequence = 777;
    const PacketError e = ParseExact(d, d.size(), &got);
    if (type == 0x01) {
      EXPECT_EQ(e, PacketError::kOk);
    } else {
      EXPECT_EQ(e, PacketError::kBadType) << type;
      EXPECT_EQ(got.sequence, 777u);
    }
  }
}

TEST(ParseDatagram, LengthMismatchBothDirections) {
  for (size_t actual = 0; actual <= 64; ++actual) {
    for (uint32_t claimed : {0u, 1u, 15u, 16u, 17u, 32u, 63u, 64u, 65u, 1484u, 1485u, 65535u}) {
      PacketHeader h;
      h.payload_length = static_cast<uint16_t>(claimed);
      const std::vector<uint8_t> d = Datagram(h, actual);
      PacketHeader got;
      got.sequence = 777;
      const PacketError e = ParseExact(d, d.size(), &got);
      if (claimed == actual) {
        EXPECT_EQ(e, PacketError::kOk);
      } else {
        EXPECT_EQ(e, PacketError::kLengthMismatch) << "claimed " << claimed << " actual " << actual;
        EXPECT_EQ(got.sequence, 777u);
      }
    }
  }
  // payload_length counts the payload only, not the header.
  PacketHeader h;
  h.payload_length = 16 + 10;
  PacketHeader got;
  EXPECT_EQ(ParseExact(Datagram(h, 10), 26, &got), PacketError::kLengthMismatch);
}

TEST(ParseDatagram, ErrorPrecedenceShortThenTypeThenLength) {
  // A 10-byte datagram with a bad type is "short"; a full header with both a bad type and a bad
  // length is "type".
  PacketHeader h;
  h.type = 0x02;
  h.payload_length = 99;
  const std::vector<uint8_t> d = Datagram(h, 5);
  PacketHeader got;
  EXPECT_EQ(ParseExact(d, 10, &got), PacketError::kShort);
  EXPECT_EQ(ParseExact(d, d.size(), &got), PacketError::kBadType);
}

TEST(ParseDatagram, RandomGarbageNeverCrashesAndAgreesWithModel) {
  std::mt19937 rng(7);
  for (int i = 0; i < 200000; ++i) {
    const size_t len = rng() % 64;
    std::vector<uint8_t> d(len);
    for (auto& b : d) b = static_cast<uint8_t>(rng());
    if (len >= 16 && (rng() & 1)) d[0] = 1;
    if (len >= 16 && (rng() & 1)) { d[2] = 0; d[3] = static_cast<uint8_t>(len - 16); }
    PacketHeader got;
    const PacketError e = ParseExact(d, len, &got);
    PacketError model;
    if (len < 16) model = PacketError::kShort;
    else if (d[0] != 1) model = PacketError::kBadType;
    else if (((d[2] << 8) | d[3]) != static_cast<int>(len - 16)) model = PacketError::kLengthMismatch;
    else model = PacketError::kOk;
    ASSERT_EQ(e, model) << i;
    if (e == PacketError::kOk) {
      ASSERT_TRUE(SameHeader(got, dsp::read_header(d.data())));
    }
  }
}

TEST(ParseDatagram, StableCodesAndMessages) {
  EXPECT_STREQ(dsp::packet_error_code(PacketError::kOk), "OK");
  EXPECT_STREQ(dsp::packet_error_code(PacketError::kShort), "ERR_PACKET_SHORT");
  EXPECT_STREQ(dsp::packet_error_code(PacketError::kBadType), "ERR_PACKET_TYPE");
  EXPECT_STREQ(dsp::packet_error_code(PacketError::kLengthMismatch), "ERR_PACKET_LENGTH");
  EXPECT_STREQ(dsp::packet_error_code(static_cast<PacketError>(99)), "ERR_PACKET_UNKNOWN");
  for (PacketError e : {PacketError::kOk, PacketError::kShort, PacketError::kBadType, PacketError::kLengthMismatch,
                        static_cast<PacketError>(99)}) {
    ASSERT_NE(dsp::packet_error_message(e), nullptr);
    EXPECT_GT(std::strlen(dsp::packet_error_message(e)), 1u);
  }
  EXPECT_NE(std::string(dsp::packet_error_message(PacketError::kShort)).find("16"), std::string::npos);
}

// ---------------------------------------------------------------------------------------------
// ReplayWindow

// The rule, in 64-bit arithmetic so no wrap can hide a mistake.
Verdict ModelVerdict(bool started, uint32_t last, uint32_t max_jump, uint32_t seq) {
  const uint64_t s = seq, l = started ? last : 0, j = max_jump;
  if (s <= l) return Verdict::kReplay;
  if (s - l > j) return Verdict::kTooFarAhead;
  return Verdict::kFresh;
}

TEST(ReplayWindow, InitialState) {
  ReplayWindow w;
  EXPECT_EQ(w.max_jump(), ReplayWindow::kDefaultMaxJump);
  EXPECT_EQ(ReplayWindow::kDefaultMaxJump, 1024u);
  EXPECT_FALSE(w.started());
  EXPECT_EQ(w.last(), 0u);
  EXPECT_EQ(w.check(0), Verdict::kReplay);  // the device's first packet is 1; 0 is never fresh
  EXPECT_EQ(w.check(1), Verdict::kFresh);
  EXPECT_EQ(w.check(1024), Verdict::kFresh);
  EXPECT_EQ(w.check(1025), Verdict::kTooFarAhead);
  EXPECT_EQ(w.check(UINT32_MAX), Verdict::kTooFarAhead);
  EXPECT_FALSE(w.started()) << "check() must not move the window";
}

TEST(ReplayWindow, StrictlyIncreasingWithBoundedJump) {
  ReplayWindow w(100);
  w.commit(1);
  EXPECT_TRUE(w.started());
  EXPECT_EQ(w.last(), 1u);
  EXPECT_EQ(w.check(0), Verdict::kReplay);
  EXPECT_EQ(w.check(1), Verdict::kReplay);  // duplicate
  EXPECT_EQ(w.check(2), Verdict::kFresh);
  EXPECT_EQ(w.check(101), Verdict::kFresh);  // jump of exactly max_jump
  EXPECT_EQ(w.check(102), Verdict::kTooFarAhead);
  w.commit(50);  // a gap (lost packets) is accepted
  EXPECT_EQ(w.check(49), Verdict::kReplay);
  EXPECT_EQ(w.check(50), Verdict::kReplay);
  EXPECT_EQ(w.check(51), Verdict::kFresh);
  EXPECT_EQ(w.check(150), Verdict::kFresh);
  EXPECT_EQ(w.check(151), Verdict::kTooFarAhead);
}

TEST(ReplayWindow, NoWrapAroundAtEitherEnd) {
  ReplayWindow w(1024);
  // Near the top: small sequences are replays, not "ahead by a little after wrapping".
  w.commit(UINT32_MAX - 10);
  EXPECT_EQ(w.check(UINT32_MAX), Verdict::kFresh);
  EXPECT_EQ(w.check(UINT32_MAX - 10), Verdict::kReplay);
  for (uint32_t s = 0; s < 2000; ++s) EXPECT_EQ(w.check(s), Verdict::kReplay) << s;
  w.commit(UINT32_MAX);
  for (uint32_t s : {0u, 1u, 1000u, UINT32_MAX - 1, UINT32_MAX}) EXPECT_EQ(w.check(s), Verdict::kReplay) << s;
  // Near the bottom: huge sequences are too far ahead, not "behind after wrapping".
  w.reset();
  w.commit(5);
  for (uint32_t s : {UINT32_MAX, UINT32_MAX - 1, 0x80000000u, 0x80000006u, 1030u}) {
    EXPECT_EQ(w.check(s), Verdict::kTooFarAhead) << s;
  }
  EXPECT_EQ(w.check(1029), Verdict::kFresh);
}

TEST(ReplayWindow, ForgedPacketThatIsNeverCommittedMovesNothing) {
  ReplayWindow w;
  w.commit(10);
  // A forged packet with a fresh-looking sequence that then fails to decrypt/decode: checked, not
  // committed. The real sender continues undisturbed.
  EXPECT_EQ(w.check(500), Verdict::kFresh);
  EXPECT_EQ(w.last(), 10u);
  EXPECT_EQ(w.check(11), Verdict::kFresh);
  // A forged huge sequence is refused outright and would not lock the sender out even if checked.
  EXPECT_EQ(w.check(0xF0000000u), Verdict::kTooFarAhead);
  EXPECT_EQ(w.check(11), Verdict::kFresh);
}

TEST(ReplayWindow, ResetAndMaxJumpExtremes) {
  ReplayWindow w(10);
  w.commit(1000);
  w.reset();
  EXPECT_FALSE(w.started());
  EXPECT_EQ(w.last(), 0u);
  EXPECT_EQ(w.check(1), Verdict::kFresh);
  EXPECT_EQ(w.check(11), Verdict::kTooFarAhead);

  ReplayWindow any(UINT32_MAX);
  EXPECT_EQ(any.check(UINT32_MAX), Verdict::kFresh);
  any.commit(7);
  EXPECT_EQ(any.check(UINT32_MAX), Verdict::kFresh);
  EXPECT_EQ(any.check(7), Verdict::kReplay);

  ReplayWindow none(0);  // no forward movement allowed at all
  EXPECT_EQ(none.check(1), Verdict::kTooFarAhead);
  none.commit(3);
  EXPECT_EQ(none.check(4), Verdict::kTooFarAhead);
  EXPECT_EQ(none.check(3), Verdict::kReplay);
}

TEST(ReplayWindow, AgreesWithModelOnBoundariesAndRandomInputs) {
  std::mt19937_64 rng(99);
  const uint32_t specials[] = {0, 1, 2, 1023, 1024, 1025, 0x7fffffffu, 0x80000000u, UINT32_MAX - 1, UINT32_MAX};
  std::vector<uint32_t> jumps = {0, 1, 2, 1024, 0x80000000u, UINT32_MAX};
  for (int i = 0; i < 20; ++i) jumps.push_back(static_cast<uint32_t>(rng()));
  for (uint32_t jump : jumps) {
    for (int started = 0; started < 2; ++started) {
      std::vector<uint32_t> lasts(std::begin(specials), std::end(specials));
      for (int i = 0; i < 20; ++i) lasts.push_back(static_cast<uint32_t>(rng()));
      for (uint32_t last : lasts) {
        if (!started && last != 0) continue;
        ReplayWindow w(jump);
        if (started) w.commit(last);
        std::vector<uint32_t> seqs(std::begin(specials), std::end(specials));
        for (int64_t delta : {-2, -1, 0, 1, 2}) {
          seqs.push_back(static_cast<uint32_t>(last + delta));
          seqs.push_back(static_cast<uint32_t>(last + jump + delta));
        }
        for (int i = 0; i < 50; ++i) seqs.push_back(static_cast<uint32_t>(rng()));
        for (uint32_t s : seqs) {
          ASSERT_EQ(w.check(s), ModelVerdict(started, last, jump, s))
              << "jump=" << jump << " started=" << started << " last=" << last << " seq=" << s;
        }
      }
    }
  }
}

TEST(ReplayWindow, DeviceStreamWithLossReorderAndDuplicates) {
  // A sender counting 1..N; the network drops, duplicates and reorders. Accepted sequences must be
  // strictly increasing, every first arrival of an in-order packet is accepted.
  std::mt19937 rng(3);
  ReplayWindow w;
  uint32_t last_accepted = 0;
  size_t accepted = 0, rejected = 0;
  std::vector<uint32_t> arrivals;
  for (uint32_t s = 1; s <= 20000; ++s) {
    if (rng() % 10 == 0) continue;                       // lost
    arrivals.push_back(s);
    if (rng() % 20 == 0) arrivals.push_back(s);          // duplicated
    if (rng() % 15 == 0 && arrivals.size() > 2) std::swap(arrivals[arrivals.size() - 1], arrivals[arrivals.size() - 2]);
  }
  for (uint32_t s : arrivals) {
    if (w.check(s) == Verdict::kFresh) {
      ASSERT_GT(s, last_accepted);
      w.commit(s);
      last_accepted = s;
      ++accepted;
    } else {
      ASSERT_LE(s, last_accepted);  // never too far ahead in this stream
      ++rejected;
    }
  }
  EXPECT_GT(accepted, 17000u);
  EXPECT_GT(rejected, 500u);
}

TEST(ReplayWindow, VerdictCodes) {
  EXPECT_STREQ(dsp::replay_verdict_code(Verdict::kFresh), "OK");
  EXPECT_STREQ(dsp::replay_verdict_code(Verdict::kReplay), "ERR_PACKET_REPLAY");
  EXPECT_STREQ(dsp::replay_verdict_code(Verdict::kTooFarAhead), "ERR_PACKET_SEQUENCE_JUMP");
  EXPECT_STREQ(dsp::replay_verdict_code(static_cast<Verdict>(42)), "ERR_PACKET_UNKNOWN");
}

// ---------------------------------------------------------------------------------------------
// DownlinkIvScheme

std::vector<uint8_t> Nonce(uint8_t flags, uint32_t ssrc) {
  // The conventional hello nonce: 01 <flags> 0000 <ssrc> 00000000 00000000.
  PacketHeader n;
  n.type = 0x01;
  n.flags = flags;
  n.payload_length = 0;
  n.ssrc = ssrc;
  std::vector<uint8_t> bytes(16);
  dsp::write_header(n, bytes.data());
  return bytes;
}

TEST(DownlinkIvScheme, HeaderFieldsFollowTheScheme) {
  const std::vector<uint8_t> nonce = Nonce(0x00, 0x12345678u);
  dsp::DownlinkIvScheme s(nonce.data());
  EXPECT_EQ(s.last_sequence(), 0u);
  PacketHeader h;
  ASSERT_TRUE(s.next(100, 0, &h));
  EXPECT_EQ(h.type, 0x01);
  EXPECT_EQ(h.flags, 0x01);  // nonce.flags ^ 1
  EXPECT_EQ(h.payload_length, 100);
  EXPECT_EQ(h.ssrc, 0x12345678u);
  EXPECT_EQ(h.timestamp, 0u);  // the first packet may use timestamp 0
  EXPECT_EQ(h.sequence, 1u);   // the device requires the first sequence to be 1 (> 0)
  EXPECT_EQ(s.last_sequence(), 1u);
  EXPECT_EQ(s.last_timestamp(), 0u);

  ASSERT_TRUE(s.next(7, 60, &h));
  EXPECT_EQ(h.sequence, 2u);
  EXPECT_EQ(h.timestamp, 60u);
  EXPECT_EQ(h.payload_length, 7);
  ASSERT_TRUE(s.next(7, 60, &h));  // same media time: raised by one
  EXPECT_EQ(h.timestamp, 61u);
  ASSERT_TRUE(s.next(7, 10, &h));  // clock went backwards: still raised
  EXPECT_EQ(h.timestamp, 62u);
  ASSERT_TRUE(s.next(7, 1000, &h));  // jumps forward are kept as given
  EXPECT_EQ(h.timestamp, 1000u);
  EXPECT_EQ(h.sequence, 5u);

  // The flags byte differs from the nonce's whatever the nonce says.
  for (int f = 0; f < 256; ++f) {
    const std::vector<uint8_t> n = Nonce(static_cast<uint8_t>(f), 1);
    dsp::DownlinkIvScheme x(n.data());
    ASSERT_TRUE(x.next(1, 0, &h));
    EXPECT_NE(h.flags, f);
    EXPECT_EQ(h.flags, f ^ 1);
  }
  // The device checks only the type byte and drops anything but 0x01: downlink packets parse.
  const std::vector<uint8_t> n = Nonce(0, 9);
  dsp::DownlinkIvScheme y(n.data());
  ASSERT_TRUE(y.next(33, 5, &h));
  std::vector<uint8_t> d(16 + 33);
  dsp::write_header(h, d.data());
  PacketHeader parsed;
  EXPECT_EQ(dsp::parse_datagram(d.data(), d.size(), &parsed), PacketError::kOk);
}

struct Range {
  u128 first;
  u128 end;  // exclusive; may exceed 2^128 - 1 only by wrapping, which the test rejects separately
  int owner;  // 0 = downlink, 1 = uplink
  size_t index;
};

// Sorts the counter ranges and checks that no two overlap (so no counter block, i.e. no keystream
// block, is used twice), ignoring overlaps inside `allowed_owner` (uplink IVs collide among
// themselves by the firmware's design: that is the weakness the downlink scheme works around).
void ExpectDisjoint(std::vector<Range> ranges, int allowed_owner) {
  std::sort(ranges.begin(), ranges.end(), [](const Range& a, const Range& b) { return a.first < b.first; });
  // Sweep: for each range, compare against the furthest-reaching earlier range of each owner.
  bool have[2] = {false, false};
  Range reach[2];
  size_t overlaps = 0;
  for (const Range& r : ranges) {
    for (int o = 0; o < 2; ++o) {
      if (!have[o]) continue;
      if (o == allowed_owner && r.owner == allowed_owner) continue;
      if (reach[o].end > r.first) {
        if (++overlaps <= 5) {
          ADD_FAILURE() << "counter ranges overlap: " << (reach[o].owner ? "uplink" : "downlink") << " #"
                        << reach[o].index << " and " << (r.owner ? "uplink" : "downlink") << " #" << r.index;
        }
      }
    }
    if (!have[r.owner] || r.end > reach[r.owner].end) {
      reach[r.owner] = r;
      have[r.owner] = true;
    }
  }
  EXPECT_EQ(overlaps, 0u);
}

TEST(DownlinkIvScheme, NoCounterBlockRepeatsAcrossDownlinkAndUplink) {
  std::mt19937 rng(2024);
  for (uint8_t nonce_flags : {uint8_t{0x00}, uint8_t{0x01}, uint8_t{0xFE}, uint8_t{0xFF}}) {
    for (uint32_t ssrc : {0u, 0x12345678u, 0xFFFFFFFFu}) {
      const std::vector<uint8_t> nonce = Nonce(nonce_flags, ssrc);
      const PacketHeader n = dsp::read_header(nonce.data());
      dsp::DownlinkIvScheme scheme(nonce.data());
      std::vector<Range> ranges;
      std::vector<uint32_t> down_timestamps;
      constexpr size_t kPackets = 5000;
      // Downlink: a media clock in ms that mostly advances 60 per packet, sometimes stalls, goes
      // backwards, or jumps (a new TTS turn); payloads of every size up to the MTU.
      uint32_t clock = rng() % 1000;
      for (size_t i = 0; i < kPackets; ++i) {
        const uint32_t r = rng() % 100;
        if (r < 70) clock += 60;
        else if (r < 80) clock -= std::min<uint32_t>(clock, rng() % 500);
        else if (r < 90) clock += rng() % 100000;
        const uint16_t len = static_cast<uint16_t>(i % 7 == 0 ? dsp::kMaxDatagramSize - 16 : rng() % 1485);
        PacketHeader h;
        ASSERT_TRUE(scheme.next(len, clock, &h));
        ASSERT_EQ(h.sequence, i + 1);
        ASSERT_EQ(h.payload_length, len);
        if (i > 0) {
          ASSERT_GT(h.timestamp, down_timestamps.back());
        }
        down_timestamps.push_back(h.timestamp);
        const u128 c = CounterOf(h);
        ASSERT_FALSE(c + BlocksOf(len) < c) << "range wraps past 2^128";
        ranges.push_back({c, c + BlocksOf(len), 0, i});
      }
      // Uplink from the same nonce, as the firmware builds it: nonce flags and ssrc, payload_length,
      // timestamp 0 or (server AEC) the timestamp of a downlink packet just played, or anything at
      // all, and sequence 1, 2, ...
      for (size_t i = 0; i < kPackets; ++i) {
        PacketHeader u = n;
        u.payload_length = static_cast<uint16_t>(rng() % 1485);
        const uint32_t r = rng() % 3;
        u.timestamp = r == 0 ? 0u : r == 1 ? down_timestamps[rng() % kPackets] : static_cast<uint32_t>(rng());
        u.sequence = static_cast<uint32_t>(i + 1);
        const u128 c = CounterOf(u);
        ranges.push_back({c, c + BlocksOf(u.payload_length), 1, i});
      }
      ExpectDisjoint(ranges, /*allowed_owner=*/1);
    }
  }
}

TEST(DownlinkIvScheme, UplinkWithEchoedDownlinkTimestampsNeverCollides) {
  // The worst case the firmware can produce: uplink packets that copy a downlink packet's timestamp
  // (server AEC) and use the same payload length and a sequence equal to the downlink's. Only the
  // flags byte then separates the IVs, and it must.
  const std::vector<uint8_t> nonce = Nonce(0x00, 0xA5A5A5A5u);
  dsp::DownlinkIvScheme scheme(nonce.data());
  std::vector<Range> ranges;
  for (size_t i = 0; i < 3000; ++i) {
    PacketHeader d;
    ASSERT_TRUE(scheme.next(static_cast<uint16_t>(i % 1485), static_cast<uint32_t>(i * 60), &d));
    ranges.push_back({CounterOf(d), CounterOf(d) + BlocksOf(d.payload_length), 0, i});
    PacketHeader u = dsp::read_header(nonce.data());
    u.payload_length = d.payload_length;
    u.timestamp = d.timestamp;
    u.sequence = d.sequence;
    ranges.push_back({CounterOf(u), CounterOf(u) + BlocksOf(u.payload_length), 1, i});
  }
  ExpectDisjoint(ranges, 1);
}

TEST(DownlinkIvScheme, ConsecutiveRangesAreAtLeast2To32Apart) {
  const std::vector<uint8_t> nonce = Nonce(0, 1);
  dsp::DownlinkIvScheme scheme(nonce.data());
  PacketHeader prev;
  ASSERT_TRUE(scheme.next(1484, 0, &prev));
  for (int i = 0; i < 10000; ++i) {
    PacketHeader h;
    ASSERT_TRUE(scheme.next(1484, 0, &h));  // a stalled clock: the scheme alone keeps ranges apart
    ASSERT_GE(CounterOf(h) - CounterOf(prev), (u128{1} << 32));
    ASSERT_EQ(h.sequence, prev.sequence + 1);
    ASSERT_EQ(h.timestamp, prev.timestamp + 1);
    prev = h;
  }
}

TEST(DownlinkIvScheme, TimestampExhaustionReturnsFalseAndKeepsState) {
  const std::vector<uint8_t> nonce = Nonce(0, 77);
  PacketHeader h;
  {
    // A timestamp of UINT32_MAX is never used: the next packet's counter would carry into the ssrc.
    dsp::DownlinkIvScheme s(nonce.data());
    h.sequence = 12345;
    EXPECT_FALSE(s.next(10, UINT32_MAX, &h));
    EXPECT_EQ(h.sequence, 12345u) << "header written on failure";
    EXPECT_EQ(s.last_sequence(), 0u) << "a refused packet consumed a sequence";
    ASSERT_TRUE(s.next(10, 5, &h));
    EXPECT_EQ(h.sequence, 1u);
  }
  {
    dsp::DownlinkIvScheme s(nonce.data());
    ASSERT_TRUE(s.next(10, UINT32_MAX - 2, &h));
    ASSERT_TRUE(s.next(10, 0, &h));  // raised to UINT32_MAX - 1
    EXPECT_EQ(h.timestamp, UINT32_MAX - 1);
    EXPECT_EQ(h.sequence, 2u);
    // Every further packet would need timestamp UINT32_MAX: exhausted, whatever the clock says.
    for (uint32_t t : {0u, 1u, UINT32_MAX - 1, UINT32_MAX}) {
      EXPECT_FALSE(s.next(10, t, &h)) << t;
    }
    EXPECT_EQ(s.last_sequence(), 2u);
    EXPECT_EQ(s.last_timestamp(), UINT32_MAX - 1);
  }
}

// Moves a scheme to just before the end of its sequence space. The scheme has no setter, and 2^32
// real calls take ~10 s, so: it is trivially copyable; find the byte offset of the sequence counter
// by its value, set it, and prove the edit took through the public getter. If the layout ever
// defeats the search, fall back to calling next() until the sequence gets there.
void FastForwardSequence(dsp::DownlinkIvScheme& s, uint32_t target) {
  const uint32_t current = s.last_sequence();
  ASSERT_GT(current, 0u);
  ASSERT_LT(current, target);
  unsigned char bytes[sizeof(dsp::DownlinkIvScheme)];
  int found = -1;
  constexpr bool kBytewise = std::is_trivially_copyable<dsp::DownlinkIvScheme>::value;
  for (size_t off = 0; kBytewise && off + 4 <= sizeof bytes; ++off) {
    std::memcpy(bytes, &s, sizeof bytes);
    uint32_t v;
    std::memcpy(&v, bytes + off, 4);
    if (v != current) continue;
    dsp::DownlinkIvScheme probe = s;
    std::memcpy(bytes + off, &target, 4);
    std::memcpy(static_cast<void*>(&probe), bytes, sizeof bytes);
    if (probe.last_sequence() == target && probe.last_timestamp() == s.last_timestamp()) {
      ASSERT_EQ(found, -1) << "two candidate offsets for the sequence counter";
      found = static_cast<int>(off);
    }
  }
  if (found >= 0) {
    std::memcpy(bytes, &s, sizeof bytes);
    std::memcpy(bytes + found, &target, 4);
    std::memcpy(static_cast<void*>(&s), bytes, sizeof bytes);
  } else {
    PacketHeader h;
    while (s.last_sequence() < target) ASSERT_TRUE(s.next(1, 0, &h));
  }
  ASSERT_EQ(s.last_sequence(), target);
}

TEST(DownlinkIvScheme, SequenceExhaustionReturnsFalse) {
  const std::vector<uint8_t> nonce = Nonce(0, 0xA1B2C3D4u);
  dsp::DownlinkIvScheme s(nonce.data());
  PacketHeader h;
  for (uint32_t i = 0; i < 7; ++i) ASSERT_TRUE(s.next(60, 1000 + i, &h));
  FastForwardSequence(s, UINT32_MAX - 3);
  ASSERT_FALSE(HasFatalFailure());
  EXPECT_EQ(s.last_timestamp(), 1006u);

  std::vector<Range> ranges;
  for (uint32_t k : {2u, 1u, 0u}) {  // sequences UINT32_MAX-2, UINT32_MAX-1, UINT32_MAX
    ASSERT_TRUE(s.next(1484, 0, &h));
    EXPECT_EQ(h.sequence, UINT32_MAX - k);
    const u128 c = CounterOf(h);
    ranges.push_back({c, c + BlocksOf(1484), 0, ranges.size()});
    // The last blocks carry out of the sequence into the timestamp, never into the ssrc: the
    // (type, flags, length, ssrc) prefix is the same for the first and the last block.
    EXPECT_EQ(c >> 64, (c + BlocksOf(1484) - 1) >> 64);
  }
  EXPECT_EQ(h.sequence, UINT32_MAX);
  EXPECT_EQ(s.last_sequence(), UINT32_MAX);
  ExpectDisjoint(ranges, -1);
  // Exhausted: refused whatever the clock says, and nothing moves.
  const uint32_t ts = s.last_timestamp();
  h.sequence = 42;
  for (uint32_t t : {0u, ts, ts + 1000, UINT32_MAX - 1, UINT32_MAX}) EXPECT_FALSE(s.next(60, t, &h)) << t;
  EXPECT_EQ(h.sequence, 42u) << "header written on failure";
  EXPECT_EQ(s.last_sequence(), UINT32_MAX);
  EXPECT_EQ(s.last_timestamp(), ts);
}

}  // namespace
