// The response-sender contract (infer_request.h): 0..N responses then exactly one
// FINAL, from any thread, also after Execute returned; nothing after FINAL; the
// request stays alive (and in flight) until FINAL and its last holder lets go.
#include <gtest/gtest.h>

#include <thread>

#include "core/model.h"
#include "test_util.h"

namespace tritonx {
namespace {

using testing::ExecutionLog;
using testing::FloatTensor;
using testing::MakeRequest;
using testing::MakeSpec;
using testing::TestExecutor;

// What a streaming consumer saw.
struct StreamLog {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<uint32_t> flags;
  std::vector<bool> had_response;
  std::vector<std::vector<std::string>> output_names;
  bool final_seen = false;
  int after_final = 0;

  ResponseStreamFn Callback() {
    return [this](std::unique_ptr<InferenceResponse> response, uint32_t f) {
      std::lock_guard<std::mutex> lock(mu);
      if (final_seen) ++after_final;
      flags.push_back(f);
      had_response.push_back(response != nullptr);
      std::vector<std::string> names;
      if (response) {
        for (const auto& t : response->outputs) names.push_back(t.name);
      }
      output_names.push_back(names);
      if (f & kResponseFlagFinal) final_seen = true;
      cv.notify_all();
    };
  }
  bool WaitFinal() {
    std::unique_lock<std::mutex> lock(mu);
    return cv.wait_for(lock, std::chrono::seconds(10), [&] { return final_seen; });
  }
};

std::unique_ptr<InferenceResponse> OkResponse() {
  auto response = std::make_unique<InferenceResponse>();
  response->outputs.push_back(FloatTensor("OUTPUT0", {1, 4}));
  return response;
}

TEST(ResponseSender, OneResponseConsumerTakesExactlyOneFinal) {
  auto request = MakeRequest("r");
  int calls = 0;
  request->SetResponseCallback([&](std::unique_ptr<InferenceResponse>) { ++calls; });
  EXPECT_EQ(request->Send(OkResponse(), 0).code(), StatusCode::kUnsupported);
  EXPECT_TRUE(request->Send(OkResponse(), kResponseFlagFinal).ok());
  Status again = request->Send(OkResponse(), kResponseFlagFinal);
  EXPECT_EQ(again.code(), StatusCode::kInvalidArg);
  EXPECT_EQ(again.message(), "response sender is closed");
  EXPECT_FALSE(request->RespondError(Status(StatusCode::kInternal, "late")));
  EXPECT_EQ(calls, 1);
  EXPECT_TRUE(request->responded());
}

TEST(ResponseSender, StreamConsumerSeesEveryResponseThenAnEmptyFinal) {
  auto request = MakeRequest("r");
  StreamLog log;
  request->SetResponseStream(log.Callback());
  for (int i = 0; i < 3; ++i) EXPECT_TRUE(request->Send(OkResponse(), 0).ok());
  EXPECT_EQ(request->Send(nullptr, 0).code(), StatusCode::kInvalidArg);
  EXPECT_TRUE(request->Send(nullptr, kResponseFlagFinal).ok());
  EXPECT_EQ(request->Send(OkResponse(), 0).message(), "response sender is closed");
  ASSERT_EQ(log.flags.size(), 4u);
  EXPECT_EQ(log.flags.back(), kResponseFlagFinal);
  EXPECT_FALSE(log.had_response.back());
  EXPECT_EQ(log.after_final, 0);
}

TEST(ResponseSender, ConcurrentSendsNeverDeliverAfterFinal) {
  for (int round = 0; round < 50; ++round) {
    auto request = MakeRequest("r");
    StreamLog log;
    request->SetResponseStream(log.Callback());
    std::atomic<int> accepted{0};
    std::vector<std::thread> senders;
    for (int t = 0; t < 4; ++t) {
      senders.emplace_back([&] {
        for (int i = 0; i < 20; ++i) {
          if (request->Send(OkResponse(), 0).ok()) accepted.fetch_add(1);
        }
      });
    }
    std::thread closer(
        [&] { EXPECT_TRUE(request->Send(nullptr, kResponseFlagFinal).ok()); });
    for (auto& s : senders) s.join();
    closer.join();
    EXPECT_EQ(log.after_final, 0);
    EXPECT_EQ(log.flags.size(), static_cast<size_t>(accepted.load()) + 1);
  }
}

// A decoupled executor: answers nothing in Execute; a thread it starts sends
// `count` responses and then FINAL, after Execute has returned.
class LaterSender : public Executor {
 public:
  explicit LaterSender(int count) : count_(count) {}
  ~LaterSender() override {
    for (auto& t : threads_) t.join();
  }
  void Execute(Batch& batch) override {
    for (const RequestPtr& request : batch.requests) {
      executed_.fetch_add(1);
      threads_.emplace_back([this, request] {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return go_; });
        lock.unlock();
        for (int i = 0; i < count_; ++i) {
          auto response = std::make_unique<InferenceResponse>();
          response->outputs.push_back(FloatTensor("OUTPUT1", {1, 4}));
          response->outputs.push_back(FloatTensor("OUTPUT0", {1, 4}));
          EXPECT_TRUE(request->Send(std::move(response), 0).ok());
        }
        EXPECT_TRUE(request->Send(nullptr, kResponseFlagFinal).ok());
      });
    }
  }
  void Go() {
    std::lock_guard<std::mutex> lock(mu_);
    go_ = true;
    cv_.notify_all();
  }
  std::atomic<int> executed_{0};

 private:
  int count_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool go_ = false;
  std::vector<std::thread> threads_;
};

ModelSpec DecoupledSpec() {
  ModelSpec spec = MakeSpec(8);
  spec.decoupled = true;
  TensorSpec second = spec.outputs[0];
  second.name = "OUTPUT1";
  spec.outputs.push_back(second);
  return spec;
}

TEST(ResponseSender, DecoupledRequestStaysInFlightUntilFinalSentAfterExecute) {
  auto executor = std::make_shared<LaterSender>(5);
  {
    Model model(DecoupledSpec(), SchedulerConfig{}, {executor});
    auto request = MakeRequest("stream");
    request->requested_outputs = {"OUTPUT0"};
    std::weak_ptr<InferenceRequest> alive = request;
    StreamLog log;
    request->SetResponseStream(log.Callback());
    ASSERT_TRUE(model.Enqueue(request).ok());
    request.reset();  // the frontend lets go; the sender still holds it
    while (executor->executed_.load() == 0) std::this_thread::yield();
    // Execute returned without answering: still in flight, still alive.
    EXPECT_EQ(model.InflightCount(), 1u);
    EXPECT_FALSE(alive.expired());
    executor->Go();
    ASSERT_TRUE(log.WaitFinal());
    ASSERT_EQ(log.flags.size(), 6u);
    // Streamed responses are filtered to what the request asked for.
    for (size_t i = 0; i < 5; ++i) {
      EXPECT_EQ(log.output_names[i], std::vector<std::string>{"OUTPUT0"});
    }
    EXPECT_EQ(model.InflightCount(), 0u);
    model.Stop();
  }
}

class FailingDecoupled : public Executor {
 public:
  void Execute(Batch& batch) override {
    batch.batch_status = Status(StatusCode::kInternal, "boom");
  }
};

TEST(ResponseSender, FailedDecoupledExecutionEndsTheStreamWithItsError) {
  Model model(DecoupledSpec(), SchedulerConfig{},
              {std::make_shared<FailingDecoupled>()});
  auto request = MakeRequest("r");
  StreamLog log;
  request->SetResponseStream(log.Callback());
  ASSERT_TRUE(model.Enqueue(request).ok());
  ASSERT_TRUE(log.WaitFinal());
  ASSERT_EQ(log.flags.size(), 1u);
  EXPECT_TRUE(log.had_response[0]);
  EXPECT_EQ(model.InflightCount(), 0u);
}

// A non-decoupled executor in the way of Triton's response sender in default mode:
// the request named "late" is left to a thread that answers it after Execute
// returned (and Go); any other request gets its response from Execute.
class DefaultModeSender : public Executor {
 public:
  explicit DefaultModeSender(bool fail) : fail_(fail) {}
  ~DefaultModeSender() override { GoAndJoin(); }
  void Execute(Batch& batch) override {
    batch.responses.resize(batch.requests.size());
    for (size_t i = 0; i < batch.requests.size(); ++i) {
      const RequestPtr& request = batch.requests[i];
      if (request->id != "late") {
        batch.responses[i] = OkResponse();
        continue;
      }
      request->answered_by_sender.store(true);
      threads_.emplace_back([this, request] {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return go_; });
        lock.unlock();
        late_status_ = request->Send(OkResponse(), kResponseFlagFinal);
      });
    }
    if (fail_) batch.batch_status = Status(StatusCode::kInternal, "boom");
    executed_.store(true);
  }
  // Lets the senders go and waits until they sent.
  void GoAndJoin() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      go_ = true;
      cv_.notify_all();
    }
    for (auto& t : threads_) t.join();
    threads_.clear();
  }
  std::atomic<bool> executed_{false};
  Status late_status_;  // read after GoAndJoin

 private:
  bool fail_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool go_ = false;
  std::vector<std::thread> threads_;
};

TEST(ResponseSender, DefaultModeRequestIsAnsweredByItsSenderAfterExecute) {
  auto executor = std::make_shared<DefaultModeSender>(/*fail=*/false);
  Model model(MakeSpec(8), SchedulerConfig{}, {executor});
  std::atomic<int> late_calls{0};
  std::atomic<int> now_calls{0};
  auto late = MakeRequest("late");
  late->SetResponseCallback([&](std::unique_ptr<InferenceResponse> response) {
    EXPECT_TRUE(response->status.ok());
    late_calls.fetch_add(1);
  });
  ASSERT_TRUE(model.Enqueue(late).ok());
  while (!executor->executed_.load()) std::this_thread::yield();
  // Execute returned and the batch finished: the request waits for its sender.
  EXPECT_FALSE(late->responded());
  EXPECT_EQ(model.InflightCount(), 1u);
  auto now = MakeRequest("now");
  now->SetResponseCallback([&](std::unique_ptr<InferenceResponse>) { now_calls++; });
  ASSERT_TRUE(model.Enqueue(now).ok());
  executor->GoAndJoin();
  model.Stop();
  EXPECT_TRUE(executor->late_status_.ok());
  EXPECT_EQ(late_calls.load(), 1);
  EXPECT_EQ(now_calls.load(), 1);
  EXPECT_EQ(model.InflightCount(), 0u);
}

TEST(ResponseSender, FailedExecutionAnswersADefaultModeRequestWithItsError) {
  auto executor = std::make_shared<DefaultModeSender>(/*fail=*/true);
  Model model(MakeSpec(8), SchedulerConfig{}, {executor});
  Status answer;
  std::atomic<int> calls{0};
  auto late = MakeRequest("late");
  late->SetResponseCallback([&](std::unique_ptr<InferenceResponse> response) {
    answer = response->status;
    calls.fetch_add(1);
  });
  ASSERT_TRUE(model.Enqueue(late).ok());
  // (calls is counted after answer is written: read answer only then)
  while (calls.load() == 0) std::this_thread::yield();
  EXPECT_EQ(answer.message(), "boom");
  executor->GoAndJoin();  // the sender finds the request closed
  model.Stop();
  EXPECT_EQ(executor->late_status_.code(), StatusCode::kInvalidArg);
  EXPECT_EQ(calls.load(), 1);
}

}  // namespace
}  // namespace tritonx
