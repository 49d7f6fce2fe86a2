// Inline dispatch: a request runs on the enqueueing thread only when that thread
// would wait for the answer anyway, never on a frontend's thread.
#include <gtest/gtest.h>

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

}  // namespace
}  // namespace tritonx
