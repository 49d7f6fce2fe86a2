// The scheduler through tritonx::Model with a C++ test executor: ordering across
// instances, concurrency, cancel, stop and many submitters (batch formation and
// queue policies: test_dynamic_batcher.cc).
//
// Timing assertions are one-sided or carry generous slack: the machine running these
// may be heavily shared.
#include <gtest/gtest.h>

#include <random>
#include <set>
#include <thread>

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
