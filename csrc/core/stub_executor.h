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
// A model's requests may be answered by their response senders, during execute or
// later from the stub's own threads, through the stub's response stream
// (stub_stream.h), which a StreamReceiver thread owned here reads: the executor keeps
// each request it posted under its wire key until the request's FINAL is sent or the
// stub is gone (FailPending). The ring reply of a decoupled execute carries no
// responses; that of a non-decoupled one answers each request, except those it marks
// answered by their sender, which stay open (the rest are closed by the reply).
//
// Thread safety: every method is thread safe. Execute and the lifecycle methods are
// serialized by `mu_` (one batch at a time, as the scheduler guarantees anyway);
// IsCancelled, SendResponse and FailPending use `requests_mu_`, so the socket reader
// and the stream receiver can answer and deliver while Execute waits.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "executor.h"
#include "stub_ring.h"
#include "stub_stream.h"

namespace tritonx {

class StubExecutor : public Executor {
 public:
  // `instance_name`: "<model>_<group>_<index>", for the error text. `timeout_ns`:
  // the execution timeout (<= 0: none). `shm_bytes`/`growth`: Triton's
  // shm-default-byte-size and shm-growth-byte-size.
  StubExecutor(std::string instance_name, int64_t timeout_ns, size_t shm_bytes,
               size_t growth, bool decoupled = false);
  ~StubExecutor() override;

  // Inline dispatch saves a worker wake-up; the caller's thread then waits for the
  // stub (measured: a worker hop costs more than that thread's wait).
  bool AllowsInline() const override { return true; }
  void Execute(Batch& batch) override;

  // A fresh ring for a stub being started; returns the descriptor of its region
  // (owned here; the caller passes it to the stub), or -1.
  int Prepare();
  // The stub initialized: its output region (`stub_fd`, taken over), process id and
  // its response stream: region and socket (taken over).
  bool Attach(int stub_fd, int pid, int stream_fd = -1, int stream_socket = -1);
  // The stub is gone or stopping: executions fail until the next Attach.
  void Detach();
  // Asks the attached stub to run the model's finalize (it answers on its socket).
  bool PostFinalize();
  // Whether the request the stub knows as `key` is cancelled: one of the open
  // requests, else request `index` of the batch in flight (false when neither is
  // known).
  bool IsCancelled(size_t index, uint64_t key);
  // Sends `response` (null: none, with `final`) for the open request `key`.
  // NOT_FOUND when the request is no longer open (answered, or failed with the stub).
  Status SendResponse(uint64_t key, std::unique_ptr<InferenceResponse> response,
                      bool final);
  // The stub is gone (its process ended): once the responses it sent are delivered,
  // every open request gets Unhealthy() as its FINAL.
  void FailPending();
  // Why the last Execute lost its stub ("" when it did not); cleared by reading.
  std::string TakeFailure();

 private:
  Status Unhealthy() const;
  Status RunLocked(Batch& batch, uint64_t first_key);
  Status BuildResponses(Batch& batch, stub::RingServer& ring);

  const std::string name_;
  const int64_t timeout_ns_;
  const size_t shm_bytes_;
  const size_t growth_;
  const bool decoupled_;

  // Set by Detach without waiting for mu_: an Execute waiting on a stub that the
  // socket says is gone stops within one wait slice (the pidfd usually tells first).
  std::atomic<bool> abandoned_{false};
  std::mutex mu_;
  std::unique_ptr<stub::RingServer> ring_;  // guarded by mu_
  bool attached_ = false;                   // guarded by mu_
  std::string failure_;                     // guarded by mu_
  stub::MessageWriter message_;             // guarded by mu_ (reused)
  uint64_t next_key_ = 0;                   // guarded by mu_

  std::mutex requests_mu_;
  const std::vector<RequestPtr>* inflight_ = nullptr;  // guarded by requests_mu_
  uint64_t inflight_first_key_ = 0;                    // guarded by requests_mu_
  // Requests posted to the stub whose senders may still answer them, by wire key.
  std::unordered_map<uint64_t, RequestPtr> open_;  // guarded by requests_mu_

  // Reads the attached stub's response stream (replaced at each Attach; the last
  // member, so it stops before anything it delivers to goes away).
  std::unique_ptr<stub::StreamReceiver> receiver_;  // guarded by mu_
};

}  // namespace tritonx
