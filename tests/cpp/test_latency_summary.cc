// LatencySummary (--metrics-config summary_latencies): cumulative count and sum,
// quantiles with prometheus-cpp's rank rule over a sliding window, bounded samples;
// and ModelStats recording into it. Time is passed in: no test sleeps.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include "core/latency_summary.h"
#include "core/model_stats.h"

namespace tritonx {
namespace {

constexpr uint64_t kSecond = 1'000'000'000ULL;

LatencySummaryOptions Options(std::vector<double> quantiles) {
  LatencySummaryOptions options;
  options.quantiles = std::move(quantiles);
  return options;
}

TEST(LatencySummaryTest, EmptyWindowIsNan) {
  LatencySummary summary(LatencySummaryOptions{});
  SummarySnapshot s = summary.Snapshot(5 * kSecond);
  EXPECT_EQ(s.count, 0u);
  EXPECT_EQ(s.sum, 0u);
  ASSERT_EQ(s.quantiles.size(), 5u);  // Triton's default 0.5 0.9 0.95 0.99 0.999
  for (double q : s.quantiles) EXPECT_TRUE(std::isnan(q));
}

TEST(LatencySummaryTest, SmallSamplesGiveTritonsValues) {
  // Values Triton 2.51 reported for three requests: p50 is the smallest, p99 the
  // middle one (prometheus-cpp returns the value of rank floor(q·n)).
  LatencySummary summary(Options({0.5, 0.99, 1.0}));
  for (uint64_t v : {78000u, 3425u, 4416u}) summary.Observe(v, kSecond);
  SummarySnapshot s = summary.Snapshot(2 * kSecond);
  EXPECT_EQ(s.count, 3u);
  EXPECT_EQ(s.sum, 78000u + 3425u + 4416u);
  EXPECT_EQ(s.quantiles, (std::vector<double>{3425, 4416, 78000}));

  LatencySummary one(Options({0.5, 0.999}));
  one.Observe(143, 0);
  EXPECT_EQ(one.Snapshot(0).quantiles, (std::vector<double>{143, 143}));
}

TEST(LatencySummaryTest, ExactWhileEveryObservationIsKept) {
  LatencySummary summary(Options({0.25, 0.5, 0.9, 0.99}));
  for (uint64_t v = 100; v >= 1; --v) summary.Observe(v, 3 * kSecond);
  SummarySnapshot s = summary.Snapshot(3 * kSecond);
  EXPECT_EQ(s.count, 100u);
  EXPECT_EQ(s.sum, 5050u);
  EXPECT_EQ(s.quantiles, (std::vector<double>{25, 50, 90, 99}));
}

TEST(LatencySummaryTest, WindowDropsOldObservations) {
  // 60 s in 5 buckets of 12 s: an observation counts for between 48 and 60 s.
  LatencySummary summary(Options({1.0}));  // the window's largest value
  summary.Observe(1000, 1 * kSecond);      // bucket [0, 12)
  summary.Observe(7, 50 * kSecond);        // bucket [48, 60)
  EXPECT_EQ(summary.Snapshot(59 * kSecond).quantiles[0], 1000);
  // At 60 s the first bucket has left the window; count and sum stay cumulative.
  SummarySnapshot s = summary.Snapshot(60 * kSecond);
  EXPECT_EQ(s.quantiles[0], 7);
  EXPECT_EQ(s.count, 2u);
  EXPECT_EQ(s.sum, 1007u);
  // Its slot starts over when it is used again.
  summary.Observe(9, 61 * kSecond);
  s = summary.Snapshot(61 * kSecond);
  EXPECT_EQ(s.quantiles[0], 9);
  EXPECT_EQ(s.count, 3u);
  // Long after: nothing in the window, the cumulative part unchanged.
  s = summary.Snapshot(200 * kSecond);
  EXPECT_TRUE(std::isnan(s.quantiles[0]));
  EXPECT_EQ(s.count, 3u);
  EXPECT_EQ(s.sum, 1016u);
  summary.Observe(3, 240 * kSecond);  // the slot of [0, 12) once more
  EXPECT_EQ(summary.Snapshot(240 * kSecond).quantiles[0], 3);
}

TEST(LatencySummaryTest, BoundedSampleStaysClose) {
  // 200k observations in one bucket, far past its 1024 kept values: a uniform
  // sample, so quantiles land within a few percent of rank.
  LatencySummaryOptions options = Options({0.5, 0.9, 0.99});
  LatencySummary summary(options);
  uint64_t x = 12345;
  for (int i = 0; i < 200000; ++i) {
    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    summary.Observe((x >> 33) % 10000, kSecond);  // uniform over [0, 10000)
  }
  SummarySnapshot s = summary.Snapshot(kSecond);
  EXPECT_EQ(s.count, 200000u);
  EXPECT_NEAR(s.quantiles[0], 5000, 400);
  EXPECT_NEAR(s.quantiles[1], 9000, 250);
  EXPECT_NEAR(s.quantiles[2], 9900, 100);
}

TEST(LatencySummaryTest, SampledBucketsAreWeightedByTheirCounts) {
  // 100000 fast observations (sampled to 1024) and 100 slow ones in a later
  // bucket: each kept fast value stands for ~98 observations.
  LatencySummary summary(Options({0.5, 0.999, 0.9995}));
  for (int i = 0; i < 100000; ++i) summary.Observe(10, kSecond);
  for (int i = 0; i < 100; ++i) summary.Observe(1000, 13 * kSecond);
  SummarySnapshot s = summary.Snapshot(14 * kSecond);
  EXPECT_EQ(s.quantiles, (std::vector<double>{10, 10, 1000}));
}

TEST(LatencySummaryTest, ModelStatsRecordsOnlyWhenEnabled) {
  ModelStats off;
  off.RecordSuccess(5000, 1000, 1000, 2000, 1000);
  EXPECT_TRUE(off.LatencySummaries().empty());

  ModelStats on(std::make_shared<LatencySummaryOptions>(Options({0.5})));
  on.RecordSuccess(5999, 1000, 1000, 2000, 1000);  // ns: observed as whole µs
  on.RecordSuccess(9000, 2000, 1000, 5000, 1000);
  on.RecordCacheHit(3000, 0, 2000);
  on.RecordCacheMiss(4000);
  std::vector<SummarySnapshot> s = on.LatencySummaries();
  ASSERT_EQ(s.size(), kLatencyKinds);
  auto at = [&](LatencyKind kind) { return s[static_cast<size_t>(kind)]; };
  // Cache hits count in the queue summary but not in the request summary (Triton).
  EXPECT_EQ(at(LatencyKind::kRequest).count, 2u);
  EXPECT_EQ(at(LatencyKind::kRequest).sum, 5u + 9u);
  EXPECT_EQ(at(LatencyKind::kQueue).count, 3u);
  EXPECT_EQ(at(LatencyKind::kComputeInfer).count, 2u);
  EXPECT_EQ(at(LatencyKind::kComputeInfer).quantiles[0], 2);
  EXPECT_EQ(at(LatencyKind::kCacheHit).sum, 2u);
  EXPECT_EQ(at(LatencyKind::kCacheMiss).sum, 4u);
  // The statistics API's counters are unchanged by summaries.
  EXPECT_EQ(on.Snapshot().success.count, 3u);
}

}  // namespace
}  // namespace tritonx
