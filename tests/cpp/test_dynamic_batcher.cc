// The scheduler through tritonx::Model with a C++ test executor: batch formation,
// queue delay, priorities, queue policies, ordering, concurrency, cancel and stop.
//
// Timing assertions are one-sided or carry generous slack: the machine running these
// may be heavily shared.
#include <gtest/gtest.h>

#include <future>
#include <random>
#include <set>

#include "core/model.h"
#include "test_util.h"

namespace tritonx {
namespace {

using std::chrono::milliseconds;
using testing::Collector;
using testing::ExecutionLog;
using testing::ExecutionRecord;
using testing::Gate;
using testing::MakeRequest;
using testing::MakeSpec;
using testing::MsSince;
using testing::TestExecutor;

class DynamicBatcher : public ::testing::Test {
 protected:
  void TearDown() override {
    gate_.Open();
    if (model_) model_->Stop();
    model_.reset();
  }

  // Starts a model whose instances hold any batch containing a request whose id
  // starts with "block" at the gate; `extra` runs for every batch afterwards.
  void Start(ModelSpec spec, SchedulerConfig config, int instances = 1,
             TestExecutor::Hook extra = nullptr) {
    std::vector<std::shared_ptr<Executor>> executors;
    for (int i = 0; i < instances; ++i) {
      executors.push_back(std::make_shared<TestExecutor>(
          log_,
          [this, extra](Batch& batch) {
            for (const auto& request : batch.requests) {
              if (request->id.rfind("block", 0) == 0) gate_.Wait();
            }
            if (extra) extra(batch);
          },
          running_, peak_));
    }
    model_ = std::make_unique<Model>(std::move(spec), std::move(config),
                                     std::move(executors));
  }

  RequestPtr Submit(const std::string& id, int64_t batch = 1, int64_t width = 4) {
    RequestPtr request = MakeRequest(id, batch, width);
    collector_.Attach(request);
    Status status = model_->Enqueue(request);
    EXPECT_TRUE(status.ok()) << id << ": " << status.message();
    return request;
  }

  // Occupies the (single) instance: a request of `batch` items held at the gate.
  void Block(int64_t batch = 1) {
    Submit("blocker", batch);
    ASSERT_TRUE(log_->WaitForStarted(1));
  }

  std::vector<std::string> ExecutedAfterBlocker() const {
    std::vector<std::string> ids = log_->ExecutedIds();
    ids.erase(std::remove(ids.begin(), ids.end(), "blocker"), ids.end());
    return ids;
  }

  Gate gate_;
  Collector collector_;
  std::shared_ptr<ExecutionLog> log_ = std::make_shared<ExecutionLog>();
  std::shared_ptr<std::atomic<int>> running_ = std::make_shared<std::atomic<int>>(0);
  std::shared_ptr<std::atomic<int>> peak_ = std::make_shared<std::atomic<int>>(0);
  std::unique_ptr<Model> model_;  // last: destroyed before what its callbacks use
};

SchedulerConfig Batching(std::vector<int32_t> preferred, uint64_t delay_us) {
  SchedulerConfig config;
  config.dynamic_batching = true;
  config.preferred_batch_sizes = std::move(preferred);
  config.max_queue_delay_us = delay_us;
  return config;
}

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

TEST_F(DynamicBatcher, PreserveOrderingAcrossInstances) {
  SchedulerConfig config;
  config.preserve_ordering = true;
  // Later requests run faster, so without ordering they would overtake.
  Start(MakeSpec(8), config, 3, [](Batch& batch) {
    const int n = std::stoi(batch.requests[0]->id);
    std::this_thread::sleep_for(std::chrono::microseconds(((40 - n) % 7) * 700));
  });
  std::vector<std::string> ids;
  for (int i = 0; i < 40; ++i) {
    ids.push_back(std::to_string(i));
    Submit(ids.back());
  }
  ASSERT_TRUE(collector_.WaitFor(ids.size()));
  EXPECT_EQ(collector_.Order(), ids);
  std::set<int> instances;
  for (const auto& record : log_->Records()) instances.insert(record.instance);
  EXPECT_GE(instances.size(), 2u);
  EXPECT_GE(peak_->load(), 2);
}

TEST_F(DynamicBatcher, PreserveOrderingWithBatching) {
  SchedulerConfig config = Batching({}, 0);
  config.preserve_ordering = true;
  Start(MakeSpec(4), config, 2, [](Batch& batch) {
    const int n = std::stoi(batch.requests[0]->id);
    std::this_thread::sleep_for(std::chrono::microseconds((n % 3 == 0 ? 3 : 0) * 1000));
  });
  std::vector<std::string> ids;
  for (int i = 0; i < 60; ++i) {
    ids.push_back(std::to_string(i));
    Submit(ids.back(), 1 + i % 2);
  }
  ASSERT_TRUE(collector_.WaitFor(ids.size()));
  EXPECT_EQ(collector_.Order(), ids);
}

TEST_F(DynamicBatcher, ShapeIncompatibleRequestsKeptApart) {
  Start(MakeSpec(8, {-1}), Batching({}, 0));
  Block(8);
  Submit("a", 1, 4);
  Submit("b", 1, 4);
  Submit("c", 1, 3);
  Submit("d", 1, 4);
  Submit("e", 2, 3);
  gate_.Open();
  ASSERT_TRUE(collector_.WaitFor(6));
  auto records = log_->Records();
  ASSERT_EQ(records.size(), 5u);
  EXPECT_EQ(records[1].ids, (std::vector<std::string>{"a", "b"}));
  for (const ExecutionRecord& record : records) {
    for (const Shape& shape : record.shapes) {
      EXPECT_EQ(shape.back(), record.shapes.front().back()) << record.ids.front();
    }
  }
  const InferenceResponse* e = collector_.ResponseOf("e");
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->outputs.at(0).shape, (Shape{2, 3}));
}

constexpr int kInstances = 4;
constexpr int kSleepMs = 200;

TEST_F(DynamicBatcher, InstancesRunConcurrently) {
  Start(MakeSpec(8), SchedulerConfig(), kInstances,
        [](Batch&) { std::this_thread::sleep_for(milliseconds(kSleepMs)); });
  const uint64_t start = NowNs();
  for (int i = 0; i < kInstances; ++i) Submit("r" + std::to_string(i));
  ASSERT_TRUE(collector_.WaitFor(kInstances));
  const double elapsed = MsSince(start);
  EXPECT_EQ(peak_->load(), kInstances);
  EXPECT_LT(elapsed, kInstances * kSleepMs * 0.9);  // serial would take 800 ms
  std::set<int> instances;
  for (const auto& record : log_->Records()) instances.insert(record.instance);
  EXPECT_EQ(instances.size(), static_cast<size_t>(kInstances));
}

TEST_F(DynamicBatcher, DefaultSchedulerRunsOneRequestPerExecution) {
  Start(MakeSpec(8), SchedulerConfig());
  Block();
  for (int i = 0; i < 6; ++i) Submit("r" + std::to_string(i), 1 + i % 3);
  gate_.Open();
  ASSERT_TRUE(collector_.WaitFor(7));
  auto records = log_->Records();
  ASSERT_EQ(records.size(), 7u);
  for (const auto& record : records) EXPECT_EQ(record.ids.size(), 1u);
  const StatsSnapshot stats = model_->Statistics();
  EXPECT_EQ(stats.execution_count, 7u);
  EXPECT_EQ(stats.inference_count, 1u + (1 + 2 + 3) * 2);
  EXPECT_EQ(stats.success.count, 7u);
}

TEST_F(DynamicBatcher, NonBatchingModelIgnoresDynamicBatching) {
  Start(MakeSpec(0), Batching({}, 0));
  Block(0);
  for (int i = 0; i < 3; ++i) Submit("r" + std::to_string(i), 0);
  gate_.Open();
  ASSERT_TRUE(collector_.WaitFor(4));
  for (const auto& record : log_->Records()) EXPECT_EQ(record.ids.size(), 1u);
}

TEST_F(DynamicBatcher, CancelRemovesQueuedRequest) {
  Start(MakeSpec(8), SchedulerConfig());
  Block();
  RequestPtr a = Submit("a");
  RequestPtr b = Submit("b");
  EXPECT_TRUE(model_->Cancel(a));
  ASSERT_TRUE(collector_.WaitForId("a"));
  EXPECT_EQ(collector_.StatusOf("a").code(), StatusCode::kCancelled);
  EXPECT_TRUE(a->IsCancelled());
  EXPECT_FALSE(model_->Cancel(a));  // no longer queued
  EXPECT_EQ(model_->PendingCount(), 1u);
  gate_.Open();
  ASSERT_TRUE(collector_.WaitFor(3));
  EXPECT_EQ(ExecutedAfterBlocker(), (std::vector<std::string>{"b"}));
  EXPECT_TRUE(collector_.StatusOf("b").ok());
  EXPECT_FALSE(model_->Cancel(b));
  EXPECT_EQ(collector_.Calls("a"), 1);
  EXPECT_EQ(collector_.Calls("b"), 1);
  EXPECT_EQ(model_->Statistics().failures[static_cast<int>(FailureReason::kCanceled)],
            1u);
}

TEST_F(DynamicBatcher, CancelOfExecutingRequestOnlyMarksIt) {
  std::atomic<bool> seen_cancelled{false};
  Start(MakeSpec(8), SchedulerConfig(), 1,
        [&](Batch& batch) { seen_cancelled = batch.requests[0]->IsCancelled(); });
  RequestPtr blocker = Submit("blocker");
  ASSERT_TRUE(log_->WaitForStarted(1));
  EXPECT_FALSE(model_->Cancel(blocker));
  gate_.Open();
  ASSERT_TRUE(collector_.WaitFor(1));
  EXPECT_TRUE(seen_cancelled.load());
  EXPECT_EQ(collector_.Calls("blocker"), 1);
}

TEST_F(DynamicBatcher, StopDrainsQueuedRequests) {
  Start(MakeSpec(8), Batching({}, 5000000));  // a long delay: Stop must not wait it out
  Block(8);
  for (int i = 0; i < 5; ++i) Submit("r" + std::to_string(i));
  std::thread stopper([this] { model_->Stop(); });
  // Once stopping, new requests are refused.
  Status refused;
  for (int i = 0; i < 200 && refused.ok(); ++i) {
    std::this_thread::sleep_for(milliseconds(5));
    RequestPtr late = MakeRequest("late" + std::to_string(i));
    refused = model_->Enqueue(late);
  }
  EXPECT_EQ(refused.code(), StatusCode::kUnavailable);
  const uint64_t start = NowNs();
  gate_.Open();
  stopper.join();
  EXPECT_LT(MsSince(start), 4000.0);
  ASSERT_TRUE(collector_.WaitFor(6, milliseconds(100)));
  for (int i = 0; i < 5; ++i) {
    const std::string id = "r" + std::to_string(i);
    EXPECT_EQ(collector_.Calls(id), 1) << id;
    const Status status = collector_.StatusOf(id);
    EXPECT_TRUE(status.ok() || status.code() == StatusCode::kUnavailable) << id;
  }
  EXPECT_EQ(model_->PendingCount(), 0u);
  model_->Stop();  // idempotent
}

TEST_F(DynamicBatcher, StopWithoutInstancesFailsQueuedRequests) {
  Start(MakeSpec(8), SchedulerConfig(), 0);
  Submit("orphan");
  model_->Stop();
  ASSERT_TRUE(collector_.WaitFor(1, milliseconds(100)));
  EXPECT_EQ(collector_.StatusOf("orphan").code(), StatusCode::kUnavailable);
  EXPECT_EQ(collector_.StatusOf("orphan").message(), "model 'm' is unloading");
}

TEST_F(DynamicBatcher, InvalidRequestIsNotTaken) {
  Start(MakeSpec(8), SchedulerConfig());
  RequestPtr bad = MakeRequest("bad", 9);  // beyond max_batch_size
  collector_.Attach(bad);
  const Status status = model_->Enqueue(bad);
  EXPECT_EQ(status.code(), StatusCode::kInvalidArg);
  std::this_thread::sleep_for(milliseconds(20));
  EXPECT_EQ(collector_.Calls("bad"), 0);
}

TEST_F(DynamicBatcher, BatchStatusFailsEveryRequestOfTheBatch) {
  Start(MakeSpec(8), Batching({}, 0), 1, [](Batch& batch) {
    if (batch.requests.size() > 1) {
      batch.batch_status = Status(StatusCode::kInternal, "boom");
    }
  });
  Block(8);
  Submit("x");
  Submit("y");
  gate_.Open();
  ASSERT_TRUE(collector_.WaitFor(3));
  EXPECT_EQ(collector_.StatusOf("x").message(), "boom");
  EXPECT_EQ(collector_.StatusOf("y").code(), StatusCode::kInternal);
  EXPECT_EQ(model_->Statistics().failures[static_cast<int>(FailureReason::kBackend)],
            2u);
}

TEST_F(DynamicBatcher, NoRequestLostOrAnsweredTwiceUnderConcurrentSubmitters) {
  constexpr int kThreads = 8;
  constexpr int kPerThread = 300;
  std::atomic<int> in_batch_over_max{0};
  Start(MakeSpec(8), Batching({4, 8}, 500), 2, [&](Batch& batch) {
    if (batch.total_batch_size > 8) in_batch_over_max++;
  });
  std::mutex mu;
  std::map<std::string, int> calls;
  std::map<std::string, StatusCode> codes;
  std::atomic<int64_t> submitted_items{0};
  std::atomic<int> cancelled{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(t);
      for (int i = 0; i < kPerThread; ++i) {
        const std::string id = std::to_string(t) + "-" + std::to_string(i);
        RequestPtr request = MakeRequest(id, 1 + static_cast<int64_t>(rng() % 3));
        request->SetResponseCallback([&, id](std::unique_ptr<InferenceResponse> r) {
          std::lock_guard<std::mutex> lock(mu);
          ++calls[id];
          codes[id] = r->status.code();
        });
        ASSERT_TRUE(model_->Enqueue(request).ok());
        submitted_items += request->batch_size;
        if (i % 7 == 3 && model_->Cancel(request)) ++cancelled;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  const uint64_t deadline = NowNs() + 60ull * 1000000000ull;
  while (NowNs() < deadline) {
    {
      std::lock_guard<std::mutex> lock(mu);
      if (calls.size() == static_cast<size_t>(kThreads * kPerThread)) break;
    }
    std::this_thread::sleep_for(milliseconds(5));
  }
  model_->Stop();
  std::lock_guard<std::mutex> lock(mu);
  ASSERT_EQ(calls.size(), static_cast<size_t>(kThreads * kPerThread));
  int ok = 0;
  int cancelled_answers = 0;
  for (const auto& [id, count] : calls) {
    EXPECT_EQ(count, 1) << id;
    if (codes[id] == StatusCode::kOk) ++ok;
    if (codes[id] == StatusCode::kCancelled) ++cancelled_answers;
  }
  EXPECT_EQ(cancelled_answers, cancelled.load());
  EXPECT_EQ(ok + cancelled_answers, kThreads * kPerThread);
  EXPECT_EQ(in_batch_over_max.load(), 0);
  // Every executed request was executed exactly once.
  std::vector<std::string> executed = log_->ExecutedIds();
  std::set<std::string> unique(executed.begin(), executed.end());
  EXPECT_EQ(unique.size(), executed.size());
  EXPECT_EQ(static_cast<int>(executed.size()), ok);
  const StatsSnapshot stats = model_->Statistics();
  EXPECT_EQ(stats.success.count, static_cast<uint64_t>(ok));
  EXPECT_EQ(stats.failures[static_cast<int>(FailureReason::kCanceled)],
            static_cast<uint64_t>(cancelled.load()));
  EXPECT_GT(stats.execution_count, 0u);
  EXPECT_LT(stats.execution_count, static_cast<uint64_t>(ok));  // batching happened
}

}  // namespace
}  // namespace tritonx
