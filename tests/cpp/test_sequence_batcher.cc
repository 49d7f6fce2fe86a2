// The sequence batcher's slot logic through tritonx::Model with a C++ test executor:
// backlog order when every slot is taken, null requests in empty direct slots,
// Triton's errors for requests that name no or an unknown sequence, a cancelled
// sequence's slot freed once it is idle, and iterative
// sequences (requests the executor reschedules run again in later batches).
#include <gtest/gtest.h>

#include <algorithm>
#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>

#include "core/model.h"
#include "test_util.h"

namespace tritonx {
namespace {

using testing::Collector;
using testing::ExecutionLog;
using testing::MakeRequest;
using testing::MakeSpec;
using testing::TestExecutor;

class SequenceBatcher : public ::testing::Test {
 protected:
  void TearDown() override {
    if (model_) model_->Stop();
  }

  void Start(int32_t max_batch_size, SchedulerConfig config = {}) {
    config.sequence.strategy = SequenceStrategy::kDirect;
    std::vector<std::shared_ptr<Executor>> executors{
        std::make_shared<TestExecutor>(log_)};
    model_ = std::make_unique<Model>(MakeSpec(max_batch_size), config, executors);
    batch_ = max_batch_size > 0 ? 1 : 0;
  }

  Status Submit(const std::string& id, uint64_t seq, uint32_t flags,
                RequestPtr* submitted = nullptr) {
    RequestPtr request = MakeRequest(id, batch_);
    request->correlation_id = seq;
    request->flags = flags;
    collector_.Attach(request);
    if (submitted != nullptr) *submitted = request;
    return model_->Enqueue(request);
  }

  std::vector<std::vector<std::string>> Batches() const {
    std::vector<std::vector<std::string>> out;
    for (const auto& record : log_->Records()) out.push_back(record.ids);
    return out;
  }

  Collector collector_;
  std::shared_ptr<ExecutionLog> log_ = std::make_shared<ExecutionLog>();
  std::unique_ptr<Model> model_;
  int64_t batch_ = 1;
};

TEST_F(SequenceBatcher, BackloggedSequenceWaitsForTheSlot) {
  Start(/*max_batch_size=*/0);  // one slot
  ASSERT_TRUE(Submit("a1", 1, 1).ok());
  ASSERT_TRUE(Submit("b1", 2, 1).ok());  // backlog: sequence 1 holds the slot
  ASSERT_TRUE(Submit("a2", 1, 2).ok());  // END of sequence 1 frees it
  ASSERT_TRUE(collector_.WaitFor(3));
  EXPECT_EQ(Batches(), (std::vector<std::vector<std::string>>{{"a1"}, {"a2"}, {"b1"}}));
}

TEST_F(SequenceBatcher, EmptyDirectSlotGetsANullRequest) {
  Start(/*max_batch_size=*/2);
  ASSERT_TRUE(Submit("a1", 1, 1).ok());  // slot 0
  ASSERT_TRUE(collector_.WaitFor(1));
  ASSERT_TRUE(Submit("b1", 2, 1).ok());  // slot 1
  ASSERT_TRUE(collector_.WaitFor(2));
  ASSERT_TRUE(Submit("a2", 1, 2).ok());  // ends sequence 1: slot 0 is free
  ASSERT_TRUE(collector_.WaitFor(3));
  ASSERT_TRUE(Submit("b2", 2, 2).ok());
  ASSERT_TRUE(collector_.WaitFor(4));
  const auto batches = Batches();
  ASSERT_EQ(batches.size(), 4u);
  EXPECT_EQ(batches[1], (std::vector<std::string>{"", "b1"}));  // "" is null
  EXPECT_EQ(batches[3], (std::vector<std::string>{"", "b2"}));
  EXPECT_EQ(model_->Statistics().inference_count, 4u);
}

// A sequence whose queued request is cancelled while it holds a slot is idle from
// then on, and the idle timeout frees its slot for a backlogged sequence. (Found by
// fuzz_grpc_server: the reaper was not told, and if it was asleep with nothing to
// count, the slot stayed taken until some other batch of the model ran; a model whose
// every slot was held so stopped for good.)
TEST_F(SequenceBatcher, CancelledSequenceGivesItsSlotUpOnceIdle) {
  SchedulerConfig config;
  config.sequence.max_sequence_idle_us = 2000;
  // A batch waits (a minute) until both slots have a request: nothing runs, so only
  // the reaper can free the cancelled sequence's slot.
  config.sequence.max_queue_delay_us = 60'000'000;
  config.sequence.minimum_slot_utilization = 1.0f;
  Start(/*max_batch_size=*/2, config);
  RequestPtr cancelled;
  ASSERT_TRUE(Submit("a1", 1, kFlagStart, &cancelled).ok());  // slot 0, waits
  ASSERT_TRUE(model_->Cancel(cancelled));
  ASSERT_TRUE(collector_.WaitForId("a1"));
  ASSERT_TRUE(Submit("b1", 2, kFlagStart).ok());  // slot 1
  ASSERT_TRUE(Submit("c1", 3, kFlagStart).ok());  // the backlog, until slot 0 frees
  // Once sequence 1 has idled 2 ms, c1 takes slot 0 and the batch is full. (Had it
  // idled before b1 came, b1 took slot 0 and c1 slot 1: the same one batch.)
  ASSERT_TRUE(collector_.WaitFor(3, std::chrono::seconds(30)));
  auto batches = Batches();
  ASSERT_EQ(batches.size(), 1u);
  std::sort(batches[0].begin(), batches[0].end());
  EXPECT_EQ(batches[0], (std::vector<std::string>{"b1", "c1"}));
}

// A completed batch leaves its sequence idle: the reaper, asleep until a backlogged
// sequence's far deadline, must count the idle time from then, not from that deadline.
// (A batch only wakes the reaper when it would sleep past the idle timeout.)
TEST(SequenceIdleTimeout,
     CountsFromTheLastBatchWhileTheReaperWaitsForABacklogDeadline) {
  std::mutex mu;
  std::condition_variable cv;
  bool first_inside = false;
  bool release = false;
  auto hook = [&](Batch& batch) {
    if (batch.requests.front()->id != "a1") return;
    std::unique_lock<std::mutex> lock(mu);
    first_inside = true;
    cv.notify_all();
    cv.wait(lock, [&] { return release; });
  };
  SchedulerConfig config;
  config.sequence.strategy = SequenceStrategy::kDirect;
  config.sequence.max_sequence_idle_us = 2000;
  Model model(MakeSpec(/*max_batch_size=*/0), config,
              {std::make_shared<TestExecutor>(std::make_shared<ExecutionLog>(), hook)});
  Collector collector;
  auto submit = [&](const std::string& id, uint64_t seq, uint64_t timeout_us) {
    RequestPtr request = MakeRequest(id, 0);
    request->correlation_id = seq;
    request->flags = kFlagStart;
    request->timeout_us = timeout_us;
    collector.Attach(request);
    return model.Enqueue(request);
  };
  ASSERT_TRUE(submit("a1", 1, 0).ok());  // the one slot, executing
  {
    std::unique_lock<std::mutex> lock(mu);
    ASSERT_TRUE(
        cv.wait_for(lock, std::chrono::seconds(10), [&] { return first_inside; }));
  }
  // The backlog, with a deadline two minutes away: the reaper now sleeps until then
  // (the slot's sequence is executing, so not idle).
  ASSERT_TRUE(submit("b1", 2, 120'000'000).ok());
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  {
    std::lock_guard<std::mutex> lock(mu);
    release = true;
    cv.notify_all();
  }
  // Sequence 1 idles 2 ms after a1 and gives its slot to b1.
  ASSERT_TRUE(collector.WaitForId("b1", std::chrono::seconds(60)));
  EXPECT_TRUE(collector.StatusOf("b1").ok()) << collector.StatusOf("b1").message();
  model.Stop();
}

TEST_F(SequenceBatcher, RequestsWithoutAKnownSequenceFail) {
  Start(/*max_batch_size=*/2);
  Status none = Submit("x", 0, 0);
  EXPECT_EQ(none.code(), StatusCode::kInvalidArg);
  EXPECT_EQ(none.message(),
            "inference request to model 'm' must specify a non-zero or non-empty "
            "correlation ID");
  Status unknown = Submit("y", 9, 0);
  EXPECT_EQ(unknown.message(),
            "inference request for sequence 9 to model 'm' must specify the START "
            "flag on the first request of the sequence");
}

TEST(IterativeSequences, RescheduledRequestsRunAgainUntilAnswered) {
  // "a" wants 3 executions, "b" 2; neither names a sequence (the batcher numbers
  // them). The executor reschedules a request (no response) until it had enough.
  std::mutex mu;
  std::condition_variable both_queued_cv;
  bool both_queued = false;  // the first execution waits for it: "b" joins "a" then
  std::map<std::string, std::vector<uint32_t>> starts;  // START flag per execution
  std::map<std::string, std::vector<uint64_t>> ids;     // correlation id per execution
  auto hook = [&](Batch& batch) {
    std::unique_lock<std::mutex> lock(mu);
    both_queued_cv.wait(lock, [&] { return both_queued; });
    for (auto& request : batch.requests) {
      if (request->null_request) {
        batch.responses.push_back(std::make_unique<InferenceResponse>());
        continue;
      }
      starts[request->id].push_back(request->flags & 1u);
      ids[request->id].push_back(request->correlation_id);
      const size_t want = request->id == "a" ? 3 : 2;
      if (starts[request->id].size() < want) {
        request->reschedule = true;
        batch.responses.push_back(nullptr);
      } else {
        batch.responses.push_back(std::make_unique<InferenceResponse>());
      }
    }
  };
  SchedulerConfig config;
  config.sequence.strategy = SequenceStrategy::kDirect;
  config.sequence.iterative = true;
  auto log = std::make_shared<ExecutionLog>();
  std::vector<std::shared_ptr<Executor>> executors{
      std::make_shared<TestExecutor>(log, hook)};
  Model model(MakeSpec(/*max_batch_size=*/2), config, executors);
  Collector collector;
  for (const char* id : {"a", "b"}) {
    RequestPtr request = MakeRequest(id, 1);
    collector.Attach(request);
    ASSERT_TRUE(model.Enqueue(request).ok());
  }
  {
    std::lock_guard<std::mutex> lock(mu);
    both_queued = true;
  }
  both_queued_cv.notify_all();
  ASSERT_TRUE(collector.WaitFor(2));
  model.Stop();
  std::lock_guard<std::mutex> lock(mu);
  EXPECT_EQ(starts["a"], (std::vector<uint32_t>{1, 0, 0}));
  EXPECT_EQ(starts["b"], (std::vector<uint32_t>{1, 0}));
  // One id per request, kept over its executions, different between requests.
  EXPECT_EQ(ids["a"], std::vector<uint64_t>(3, ids["a"][0]));
  EXPECT_EQ(ids["b"], std::vector<uint64_t>(2, ids["b"][0]));
  EXPECT_NE(ids["a"][0], 0u);
  EXPECT_NE(ids["a"][0], ids["b"][0]);
  // Each execution counts its inferences (Triton's inference_count); a request
  // succeeds once, when answered; "b" ran in the batches of "a" from its second.
  const StatsSnapshot stats = model.Statistics();
  EXPECT_EQ(stats.inference_count, 5u);
  EXPECT_EQ(stats.success.count, 2u);
  EXPECT_EQ(stats.execution_count, 3u);
}

}  // namespace
}  // namespace tritonx
