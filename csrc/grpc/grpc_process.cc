#include "grpc_process.h"

#include <grpc/grpc.h>

#if TRITONX_HAVE_ABSL_MUTEX
#include <absl/synchronization/mutex.h>
#endif

#if TRITONX_HAVE_GRPC_EXECUTOR
// grpc's src/core/lib/iomgr/executor.h is not installed; its one function used here,
// declared as grpc defines it (the build's link check guards the declaration).
namespace grpc_core {
class Executor {
 public:
  static void SetThreadingAll(bool enable);
};
}  // namespace grpc_core
#endif

namespace tritonx {
namespace grpcfe {

void TurnOffAbslDeadlockDetection() {
#if TRITONX_HAVE_ABSL_MUTEX
  // A function-local static runs the call once, even when two servers start at once.
  static const bool kTurnedOff = [] {
    absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
    return true;
  }();
  (void)kTurnedOff;
#endif
}

bool RunGrpcExecutorClosuresInPlace() {
#if TRITONX_HAVE_GRPC_EXECUTOR
  static const bool kInPlace = [] {
    // The executors exist while grpc is initialised. This reference, never given
    // back, keeps grpc from being shut down and initialised again (when the last
    // server or channel goes), which would give the executors their threads back.
    grpc_init();
    grpc_core::Executor::SetThreadingAll(false);
    return true;
  }();
  return kInPlace;
#else
  return false;
#endif
}

}  // namespace grpcfe
}  // namespace tritonx
