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

// Makes grpc's legacy closure executors (grpc_core::Executor: "default-executor",
// "resolver-executor") run their closures on the thread that queues them instead of
// on threads of their own, once per process. Returns whether it did.
//
// Why: such an executor starts threads on demand and counts a thread before it knows
// whether the thread started. Where none can start (a container's pids limit, or
// RLIMIT_NPROC), the count includes a thread that does not exist, and the closures
// later queued for it never run: the transports waiting on them (a connection's
// combiner offloads its work there under load) stall for good, and that client's
// calls end DEADLINE_EXCEEDED. Running closures in place is the mode grpc itself
// uses around fork(); it starts no thread, so nothing can be lost to a failed one.
// Throughput does not change measurably (bench_serving.py, gRPC, three interleaved
// pairs: concurrency 1 median 2,353 vs 2,494 inferences/s, concurrency 4 4,601 vs
// 4,412, within this host's run-to-run spread).
// The executor is an internal grpc class (grpc 1.51 to at least 1.66); built against
// a grpc without it (the build checks), this does nothing and returns false.
//
// Thread-safety: safe from any thread; the first call switches the executors, the
// others do nothing. Call it before the process serves gRPC traffic.
bool RunGrpcExecutorClosuresInPlace();

}  // namespace grpcfe
}  // namespace tritonx
