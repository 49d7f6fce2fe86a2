// Inline dispatch: a request runs on the enqueueing thread only when that thread
// would wait for the answer anyway, never on a frontend's thread.
#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
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

// Records which thread ran each execution; may run inline.
class ThreadRecordingExecutor : public TestExecutor {
 public:
  explicit ThreadRecordingExecutor(std::chrono::microseconds delay)
      : TestExecutor(std::make_shared<ExecutionLog>(),
                     [this](Batch&) {
                       {
                         std::lock_guard<std::mutex> lock(mu_);
                         threads_.push_back(std::this_thread::get_id());
                       }
                       if (delay_.count() > 0) std::this_thread::sleep_for(delay_);
                     }),
        delay_(delay) {}
  bool AllowsInline() const override { return true; }

  int RunsOn(std::thread::id thread) const {
    std::lock_guard<std::mutex> lock(mu_);
    return static_cast<int>(std::count(threads_.begin(), threads_.end(), thread));
  }

 private:
  std::chrono::microseconds delay_;
  mutable std::mutex mu_;
  std::vector<std::thread::id> threads_;
};

// Sends `count` requests one after another from this thread, each waited for.
int RunsOnCaller(std::chrono::microseconds delay, bool caller_waits, int count) {
  auto executor = std::make_shared<ThreadRecordingExecutor>(delay);
  Model model(MakeSpec(8), SchedulerConfig{}, {executor});
  Collector collector;
  for (int i = 0; i < count; ++i) {
    RequestPtr request = MakeRequest("r" + std::to_string(i));
    collector.Attach(request);
    EXPECT_TRUE(model.Enqueue(request, caller_waits).ok());
    EXPECT_TRUE(collector.WaitFor(static_cast<size_t>(i + 1)));
    // Give the worker time to go back to sleep: inline dispatch only takes an idle
    // instance (a busy machine may otherwise never show one).
    std::this_thread::sleep_for(std::chrono::microseconds(500));
  }
  model.Stop();
  return executor->RunsOn(std::this_thread::get_id());
}

TEST(InlineDispatch, FrontendCallersNeverRunTheModel) {
  // A fast, idle model: everything that could allow inline dispatch, but the caller
  // serves other connections (caller_waits = false).
  EXPECT_EQ(RunsOnCaller(std::chrono::microseconds(0), false, 40), 0);
}

TEST(InlineDispatch, WaitingCallersRunFastModelsThemselves) {
  EXPECT_GT(RunsOnCaller(std::chrono::microseconds(0), true, 60), 0);
}

TEST(InlineDispatch, SlowModelsStayOnTheirWorkers) {
  // Executions measured above the inline bound (200 µs) never run on the caller.
  EXPECT_EQ(RunsOnCaller(std::chrono::microseconds(2000), true, 20), 0);
}

// An executor whose next execution, once armed, waits inside until released.
class GatedExecutor : public TestExecutor {
 public:
  GatedExecutor()
      : TestExecutor(std::make_shared<ExecutionLog>(), [this](Batch&) { Pass(); }) {}
  bool AllowsInline() const override { return true; }

  void Arm() {
    std::lock_guard<std::mutex> lock(mu_);
    armed_ = true;
  }
  // Waits until the armed execution is inside; returns the thread running it.
  std::thread::id WaitInside() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [this] { return inside_; });
    return inside_on_;
  }
  void Release() {
    std::lock_guard<std::mutex> lock(mu_);
    inside_ = false;
    cv_.notify_all();
  }

 private:
  void Pass() {
    std::unique_lock<std::mutex> lock(mu_);
    if (!armed_) return;
    armed_ = false;
    inside_ = true;
    inside_on_ = std::this_thread::get_id();
    cv_.notify_all();
    cv_.wait(lock, [this] { return !inside_; });
  }

  std::mutex mu_;
  std::condition_variable cv_;
  bool armed_ = false;
  bool inside_ = false;
  std::thread::id inside_on_;
};

// After an inline run the instance's worker is woken only when something needs it.
// What arrived while the instance ran inline must still be served: a request queued
// behind the claim and a batch directed to the instance (warmup).
TEST(InlineDispatch, WorkArrivingDuringAnInlineRunIsServedAfterIt) {
  auto executor = std::make_shared<GatedExecutor>();
  Model model(MakeSpec(8), SchedulerConfig{}, {executor});
  Collector collector;
  size_t answered = 0;
  auto send = [&](const std::string& id) {
    RequestPtr request = MakeRequest(id);
    collector.Attach(request);
    EXPECT_TRUE(model.Enqueue(request, /*caller_waits=*/true).ok());
    ++answered;
  };
  // Fast executions first, so that the instance counts as cheap and idle.
  for (int i = 0; i < 20; ++i) {
    send("warm" + std::to_string(i));
    ASSERT_TRUE(collector.WaitFor(answered));
    std::this_thread::sleep_for(std::chrono::microseconds(500));
  }
  // The armed execution may land on the worker on a busy machine: try again then.
  bool ran_inline = false;
  for (int attempt = 0; attempt < 20 && !ran_inline; ++attempt) {
    executor->Arm();
    const std::string id = "held" + std::to_string(attempt);
    std::thread caller([&] { send(id); });
    ran_inline = executor->WaitInside() == caller.get_id();
    if (ran_inline) {
      RequestPtr queued = MakeRequest("queued");
      collector.Attach(queued);
      ASSERT_TRUE(model.Enqueue(queued, /*caller_waits=*/false).ok());
      RequestPtr directed = MakeRequest("directed");
      collector.Attach(directed);
      ASSERT_TRUE(model.ExecuteOn(0, {directed}).ok());
    }
    executor->Release();
    caller.join();
    EXPECT_TRUE(collector.WaitForId(id));
    std::this_thread::sleep_for(std::chrono::microseconds(500));
  }
  ASSERT_TRUE(ran_inline);
  EXPECT_TRUE(collector.WaitForId("queued"));
  EXPECT_TRUE(collector.WaitForId("directed"));
  model.Stop();
}

}  // namespace
}  // namespace tritonx
