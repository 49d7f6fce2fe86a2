#include "latency_summary.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>

namespace tritonx {

LatencySummary::LatencySummary(const LatencySummaryOptions& options)
    : quantiles_(options.quantiles),
      bucket_ns_(std::max<uint64_t>(
          1, options.max_age_ns / std::max<uint32_t>(1, options.age_buckets))),
      capacity_(std::max<uint32_t>(1, options.bucket_capacity)),
      buckets_(std::max<uint32_t>(1, options.age_buckets)) {}

uint64_t LatencySummary::NextRandom() {
  rng_ ^= rng_ << 13;
  rng_ ^= rng_ >> 7;
  rng_ ^= rng_ << 17;
  return rng_;
}

void LatencySummary::Observe(uint64_t value, uint64_t now_ns) {
  count_ += 1;
  sum_ += value;
  // The bucket of `now_ns`: usually the last one's, without a division.
  if (now_ns - epoch_start_ns_ >= bucket_ns_ || now_ns < epoch_start_ns_) {
    epoch_ = now_ns / bucket_ns_;
    epoch_start_ns_ = epoch_ * bucket_ns_;
  }
  const uint64_t epoch = epoch_;
  Bucket& bucket = buckets_[epoch % buckets_.size()];
  // A slot last used a whole window ago starts over. (An observation stamped a
  // little before the slot's current epoch just joins it.)
  if (epoch > bucket.epoch || bucket.count == 0) {
    bucket.epoch = epoch;
    bucket.count = 0;
    bucket.values.clear();  // keeps its capacity: no allocation once warm
  }
  bucket.count += 1;
  if (bucket.values.size() < capacity_) {
    bucket.values.push_back(value);
    return;
  }
  // Algorithm R: the n-th value replaces a random kept one with probability
  // capacity/n, so the kept values stay a uniform sample of the bucket.
  // A uniform index below count by multiply-shift (Lemire), not a division.
  const uint64_t slot = static_cast<uint64_t>(
      (static_cast<unsigned __int128>(NextRandom()) * bucket.count) >> 64);
  if (slot < capacity_) bucket.values[slot] = value;
}

SummarySnapshot LatencySummary::Snapshot(uint64_t now_ns) const {
  SummarySnapshot out;
  out.count = count_;
  out.sum = sum_;
  const uint64_t epoch = now_ns / bucket_ns_;
  const uint64_t oldest =
      epoch >= buckets_.size() - 1 ? epoch - (buckets_.size() - 1) : 0;
  // (value, weight): a kept value stands for count/kept observations of its bucket.
  std::vector<std::pair<uint64_t, double>> window;
  double total = 0;
  for (const Bucket& bucket : buckets_) {
    if (bucket.count == 0 || bucket.epoch < oldest || bucket.epoch > epoch) continue;
    const double weight =
        static_cast<double>(bucket.count) / static_cast<double>(bucket.values.size());
    for (uint64_t value : bucket.values) window.emplace_back(value, weight);
    total += static_cast<double>(bucket.count);
  }
  out.quantiles.assign(quantiles_.size(), std::numeric_limits<double>::quiet_NaN());
  if (window.empty()) return out;
  std::sort(window.begin(), window.end());
  for (size_t i = 0; i < quantiles_.size(); ++i) {
    // prometheus-cpp's CKMS rank rule, exact: the value of rank floor(q·n), at
    // least the first (so p50 of {a, b, c} is a and p99 is b, as in Triton).
    const double scaled = quantiles_[i] * total;
    const double rank = scaled >= 1.0 ? std::floor(scaled) : 1.0;  // also NaN
    double seen = 0;
    uint64_t value = window.back().first;
    for (const auto& [v, w] : window) {
      seen += w;
      if (seen + 1e-9 >= rank) {
        value = v;
        break;
      }
    }
    out.quantiles[i] = static_cast<double>(value);
  }
  return out;
}

}  // namespace tritonx
