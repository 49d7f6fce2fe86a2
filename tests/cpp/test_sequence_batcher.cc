// The sequence batcher's slot logic through tritonx::Model with a C++ test executor:
// backlog order when every slot is taken, null requests in empty direct slots, and
// Triton's errors for requests that name no or an unknown sequence.
#include <gtest/gtest.h>

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

  void Start(int32_t max_batch_size) {
    SchedulerConfig config;
    config.sequence.strategy = SequenceStrategy::kDirect;
    std::vector<std::shared_ptr<Executor>> executors{
        std::make_shared<TestExecutor>(log_)};
    model_ = std::make_unique<Model>(MakeSpec(max_batch_size), config, executors);
    batch_ = max_batch_size > 0 ? 1 : 0;
  }

  Status Submit(const std::string& id, uint64_t seq, uint32_t flags) {
    RequestPtr request = MakeRequest(id, batch_);
    request->correlation_id = seq;
    request->flags = flags;
    collector_.Attach(request);
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

}  // namespace
}  // namespace tritonx
