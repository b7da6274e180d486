#include "encoder_ladder.h"

#include <stdexcept>
#include <utility>

namespace xz::pipeline {

// Default ladder, the same as DEFAULT_ENCODER_LADDER (src/native/pipeline.ts, where the
// measurements are): CPU down, bandwidth up, quality kept.
EncoderLadder::EncoderLadder()
    : EncoderLadder({{4, false, 40000}, {8, true, 64000}, {0, true, 64000}}) {}

EncoderLadder::EncoderLadder(std::vector<EncoderRung> rungs) : rungs_(std::move(rungs)) {
  if (rungs_.empty()) throw std::invalid_argument("encoder ladder needs at least one rung");
  for (const auto& r : rungs_) {
    if (r.complexity < 0 || r.complexity > 10) throw std::invalid_argument("ladder complexity must be in [0, 10]");
    if (r.bitrate != 0 && (r.bitrate < 500 || r.bitrate > 512000)) {
      throw std::invalid_argument("ladder bitrate must be 0 (the stream's) or in [500, 512000]");
    }
  }
}

const EncoderRung& EncoderLadder::rung(int level) const {
  if (level < 0) level = 0;
  if (level >= rungs()) level = rungs() - 1;
  return rungs_[static_cast<size_t>(level)];
}

}  // namespace xz::pipeline
