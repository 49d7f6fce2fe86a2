// LatencySummary: Triton's latency summaries (--metrics-config summary_latencies=true)
// for one kind of duration: a cumulative count and sum, and quantiles over the
// observations of a sliding time window.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace tritonx {

// Server-wide settings of the latency summaries (--metrics-config). The window is
// prometheus-cpp's Summary default (Triton's): 60 s in 5 age buckets.
struct LatencySummaryOptions {
  std::vector<double> quantiles = {0.5, 0.9, 0.95, 0.99, 0.999};
  uint64_t max_age_ns = 60'000'000'000ULL;
  uint32_t age_buckets = 5;
  // Observations kept per age bucket: past it, a uniform sample of the bucket.
  uint32_t bucket_capacity = 1024;
};

// What a scrape reports: cumulative count and sum (what Triton's _count and _sum
// are), and one value per configured quantile over the window (NaN when the
// window holds no observation, which Prometheus renders "Nan").
struct SummarySnapshot {
  uint64_t count = 0;
  uint64_t sum = 0;
  std::vector<double> quantiles;
};

// The window is `age_buckets` disjoint buckets of max_age/age_buckets each; an
// observation goes into the bucket of its time, and a bucket older than the window
// is reset when its slot is reused, so quantiles cover between (n-1)/n and all of
// max_age, as prometheus-cpp's TimeWindowQuantiles do. Each bucket keeps at most
// `bucket_capacity` values, reservoir-sampled (Vitter's algorithm R) past that, with
// the bucket's true count, so that memory (capacity × buckets × 8 bytes) and the
// scrape's cost are bounded whatever the request rate.
//
// Why not CKMS (prometheus-cpp's estimator): while a bucket holds every observation
// (up to `bucket_capacity` per max_age/age_buckets, about 85 requests/s with the
// defaults) the quantiles here are exact, and they are picked with prometheus-cpp's
// rank rule (the value of rank max(1, floor(q·n))), so small samples give Triton's
// numbers. Past that they come from a uniform sample of up to
// capacity × buckets values weighted by their buckets' counts, whose rank error is
// about sqrt(q(1-q)/samples): ~0.7% at p50 and ~0.14% at p99 with the defaults, in
// line with Triton's default targets (0.05, 0.01) for p50/p90 and within a small
// factor of 0.001 in the tail. That is a few dozen lines with no tuning, instead of
// a streaming estimator whose invariants need their own tests.
//
// Thread safety: none; the owner serializes every call (ModelStats calls it under
// its own mutex). Time is passed in (`now_ns`, any monotonic clock) so that tests
// drive the window without sleeping. Copyable: a copy is a snapshot of the window.
class LatencySummary {
 public:
  explicit LatencySummary(const LatencySummaryOptions& options);

  // One observation of `value` (Triton observes whole microseconds) at `now_ns`.
  void Observe(uint64_t value, uint64_t now_ns);

  // Count, sum and the quantiles of the window ending at `now_ns`; sorts a copy of
  // the window's values (call it on a copy to keep the owner's lock short).
  SummarySnapshot Snapshot(uint64_t now_ns) const;

 private:
  struct Bucket {
    uint64_t epoch = 0;  // now_ns / bucket duration when the bucket was (re)started
    uint64_t count = 0;  // observations in this bucket, sampled or not
    std::vector<uint64_t> values;
  };

  uint64_t NextRandom();

  std::vector<double> quantiles_;
  uint64_t bucket_ns_;
  uint32_t capacity_;
  std::vector<Bucket> buckets_;
  uint64_t count_ = 0;
  uint64_t sum_ = 0;
  uint64_t epoch_ = 0;                    // the bucket epoch of the last observation
  uint64_t epoch_start_ns_ = 0;           // and where it starts (epoch_ * bucket_ns_)
  uint64_t rng_ = 0x9E3779B97F4A7C15ULL;  // xorshift64 state, never 0
};

}  // namespace tritonx
