// InflightLimit through Model::Enqueue: admission, refusal, and every slot returned
// whichever way a request ends (answered, cancelled, failed in the queue, never
// taken).
#include <gtest/gtest.h>

#include "core/model.h"
#include "core/server_context.h"
#include "test_util.h"

namespace tritonx {
namespace {

using testing::Collector;
using testing::ExecutionLog;
using testing::Gate;
using testing::MakeRequest;
using testing::MakeSpec;
using testing::TestExecutor;

class InflightLimitTest : public ::testing::Test {
 protected:
  void SetUp() override { context_.inflight_limit()->SetLimit(3); }
  void TearDown() override {
    gate_.Open();
    if (model_) model_->Stop();
    model_.reset();
  }
  void Start() {
    auto executor = std::make_shared<TestExecutor>(std::make_shared<ExecutionLog>(),
                                                   [this](Batch&) { gate_.Wait(); });
    model_ = std::make_unique<Model>(MakeSpec(8), SchedulerConfig{},
                                     std::vector<std::shared_ptr<Executor>>{executor},
                                     &context_);
  }
  Status Submit(const std::string& id) {
    RequestPtr request = MakeRequest(id);
    collector_.Attach(request);
    requests_.push_back(request);
    return model_->Enqueue(request);
  }

  ServerContext context_;
  Gate gate_;
  Collector collector_;
  std::unique_ptr<Model> model_;
  std::vector<RequestPtr> requests_;
};

TEST_F(InflightLimitTest, RefusesBeyondTheLimitAndAdmitsAgainOnceAnswered) {
  Start();
  const int64_t before = context_.inflight_limit()->inflight();
  ASSERT_TRUE(Submit("a").ok());
  ASSERT_TRUE(Submit("b").ok());
  ASSERT_TRUE(Submit("c").ok());
  Status refused = Submit("d");
  EXPECT_EQ(refused.code(), StatusCode::kUnavailable);
  EXPECT_NE(refused.message().find("overloaded"), std::string::npos);
  EXPECT_EQ(model_->Statistics().failures[static_cast<int>(FailureReason::kRejected)],
            1u);

  // A cancelled queued request gives its slot back at once.
  EXPECT_TRUE(model_->Cancel(requests_[2]));
  EXPECT_TRUE(Submit("e").ok());

  gate_.Open();
  ASSERT_TRUE(collector_.WaitFor(4));
  requests_.clear();
  EXPECT_EQ(context_.inflight_limit()->inflight(), before);
}

TEST_F(InflightLimitTest, RequestsNeverTakenHoldNoSlot) {
  Start();
  const int64_t before = context_.inflight_limit()->inflight();
  RequestPtr invalid = MakeRequest("bad", 1, 5);  // wrong shape: validation fails
  EXPECT_FALSE(model_->Enqueue(invalid).ok());
  EXPECT_EQ(context_.inflight_limit()->inflight(), before);
  model_->Stop();
  EXPECT_FALSE(Submit("after-stop").ok());  // stopping: not taken
  EXPECT_EQ(context_.inflight_limit()->inflight(), before);
}

TEST_F(InflightLimitTest, WaitIdleWakesWhenTheLastRequestIsAnswered) {
  Start();
  ASSERT_TRUE(Submit("a").ok());
  ASSERT_TRUE(Submit("b").ok());
  EXPECT_FALSE(model_->WaitIdle(std::chrono::milliseconds(20)));  // held at the gate
  std::thread opener([this] { gate_.Open(); });
  EXPECT_TRUE(model_->WaitIdle(std::chrono::seconds(30)));
  EXPECT_EQ(model_->InflightCount(), 0u);
  opener.join();
}

}  // namespace
}  // namespace tritonx
