// The dynamic batcher's test fixture (test_dynamic_batcher*.cc): a Model over C++
// test executors that hold any batch with a request whose id starts with "block" at
// a gate, with the log, collector and concurrency counters the tests read.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "core/model.h"
#include "test_util.h"

namespace tritonx::testing {

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

inline SchedulerConfig Batching(std::vector<int32_t> preferred, uint64_t delay_us) {
  SchedulerConfig config;
  config.dynamic_batching = true;
  config.preferred_batch_sizes = std::move(preferred);
  config.max_queue_delay_us = delay_us;
  return config;
}

}  // namespace tritonx::testing
