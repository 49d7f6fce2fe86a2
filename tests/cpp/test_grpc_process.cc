// Process-wide grpc settings (csrc/grpc/grpc_process.h), each observed in a forked
// child since each changes the whole process.
//
// The gRPC server turns off abseil's mutex deadlock detection: a debug-built libabsl
// (Debian's) otherwise records every lock grpc takes in a global lock-order graph.
// Observable: with detection on, one thread taking two mutexes in both orders aborts
// the process ("Potential Mutex deadlock"), though nothing can deadlock; once the
// server has started, it does not.
//
// The server also keeps grpc initialised once the last server is gone, so that
// stopping it never joins grpc's executor threads (one may sit in a 10 s poll).
#if TRITONX_TEST_ABSL_MUTEX
#include <absl/synchronization/mutex.h>
#endif
#include <grpc/grpc.h>
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <functional>
#include <memory>
#include <string>

#include "core/model_registry.h"
#include "grpc_server.h"

namespace tritonx {
namespace {

// Runs `body` in a forked child (these settings are process-wide) and tells whether
// the child ended normally with status 0.
bool ExitsCleanly(const std::function<void()>& body) {
  const pid_t child = fork();
  if (child == 0) {
    body();
    _exit(0);
  }
  int status = 0;
  waitpid(child, &status, 0);
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

GrpcServer::ControlHandler AcceptEveryControlCall() {
  return [](const std::string&, const std::string&, std::string*) {
    return grpc::Status::OK;
  };
}

TEST(GrpcProcess, GrpcStaysInitialisedAfterTheLastServer) {
  EXPECT_TRUE(ExitsCleanly([] {
    {
      GrpcServer server(std::make_shared<ModelRegistry>(), AcceptEveryControlCall());
      int port = 0;
      if (!server.Start("127.0.0.1", 0, &port).ok()) _exit(2);
      server.Stop(0);
    }
    // Without the process's own reference, destroying the server ran grpc_shutdown.
    if (!grpc_is_initialized()) _exit(3);
  }));
}

#if TRITONX_TEST_ABSL_MUTEX
void TakeTwoMutexesInBothOrders() {
  absl::Mutex first;
  absl::Mutex second;
  {
    absl::MutexLock outer(&first);
    absl::MutexLock inner(&second);
  }
  {
    absl::MutexLock outer(&second);
    absl::MutexLock inner(&first);
  }
}

TEST(GrpcProcess, ServerStartLeavesLockOrderUnchecked) {
  if (ExitsCleanly(TakeTwoMutexesInBothOrders)) {
    GTEST_SKIP() << "this abseil was built with NDEBUG: it never checks lock order";
  }
  EXPECT_TRUE(ExitsCleanly([] {
    GrpcServer server(std::make_shared<ModelRegistry>(), AcceptEveryControlCall());
    int port = 0;
    if (!server.Start("127.0.0.1", 0, &port).ok()) _exit(2);
    TakeTwoMutexesInBothOrders();
    server.Stop(0);
  }));
}
#endif

}  // namespace
}  // namespace tritonx
