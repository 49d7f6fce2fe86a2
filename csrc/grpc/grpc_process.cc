#include "grpc_process.h"

#include <grpc/grpc.h>

#if TRITONX_HAVE_ABSL_MUTEX
#include <absl/synchronization/mutex.h>
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

void KeepGrpcForProcess() {
  // Never matched by grpc_shutdown (see the header).
  static const bool kKept = [] {
    grpc_init();
    return true;
  }();
  (void)kKept;
}

}  // namespace grpcfe
}  // namespace tritonx
