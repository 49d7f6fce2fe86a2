// LoadDriver: the load of one tritonx-perf step, generated from C++ threads so that
// the measurement is the server's, not the client's (the Python side only reads
// the records between windows). It grows the core's closed-loop GenerateLoad
// (csrc/core/load_generator.h, in-process) into a network client:
//   - concurrency mode (closed loop): N workers, each with its own connection, send
//     the next request as soon as the previous one is answered;
//   - request-rate mode (open loop): a schedule of send times (constant or Poisson
//     intervals) served by a pool of workers; a request whose worker was still busy
//     at its time is sent late and counted in delayed().
// With async (perf_analyzer's --async) a worker keeps many requests in flight
// through an AsyncClient instead of one through a Connection: closed loop, the
// concurrency is split over min(max_threads, concurrency) workers; open loop, every
// request is sent at its time whatever is still in flight, so --max-threads no
// longer caps the requests in flight at a rate.
// Sequences: every worker runs its own sequence at a time (ids from a shared
// counter, lengths around sequence_length), so a sequence's requests stay in order.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "connection.h"

namespace tritonx::perf {

struct LoadOptions {
  int concurrency = 1;      // closed loop; ignored when request_rate > 0
  double request_rate = 0;  // requests per second; > 0 selects the open loop
  bool poisson = false;     // open loop intervals: exponential instead of constant
  int max_threads = 16;     // open loop workers
  int sequence_length = 0;  // 0: requests carry no sequence
  double sequence_variation = 20;  // percent around sequence_length
  uint64_t sequence_id_start = 1;
  uint64_t sequence_id_end = 0;  // exclusive; 0: unbounded
  uint64_t seed = 0;
  bool async = false;  // many requests in flight per worker (unary, no sequences)
  // Requests to send in all (perf_analyzer's --request-count and the warm-up);
  // 0: until Stop. Workers end by themselves once the last one is answered.
  uint64_t max_requests = 0;
};

// Thread-safety: Start/Stop from one controlling thread; Drain, FirstError,
// Delayed and counters from any thread. Ownership: owns its workers and their
// connections; the Target is shared read-only.
class LoadDriver {
 public:
  LoadDriver(std::shared_ptr<const Target> target, LoadOptions options);
  ~LoadDriver();
  LoadDriver(const LoadDriver&) = delete;
  LoadDriver& operator=(const LoadDriver&) = delete;

  // Opens every connection and starts the workers; false with *error when a
  // connection cannot be opened (nothing is left running then).
  bool Start(std::string* error);
  // Stops sending and joins the workers (each finishes its request in flight and
  // sends END for a sequence it had started).
  void Stop();
  // Every record completed since the previous Drain.
  std::vector<RequestRecord> Drain();
  std::string FirstError();
  uint64_t Delayed() const { return delayed_.load(); }
  uint64_t Completed() const { return completed_.load(); }

 private:
  struct Worker;
  void RunClosed(Worker* worker);
  void RunOpen(Worker* worker);
  void RunAsyncClosed(Worker* worker, size_t share);
  void RunAsyncOpen(Worker* worker);
  void Finish(Worker* worker);  // async: waits for the requests still in flight
  void Record(Worker* worker, RequestRecord&& record, const std::string& error);
  void Execute(Worker* worker, size_t step);
  void EndSequence(Worker* worker);
  int64_t NextSendTime();
  bool TakeSend();  // false once max_requests were sent

  std::shared_ptr<const Target> target_;
  LoadOptions options_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> next_step_{0};
  std::atomic<uint64_t> sent_{0};
  std::atomic<uint64_t> next_sequence_;
  std::atomic<uint64_t> delayed_{0};
  std::atomic<uint64_t> completed_{0};

  std::mutex schedule_mu_;  // guards the open loop's schedule
  int64_t next_send_ns_ = 0;
  std::mt19937_64 rng_;

  std::mutex error_mu_;  // guards first_error_
  std::string first_error_;
};

}  // namespace tritonx::perf
