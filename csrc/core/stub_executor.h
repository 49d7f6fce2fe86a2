// StubExecutor: a Python model instance run in its own stub process (EXECUTION_MODE
// "process"), executed without Python on the server side. Execute writes the batch's
// input bytes and an encoded request into the instance's StubRing (shared memory),
// wakes the stub, waits for its reply on the calling thread (a worker or an inline
// caller; no GIL, no hand-off to another thread) and builds the responses on the
// stub's output region: their outputs point into it, under a lease the responses
// own (RingServer::LeaseReply; copied into arena buffers only past the lease cap).
//
// The process around it (spawn, init, restart, finalize, log records, BLS, custom
// metrics, is_cancelled questions) is managed by stub/process.py over the stub's
// control socket; it gives each new stub a fresh ring (Prepare, Attach) and takes it
// away when the stub ends (Detach). While no stub is attached, and when the stub dies
// or overruns the execution timeout during an Execute (it is then killed), the batch
// fails with Triton's INTERNAL "Stub process '<instance>' is not healthy.".
//
// Thread safety: every method is thread safe. Execute and the lifecycle methods are
// serialized by `mu_` (one batch at a time, as the scheduler guarantees anyway);
// IsCancelled uses its own lock so the socket reader can answer while Execute waits.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "executor.h"
#include "stub_ring.h"

namespace tritonx {

class StubExecutor : public Executor {
 public:
  // `instance_name`: "<model>_<group>_<index>", for the error text. `timeout_ns`:
  // the execution timeout (<= 0: none). `shm_bytes`/`growth`: Triton's
  // shm-default-byte-size and shm-growth-byte-size.
  StubExecutor(std::string instance_name, int64_t timeout_ns, size_t shm_bytes,
               size_t growth);
  ~StubExecutor() override;

  // Inline dispatch saves a worker wake-up; the caller's thread then waits for the
  // stub (measured: a worker hop costs more than that thread's wait).
  bool AllowsInline() const override { return true; }
  void Execute(Batch& batch) override;

  // A fresh ring for a stub being started; returns the descriptor of its region
  // (owned here; the caller passes it to the stub), or -1.
  int Prepare();
  // The stub initialized: its output region (`stub_fd`, taken over) and process id.
  bool Attach(int stub_fd, int pid);
  // The stub is gone or stopping: executions fail until the next Attach.
  void Detach();
  // Asks the attached stub to run the model's finalize (it answers on its socket).
  bool PostFinalize();
  // Whether request `index` of the batch in flight is cancelled (false when none).
  bool IsCancelled(size_t index);
  // Why the last Execute lost its stub ("" when it did not); cleared by reading.
  std::string TakeFailure();

 private:
  Status Unhealthy() const;
  Status RunLocked(Batch& batch);
  Status BuildResponses(Batch& batch, stub::RingServer& ring);

  const std::string name_;
  const int64_t timeout_ns_;
  const size_t shm_bytes_;
  const size_t growth_;

  // Set by Detach without waiting for mu_: an Execute waiting on a stub that the
  // socket says is gone stops within one wait slice (the pidfd usually tells first).
  std::atomic<bool> abandoned_{false};
  std::mutex mu_;
  std::unique_ptr<stub::RingServer> ring_;  // guarded by mu_
  bool attached_ = false;                   // guarded by mu_
  std::string failure_;                     // guarded by mu_
  stub::MessageWriter message_;             // guarded by mu_ (reused)

  std::mutex cancel_mu_;
  const std::vector<RequestPtr>* inflight_ = nullptr;  // guarded by cancel_mu_
};

}  // namespace tritonx
