// Downlink encoder settings under load: level 0 is each stream's configured quality; level k >= 1
// uses rung k-1 of the ladder, each rung cheaper in CPU than the last (lower complexity first, then
// CELT-only; a rung may raise the bitrate, which costs bandwidth but hardly any CPU and keeps the
// quality up). The scheduler moves one level at a time, down
// when the threadpool queue wait exceeds its budget, back up with hysteresis when load falls.
// The rungs come from the quality-vs-CPU study in bench/ (see the README).
#pragma once

#include <cstdint>
#include <vector>

namespace xz::pipeline {

struct EncoderRung {
  int complexity;  // 0..10
  bool celt_only;  // force CELT (skips SILK analysis: the cheapest mode)
  int bitrate = 0;  // bits/s on this rung; 0 = the stream's configured bitrate
};

class EncoderLadder {
 public:
  EncoderLadder();  // the default ladder
  explicit EncoderLadder(std::vector<EncoderRung> rungs);
  const EncoderRung& rung(int level) const;
  int rungs() const { return static_cast<int>(rungs_.size()); }

 private:
  std::vector<EncoderRung> rungs_;
};

}  // namespace xz::pipeline
