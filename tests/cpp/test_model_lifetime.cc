// A model's lifetime against its own worker threads: the last reference dropped, or
// Stop called, from inside a response callback; and what a refused request's
// callbacks hold.
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <chrono>
#include <fstream>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/logging.h"
#include "core/model.h"
#include "test_util.h"

namespace tritonx {
namespace {

using testing::ExecutionLog;
using testing::Gate;
using testing::MakeRequest;
using testing::MakeSpec;
using testing::TestExecutor;
using testing::VirtualBytes;

// The last reference to a model can be dropped by a response callback, i.e. on one
// of the model's own worker threads (a frontend keeping the model alive for its
// in-flight requests while the model is unloaded).
class DestructionProbe : public TestExecutor {
 public:
  DestructionProbe(std::shared_ptr<ExecutionLog> log, Hook hook,
                   std::shared_ptr<std::promise<void>> destroyed)
      : TestExecutor(std::move(log), std::move(hook)),
        destroyed_(std::move(destroyed)) {}
  ~DestructionProbe() override { destroyed_->set_value(); }

 private:
  std::shared_ptr<std::promise<void>> destroyed_;
};

TEST(DynamicBatcherLifetime, ModelDestroyedFromItsOwnResponseCallback) {
  auto log = std::make_shared<ExecutionLog>();
  auto gate = std::make_shared<Gate>();
  auto destroyed = std::make_shared<std::promise<void>>();
  std::future<void> destroyed_future = destroyed->get_future();
  std::vector<std::shared_ptr<Executor>> executors;
  executors.push_back(std::make_shared<DestructionProbe>(
      log, [gate](Batch&) { gate->Wait(); }, destroyed));
  SchedulerConfig config;
  config.dynamic_batching = true;
  config.preserve_ordering = true;  // delivery under the ordering lock, the hard case
  auto model = std::make_shared<Model>(MakeSpec(8), config, std::move(executors));

  auto answered = std::make_shared<std::promise<StatusCode>>();
  std::future<StatusCode> answered_future = answered->get_future();
  RequestPtr request = MakeRequest("last");
  std::shared_ptr<Model> keep_alive = model;
  request->SetResponseCallback(
      [keep_alive, answered](std::unique_ptr<InferenceResponse> r) mutable {
        answered->set_value(r->status.code());
        keep_alive.reset();  // the last reference goes here, on the worker thread
      });
  keep_alive.reset();
  ASSERT_TRUE(model->Enqueue(request).ok());
  RequestPtr queued = MakeRequest("queued");
  ASSERT_TRUE(model->Enqueue(queued).ok());
  ASSERT_TRUE(log->WaitForStarted(1));
  model.reset();  // only the callback holds the model now
  request.reset();
  gate->Open();
  ASSERT_EQ(answered_future.wait_for(std::chrono::seconds(10)),
            std::future_status::ready);
  EXPECT_EQ(answered_future.get(), StatusCode::kOk);
  // The model's executor is destroyed once the model is fully gone.
  ASSERT_EQ(destroyed_future.wait_for(std::chrono::seconds(10)),
            std::future_status::ready);
}

// The same with no thread to be had (a pids limit or, here, no address space for a
// new thread's stack): the model cannot hand its scheduler to a thread of its own.
// It used to end the process (std::system_error out of a destructor); now it says
// so and leaves the scheduler running, and the request is answered.
TEST(DynamicBatcherLifetime, DestroyedOnItsWorkerWhenNoThreadCanStart) {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  GTEST_SKIP() << "address-space limits under a sanitizer";
#endif
  std::mutex mu;
  std::vector<std::string> logged;
  SetLogSink([&](LogLevel, const std::string& message) {
    std::lock_guard<std::mutex> lock(mu);
    logged.push_back(message);
  });
  auto log = std::make_shared<ExecutionLog>();
  auto gate = std::make_shared<Gate>();
  std::vector<std::shared_ptr<Executor>> executors;
  executors.push_back(
      std::make_shared<TestExecutor>(log, [gate](Batch&) { gate->Wait(); }));
  SchedulerConfig config;
  config.dynamic_batching = true;
  auto model = std::make_shared<Model>(MakeSpec(8), config, std::move(executors));
  auto answered = std::make_shared<std::promise<StatusCode>>();
  std::future<StatusCode> answered_future = answered->get_future();
  RequestPtr request = MakeRequest("last");
  std::shared_ptr<Model> keep_alive = model;
  request->SetResponseCallback(
      [keep_alive, answered](std::unique_ptr<InferenceResponse> r) mutable {
        answered->set_value(r->status.code());
        keep_alive.reset();  // the last reference, on the worker thread
      });
  keep_alive.reset();
  ASSERT_TRUE(model->Enqueue(request).ok());
  ASSERT_TRUE(log->WaitForStarted(1));
  model.reset();
  request.reset();
  rlimit saved{};
  getrlimit(RLIMIT_AS, &saved);
  rlimit tight = saved;
  tight.rlim_cur = VirtualBytes() + (size_t{4} << 20);  // less than a thread stack
  ASSERT_EQ(setrlimit(RLIMIT_AS, &tight), 0);
  bool can_start = true;
  try {
    std::thread([] {}).join();
  } catch (const std::system_error&) {
    can_start = false;
  }
  if (can_start) {
    setrlimit(RLIMIT_AS, &saved);
    gate->Open();
    SetLogSink(nullptr);
    GTEST_SKIP() << "a kept thread stack let a thread start under the limit; run "
                    "this test in a process of its own (ctest does)";
  }
  gate->Open();
  const auto answer = answered_future.wait_for(std::chrono::seconds(10));
  bool said = false;
  for (int i = 0; i < 1000 && !said; ++i) {
    {
      std::lock_guard<std::mutex> lock(mu);
      for (const auto& m : logged) {
        said = said || m.find("cannot start a thread to stop the scheduler") !=
                           std::string::npos;
      }
    }
    if (!said) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  setrlimit(RLIMIT_AS, &saved);
  SetLogSink(nullptr);
  ASSERT_EQ(answer, std::future_status::ready);
  EXPECT_EQ(answered_future.get(), StatusCode::kOk);
  EXPECT_TRUE(said);
}

TEST(DynamicBatcherLifetime, StopFromResponseCallbackThenDestroy) {
  auto log = std::make_shared<ExecutionLog>();
  std::vector<std::shared_ptr<Executor>> executors;
  executors.push_back(std::make_shared<TestExecutor>(log));
  executors.push_back(std::make_shared<TestExecutor>(log));
  auto model =
      std::make_unique<Model>(MakeSpec(8), SchedulerConfig(), std::move(executors));
  auto stopped = std::make_shared<std::promise<void>>();
  std::future<void> stopped_future = stopped->get_future();
  Model* raw = model.get();
  RequestPtr request = MakeRequest("stopper");
  request->SetResponseCallback([raw, stopped](std::unique_ptr<InferenceResponse>) {
    raw->Stop();  // on a worker thread: joins the other worker, detaches itself
    stopped->set_value();
  });
  ASSERT_TRUE(model->Enqueue(request).ok());
  ASSERT_EQ(stopped_future.wait_for(std::chrono::seconds(10)),
            std::future_status::ready);
  EXPECT_EQ(model->Enqueue(MakeRequest("after")).code(), StatusCode::kUnavailable);
  model.reset();  // waits for the detached worker to leave
}

// A request the model refuses is never answered, and Enqueue drops its callbacks:
// what they hold (a frontend's call state holding the request and its body) is
// released, not kept alive by the request it holds (the HTTP engine's leak).
TEST(RefusedRequestLifetime, EnqueueDropsTheCallbacksOfARequestNotTaken) {
  auto log = std::make_shared<ExecutionLog>();
  std::vector<std::shared_ptr<Executor>> executors{std::make_shared<TestExecutor>(log)};
  auto model = std::make_shared<Model>(MakeSpec(8), SchedulerConfig{}, executors);
  for (const bool stream : {false, true}) {
    RequestPtr request = MakeRequest("wrong width", 1, /*width=*/3);  // dims are [4]
    auto held = std::make_shared<int>(0);
    const std::weak_ptr<int> watch = held;
    if (stream) {
      request->SetResponseStream(
          [held](std::unique_ptr<InferenceResponse>, uint32_t) { ++*held; });
    } else {
      request->SetResponseCallback(
          [held](std::unique_ptr<InferenceResponse>) { ++*held; });
    }
    held.reset();
    EXPECT_EQ(model->Enqueue(request).code(), StatusCode::kInvalidArg);
    EXPECT_TRUE(watch.expired()) << (stream ? "stream" : "callback");
  }
  model->Stop();
}

}  // namespace
}  // namespace tritonx
