#include "encoder_ladder.h"

#include <stdexcept>
#include <utility>

namespace xz::pipeline {

// Default ladder: see bench/quality-study (README "Encoder settings") for the measurements.
EncoderLadder::EncoderLadder()
    : EncoderLadder({{5, false}, {3, false}, {1, false}, {5, true}, {0, true}}) {}

EncoderLadder::EncoderLadder(std::vector<EncoderRung> rungs) : rungs_(std::move(rungs)) {
  if (rungs_.empty()) throw std::invalid_argument("encoder ladder needs at least one rung");
  for (const auto& r : rungs_) {
    if (r.complexity < 0 || r.complexity > 10) throw std::invalid_argument("ladder complexity must be in [0, 10]");
  }
}

const EncoderRung& EncoderLadder::rung(int level) const {
  if (level < 0) level = 0;
  if (level >= rungs()) level = rungs() - 1;
  return rungs_[static_cast<size_t>(level)];
}

}  // namespace xz::pipeline
