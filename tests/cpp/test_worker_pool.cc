// WorkerPool (the HTTP server's parse and control pools, the gRPC control plane)
// when no thread can be started: the task must still run, and the process must not
// end. The address-space limit is lowered below what a new thread's stack needs
// (a container's pids.max fails pthread_create the same way, with EAGAIN).
#include <sys/resource.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <string>
#include <thread>

#include "grpc/worker_pool.h"
#include "gtest/gtest.h"
#include "test_util.h"

namespace tritonx {
namespace {

using testing::VirtualBytes;

// Lowers RLIMIT_AS to `headroom` bytes above the current size for its lifetime.
class AddressSpaceLimit {
 public:
  explicit AddressSpaceLimit(size_t headroom) {
    getrlimit(RLIMIT_AS, &saved_);
    rlimit tight = saved_;
    tight.rlim_cur = VirtualBytes() + headroom;
    applied_ = setrlimit(RLIMIT_AS, &tight) == 0;
  }
  ~AddressSpaceLimit() { setrlimit(RLIMIT_AS, &saved_); }
  bool applied() const { return applied_; }

 private:
  rlimit saved_{};
  bool applied_ = false;
};

// Sanitizer runtimes reserve their shadow memory up front and allocate on their
// own when a thread starts; an address-space limit says nothing useful there.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif

bool ThreadsCanStart() {
  try {
    std::thread([] {}).join();
    return true;
  } catch (const std::system_error&) {
    return false;
  }
}

// glibc keeps the stacks of joined threads for reuse, and a thread started on a
// kept stack needs no new memory: run alone (as ctest runs each test, in its own
// process) nothing is kept yet; after other tests in the same process it may be.
#define SKIP_UNLESS_THREADS_CANNOT_START()                                       \
  if (ThreadsCanStart())                                                         \
  GTEST_SKIP() << "a kept thread stack let a thread start under the limit; run " \
                  "this test in a process of its own (ctest does)"

TEST(WorkerPool, RunsTasksOnItsThreads) {
  grpcfe::WorkerPool pool(2);
  std::atomic<int> done{0};
  const auto caller = std::this_thread::get_id();
  std::atomic<bool> on_caller{false};
  for (int i = 0; i < 8; ++i) {
    pool.Submit([&] {
      if (std::this_thread::get_id() == caller) on_caller = true;
      ++done;
    });
  }
  pool.Shutdown();
  EXPECT_EQ(done.load(), 8);
  EXPECT_FALSE(on_caller.load());
}

TEST(WorkerPool, NoThreadCanStartSoTheCallerRunsTheTask) {
  if (kSanitized) GTEST_SKIP() << "address-space limits under a sanitizer";
  grpcfe::WorkerPool pool(2);
  bool ran = false;
  std::thread::id ran_on;
  {
    // 1 MiB: less than one thread stack (8 MiB by default), more than a task needs.
    AddressSpaceLimit limit(size_t{1} << 20);
    ASSERT_TRUE(limit.applied());
    SKIP_UNLESS_THREADS_CANNOT_START();
    pool.Submit([&] {
      ran = true;
      ran_on = std::this_thread::get_id();
    });
  }
  EXPECT_TRUE(ran);  // run before Submit returned, on this thread
  EXPECT_EQ(ran_on, std::this_thread::get_id());
  // Once threads can start again the pool uses its own.
  std::atomic<bool> later{false};
  pool.Submit([&] { later = true; });
  pool.Shutdown();
  EXPECT_TRUE(later.load());
}

TEST(WorkerPool, AThreadItHasTakesTheTaskWhenNoMoreCanStart) {
  if (kSanitized) GTEST_SKIP() << "address-space limits under a sanitizer";
  std::atomic<bool> release{false};
  std::atomic<int> done{0};
  grpcfe::WorkerPool pool(4);
  // Declared after the pool: ends the busy task on every way out of the test, so
  // the pool's destructor can join its thread.
  struct Release {
    std::atomic<bool>& flag;
    ~Release() { flag = true; }
  } release_on_exit{release};
  // One thread, busy until released.
  pool.Submit([&] {
    while (!release) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    ++done;
  });
  const auto caller = std::this_thread::get_id();
  std::atomic<bool> on_caller{false};
  {
    AddressSpaceLimit limit(size_t{1} << 20);
    ASSERT_TRUE(limit.applied());
    SKIP_UNLESS_THREADS_CANNOT_START();
    pool.Submit([&] {
      if (std::this_thread::get_id() == caller) on_caller = true;
      ++done;
    });
  }
  EXPECT_EQ(done.load(), 0);  // queued, not run inline: the pool has a thread
  release = true;
  pool.Shutdown();
  EXPECT_EQ(done.load(), 2);
  EXPECT_FALSE(on_caller.load());
}

}  // namespace
}  // namespace tritonx
