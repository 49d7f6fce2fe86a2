// PreferredCut: Triton's dynamic batcher's rule for how much of a walk over waiting
// requests forms the next batch, and whether it leaves now. One rule for both users:
// the dynamic batcher (walking its queue) and the sequence batcher's oldest strategy
// (walking its ready sequences), which in Triton is a dynamic batcher over sequences.
//
// The walk adds candidates in order while they fit max_batch_size (and match the
// batch's shape, which the caller checks). The best prefix is the longest one that
// lands on a preferred size, else the one before a candidate that would take the
// batch past the largest preferred size (max_batch_size without preferred sizes).
// A best prefix leaves at once unless the oldest request has waited out the delay
// (then everything walked leaves); any other batch leaves when it cannot grow or
// when the delay is 0 or lapsed, and waits otherwise.
//
// Thread safety: none (a value used by one walk, under its scheduler's lock).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace tritonx {

class PreferredCut {
 public:
  // `preferred`: sorted ascending.
  PreferredCut(int64_t max_batch, const std::vector<int32_t>& preferred)
      : max_batch_(max_batch),
        max_preferred_(preferred.empty() ? max_batch : preferred.back()),
        preferred_(preferred) {}

  // Before a candidate of `rows` is checked (shape, strategy): marks the best prefix
  // when it would take the batch past the largest preferred size.
  void Consider(int64_t rows) {
    if (count_ > 0 && best_ == 0 && total_ + rows > max_preferred_) best_ = count_;
  }
  bool Fits(int64_t rows) const { return total_ + rows <= max_batch_; }
  // The candidate joined the batch.
  void Add(int64_t rows) {
    total_ += rows;
    ++count_;
    if (std::binary_search(preferred_.begin(), preferred_.end(),
                           static_cast<int32_t>(total_))) {
      best_ = count_;
    }
  }

  size_t count() const { return count_; }
  // How many of the walked candidates leave now; 0: wait (until the delay lapses or
  // a request arrives). `blocked`: the walk stopped on a candidate that did not fit.
  size_t Take(bool blocked, bool has_delay, bool delay_lapsed, bool stopping) const {
    const size_t walked = std::max<size_t>(count_, 1);  // a batch is never empty
    if (best_ > 0 && !delay_lapsed) return best_;
    if (blocked || total_ >= max_preferred_ || !has_delay || delay_lapsed || stopping) {
      return walked;
    }
    return 0;
  }

 private:
  const int64_t max_batch_;
  const int64_t max_preferred_;
  const std::vector<int32_t>& preferred_;
  int64_t total_ = 0;
  size_t count_ = 0;
  size_t best_ = 0;
};

}  // namespace tritonx
