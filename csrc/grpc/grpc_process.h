// Process-wide settings for the grpc++ library linked into the extension, applied by
// whatever starts grpc work here (the gRPC server, tritonx-perf's gRPC client).
#pragma once

namespace tritonx {
namespace grpcfe {

// Turns off abseil's mutex deadlock detection for the whole process, once.
//
// Why: Debian and Ubuntu build libabsl without NDEBUG, so there every absl::Mutex
// lock that grpc takes also records the lock in a process-wide lock-order graph under
// one global spin lock, and every destroyed mutex is removed from it: about 2.5 % of
// the server's CPU per unary inference, and a point where all grpc threads meet.
// Detection only reports lock-order inversions (a debugging aid); turning it off
// changes no locking. Where abseil was built with NDEBUG it is already off and this
// does nothing. Without abseil headers (a grpc that does not expose them) it is a
// no-op too.
//
// Thread-safety: safe from any thread, any number of times.
void TurnOffAbslDeadlockDetection();

}  // namespace grpcfe
}  // namespace tritonx
