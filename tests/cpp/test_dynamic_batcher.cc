// The scheduler through tritonx::Model with a C++ test executor: batch formation,
// queue delay, priorities and queue policies (ordering, concurrency, cancel and stop:
// test_dynamic_batcher_lifecycle.cc).
//
// Timing assertions are one-sided or carry generous slack: the machine running these
// may be heavily shared.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "core/model.h"
#include "dynamic_batcher_fixture.h"
#include "test_util.h"

namespace tritonx {
namespace {

using std::chrono::milliseconds;
using testing::Batching;
using testing::Collector;
using testing::DynamicBatcher;
using testing::ExecutionLog;
using testing::ExecutionRecord;
using testing::Gate;
using testing::MakeRequest;
using testing::MakeSpec;
using testing::MsSince;
using testing::TestExecutor;

TEST_F(DynamicBatcher, FormsLargestPreferredSize) {
  Start(MakeSpec(8), Batching({2, 4}, 300000));
  Block(8);  // a full batch leaves at once
  const uint64_t enqueued = NowNs();
  for (int i = 0; i < 5; ++i) Submit("r" + std::to_string(i));
  gate_.Open();
  ASSERT_TRUE(collector_.WaitFor(6));
  EXPECT_EQ(log_->Totals(), (std::vector<int64_t>{8, 4, 1}));
  // The four leave as soon as the instance is free; the fifth waits out the delay.
  EXPECT_LT(collector_.TimeOf("r3"), collector_.TimeOf("r4"));
  EXPECT_GE(MsSince(enqueued), 299.0);
  for (int i = 0; i < 5; ++i)
    EXPECT_TRUE(collector_.StatusOf("r" + std::to_string(i)).ok());
}

TEST_F(DynamicBatcher, SendsLargestPreferredFormedWhenDelayExpires) {
  Start(MakeSpec(8), Batching({4, 8}, 100000));
  Block(8);
  for (int i = 0; i < 6; ++i) Submit("r" + std::to_string(i));
  gate_.Open();
  ASSERT_TRUE(collector_.WaitFor(7));
  // 6 reaches the preferred 4 but not 8: after the delay the 4 go, then the rest.
  EXPECT_EQ(log_->Totals(), (std::vector<int64_t>{8, 4, 2}));
}

TEST_F(DynamicBatcher, SendsLargestBatchWithinMaxWhenNoPreferredSizeFits) {
  Start(MakeSpec(8), Batching({}, 100000));
  Block(8);
  for (int i = 0; i < 11; ++i) Submit("r" + std::to_string(i));
  gate_.Open();
  ASSERT_TRUE(collector_.WaitFor(12));
  EXPECT_EQ(log_->Totals(), (std::vector<int64_t>{8, 8, 3}));
}

TEST_F(DynamicBatcher, SendsWholeQueueWhenPreferredSizeNotReached) {
  Start(MakeSpec(8), Batching({4}, 50000));
  Block(8);
  for (int i = 0; i < 3; ++i) Submit("r" + std::to_string(i));
  gate_.Open();
  ASSERT_TRUE(collector_.WaitFor(4));
  EXPECT_EQ(log_->Totals(), (std::vector<int64_t>{8, 3}));
}

TEST_F(DynamicBatcher, LoneRequestWaitsAboutTheQueueDelay) {
  constexpr double kDelayMs = 100.0;
  Start(MakeSpec(8), Batching({4}, static_cast<uint64_t>(kDelayMs * 1000)));
  const uint64_t start = NowNs();
  Submit("lone");
  ASSERT_TRUE(collector_.WaitFor(1));
  const double waited = static_cast<double>(collector_.TimeOf("lone") - start) / 1e6;
  EXPECT_GE(waited, kDelayMs - 1.0);
  EXPECT_LT(waited, kDelayMs + 600.0);  // not much more than the delay
  EXPECT_EQ(log_->Totals(), (std::vector<int64_t>{1}));
}

TEST_F(DynamicBatcher, NoDelayMeansNoWaiting) {
  Start(MakeSpec(8), Batching({4}, 0));
  const uint64_t start = NowNs();
  Submit("now");
  ASSERT_TRUE(collector_.WaitFor(1));
  EXPECT_LT(static_cast<double>(collector_.TimeOf("now") - start) / 1e6, 500.0);
}

TEST_F(DynamicBatcher, MaxBatchSizeCapsBatchesOfLargerRequests) {
  Start(MakeSpec(8), Batching({}, 0));
  Block(8);
  Submit("a", 3);
  Submit("b", 3);
  Submit("c", 3);  // 3+3+3 > 8
  Submit("d", 2);
  Submit("e", 5);  // 3+2+5 > 8
  gate_.Open();
  ASSERT_TRUE(collector_.WaitFor(6));
  EXPECT_EQ(log_->Totals(), (std::vector<int64_t>{8, 6, 5, 5}));
  for (const ExecutionRecord& record : log_->Records()) {
    EXPECT_LE(record.total, 8);
    int64_t sum = 0;
    for (int64_t size : record.batch_sizes) sum += size;
    EXPECT_EQ(sum, record.total);
  }
  const InferenceResponse* response = collector_.ResponseOf("e");
  ASSERT_NE(response, nullptr);
  ASSERT_EQ(response->outputs.size(), 1u);
  EXPECT_EQ(response->outputs[0].shape, (Shape{5, 4}));
  const StatsSnapshot stats = model_->Statistics();
  EXPECT_EQ(stats.inference_count, 8u + 16u);
  EXPECT_EQ(stats.execution_count, 4u);
  EXPECT_EQ(stats.batch_stats.at(6).count, 1u);
  EXPECT_EQ(stats.batch_stats.at(5).count, 2u);
}

TEST_F(DynamicBatcher, PriorityLevelOneFirst) {
  SchedulerConfig config;
  config.priority_levels = 2;
  config.default_priority_level = 2;
  Start(MakeSpec(8), config);
  Block();
  auto submit = [&](const std::string& id, uint64_t priority) {
    RequestPtr request = MakeRequest(id);
    request->priority = priority;
    collector_.Attach(request);
    ASSERT_TRUE(model_->Enqueue(request).ok());
  };
  submit("low1", 2);
  submit("default", 0);  // the default level (2)
  submit("high1", 1);
  submit("beyond", 9);  // out of range: the default level
  submit("high2", 1);
  gate_.Open();
  ASSERT_TRUE(collector_.WaitFor(6));
  EXPECT_EQ(ExecutedAfterBlocker(),
            (std::vector<std::string>{"high1", "high2", "low1", "default", "beyond"}));
}

TEST_F(DynamicBatcher, PriorityOrderWithinBatches) {
  SchedulerConfig config = Batching({}, 0);
  config.priority_levels = 2;
  config.default_priority_level = 2;
  Start(MakeSpec(2), config);
  Block(2);
  for (const char* id : {"l1", "l2", "h1", "h2"}) {
    RequestPtr request = MakeRequest(id);
    request->priority = id[0] == 'h' ? 1 : 2;
    collector_.Attach(request);
    ASSERT_TRUE(model_->Enqueue(request).ok());
  }
  gate_.Open();
  ASSERT_TRUE(collector_.WaitFor(5));
  auto records = log_->Records();
  ASSERT_EQ(records.size(), 3u);
  EXPECT_EQ(records[1].ids, (std::vector<std::string>{"h1", "h2"}));
  EXPECT_EQ(records[2].ids, (std::vector<std::string>{"l1", "l2"}));
}

TEST_F(DynamicBatcher, TimeoutRejectAnsweredWhileOnlyInstanceBusy) {
  SchedulerConfig config = Batching({}, 0);
  config.default_queue_policy.timeout_action = TimeoutAction::kReject;
  config.default_queue_policy.default_timeout_us = 50000;
  Start(MakeSpec(8), config);
  Block(8);
  const uint64_t start = NowNs();
  Submit("late");
  // The instance stays blocked: the answer has to come from the sweeper.
  ASSERT_TRUE(collector_.WaitForId("late"));
  const double waited = static_cast<double>(collector_.TimeOf("late") - start) / 1e6;
  EXPECT_GE(waited, 49.0);
  const Status status = collector_.StatusOf("late");
  EXPECT_EQ(status.code(), StatusCode::kUnavailable);
  EXPECT_EQ(status.message(), "Request timeout expired");
  EXPECT_EQ(model_->PendingCount(), 0u);
  gate_.Open();
  ASSERT_TRUE(collector_.WaitFor(2));
  EXPECT_TRUE(ExecutedAfterBlocker().empty());
  const StatsSnapshot stats = model_->Statistics();
  EXPECT_EQ(stats.failures[static_cast<int>(FailureReason::kRejected)], 1u);
  EXPECT_EQ(stats.fail.count, 1u);
  EXPECT_EQ(collector_.Calls("late"), 1);
}

TEST_F(DynamicBatcher, TimeoutDelayRunsAfterOthers) {
  SchedulerConfig config;
  config.default_queue_policy.timeout_action = TimeoutAction::kDelay;
  // An override may only shorten a default timeout (Triton's rule).
  config.default_queue_policy.default_timeout_us = 60000000;
  config.default_queue_policy.allow_timeout_override = true;
  Start(MakeSpec(8), config);
  Block();
  RequestPtr slow = MakeRequest("slowpoke");
  slow->timeout_us = 20000;
  collector_.Attach(slow);
  ASSERT_TRUE(model_->Enqueue(slow).ok());
  std::this_thread::sleep_for(milliseconds(150));  // well past its deadline
  Submit("a");
  Submit("b");
  gate_.Open();
  ASSERT_TRUE(collector_.WaitFor(4));
  EXPECT_EQ(ExecutedAfterBlocker(), (std::vector<std::string>{"a", "b", "slowpoke"}));
  EXPECT_TRUE(collector_.StatusOf("slowpoke").ok());  // delayed, not rejected
}

TEST_F(DynamicBatcher, TimeoutOverrideOnlyShortens) {
  SchedulerConfig config;
  config.default_queue_policy.default_timeout_us = 100000;
  config.default_queue_policy.allow_timeout_override = true;
  Start(MakeSpec(8), config);
  Block();
  const uint64_t start = NowNs();
  RequestPtr longer = MakeRequest("longer");
  longer->timeout_us = 60000000;  // 60 s: may not extend the 100 ms default
  RequestPtr shorter = MakeRequest("shorter");
  shorter->timeout_us = 20000;
  for (const auto& request : {longer, shorter}) {
    collector_.Attach(request);
    ASSERT_TRUE(model_->Enqueue(request).ok());
  }
  ASSERT_TRUE(collector_.WaitFor(2, milliseconds(20000)));
  const double longer_ms =
      static_cast<double>(collector_.TimeOf("longer") - start) / 1e6;
  const double shorter_ms =
      static_cast<double>(collector_.TimeOf("shorter") - start) / 1e6;
  EXPECT_GE(longer_ms, 99.0);
  EXPECT_LT(longer_ms, 10000.0);
  EXPECT_GE(shorter_ms, 19.0);
  EXPECT_EQ(collector_.StatusOf("longer").code(), StatusCode::kUnavailable);
  EXPECT_EQ(collector_.StatusOf("shorter").code(), StatusCode::kUnavailable);
}

TEST_F(DynamicBatcher, RequestTimeoutIgnoredWithoutOverride) {
  SchedulerConfig config;  // no default timeout, no override
  Start(MakeSpec(8), config);
  Block();
  RequestPtr request = MakeRequest("patient");
  request->timeout_us = 1000;
  collector_.Attach(request);
  ASSERT_TRUE(model_->Enqueue(request).ok());
  std::this_thread::sleep_for(milliseconds(100));
  EXPECT_FALSE(collector_.Has("patient"));
  gate_.Open();
  ASSERT_TRUE(collector_.WaitFor(2));
  EXPECT_TRUE(collector_.StatusOf("patient").ok());
}

TEST_F(DynamicBatcher, MaxQueueSizeOverflowRejectsAtEnqueue) {
  SchedulerConfig config = Batching({}, 0);
  config.default_queue_policy.max_queue_size = 2;
  Start(MakeSpec(8), config);
  Block(8);
  Submit("q1");
  Submit("q2");
  RequestPtr overflow = MakeRequest("q3");
  collector_.Attach(overflow);
  const Status status = model_->Enqueue(overflow);
  EXPECT_EQ(status.code(), StatusCode::kUnavailable);
  EXPECT_EQ(status.message(), "[request id: q3] Exceeds maximum queue size");
  gate_.Open();
  ASSERT_TRUE(collector_.WaitFor(3));
  std::this_thread::sleep_for(milliseconds(20));
  EXPECT_EQ(collector_.Calls("q3"), 0);  // not taken: never answered
  EXPECT_TRUE(collector_.StatusOf("q1").ok());
  EXPECT_TRUE(collector_.StatusOf("q2").ok());
  // Like Triton 2.51, a refusal at enqueue is no failure in the statistics.
  EXPECT_EQ(model_->Statistics().failures[static_cast<int>(FailureReason::kRejected)],
            0u);
}

}  // namespace
}  // namespace tritonx
