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

// Takes one grpc library reference (grpc_init) for the rest of the process, once, so
// that destroying the last grpc::Server or channel never runs grpc_shutdown.
//
// Why: grpc_shutdown joins grpc's executor threads, and one of them may be parked
// for up to 10 s: after a write fills a socket, grpc 1.51's TCP endpoint (epoll1)
// has the fd watched by a "backup poller", a job on the default executor that polls
// with a 10 s deadline nobody cuts short; stopping the server right after a large
// streamed response then took 10 s (1 stop in 8 under one busy loop). At a pids
// limit the executor may also count a thread that never started, and the join
// waits out the exit timeout. The OS ends those threads at exit instead; a server
// started again in the same process finds grpc still initialised.
//
// Thread-safety: safe from any thread, any number of times.
void KeepGrpcForProcess();

}  // namespace grpcfe
}  // namespace tritonx
