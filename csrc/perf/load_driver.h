// LoadDriver: the load of one tritonx-perf step, generated from C++ threads so that
// the measurement is the server's, not the client's (the Python side only reads
// the records between windows). It grows the core's closed-loop GenerateLoad
// (csrc/core/load_generator.h, in-process) into a network client:
//   - concurrency mode (closed loop): N workers, each with its own connection, send
//     the next request as soon as the previous one is answered;
//   - request-rate mode (open loop): a schedule of send times (constant or Poisson
//     intervals, or the user's list of intervals in turn: perf_analyzer's
//     --request-intervals) served by a pool of workers; a request whose worker was
//     still busy at its time is sent late and counted in delayed();
//   - fixed schedule (perf_analyzer's --fixed-schedule, an open loop too): each
//     request at its own time after the start, with its own data step, once.
//   - periodic concurrency (perf_analyzer's --periodic-concurrency-range, a gRPC
//     stream): a first group of requests, then another each time every request of
//     the latest group has had request_period responses, up to a total;
//   - chat sessions (perf_analyzer's --session-concurrency, OpenAI service kind):
//     N sessions at a time, each sending its turns one by one with the
//     conversation so far, pausing between them as the data says.
// With async (perf_analyzer's --async) a worker keeps many requests in flight
// through an AsyncClient instead of one through a Connection: closed loop, the
// concurrency is split over min(max_threads, concurrency) workers; open loop, every
// request is sent at its time whatever is still in flight, so --max-threads no
// longer caps the requests in flight at a rate.
// Sequences (perf_analyzer's sequence statuses): a fixed number of sequences are in
// progress at once, each with at most one request in flight, so that a sequence's
// requests reach the server whole and in order. Sync: one per worker. Async, closed
// loop: the concurrency (each worker keeps its share of sequences going); open loop:
// num_sequences, spread over the workers, a scheduled request going to a sequence
// that has none in flight (perf_analyzer's --serial-sequences). A sequence that ends
// takes the next id of the range that no other sequence in progress holds.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "connection.h"

namespace tritonx::perf {

struct LoadOptions {
  int concurrency = 1;      // closed loop; ignored in the open loop
  double request_rate = 0;  // requests per second; > 0 selects the open loop
  bool poisson = false;     // open loop intervals: exponential instead of constant
  // Non-empty (also selects the open loop): the open loop's gaps between sends, used in
  // turn and repeated (the first request goes at once, the next intervals_ns[0] later);
  // request_rate and poisson are then unused.
  std::vector<int64_t> intervals_ns;
  // Non-empty (selects the open loop): the requests of a fixed schedule, in the
  // order they go: when (ns after Start) and which data step; the load sends each
  // once and no more. request_rate, poisson and intervals_ns are then unused.
  std::vector<std::pair<int64_t, size_t>> schedule;
  // periodic_end > 0 selects periodic concurrency (async streaming only): one worker
  // sends periodic_start requests on its stream, then periodic_step more each time
  // every request of the latest group has received request_period responses (or
  // finished), until periodic_end were sent; it ends once all are answered.
  int periodic_start = 1;
  int periodic_end = 0;
  int periodic_step = 1;
  int request_period = 10;
  int max_threads = 16;            // open loop workers
  int sequence_length = 0;         // 0: requests carry no sequence
  double sequence_variation = 20;  // percent around sequence_length
  uint64_t sequence_id_start = 1;
  uint64_t sequence_id_end = 0;  // exclusive; 0: unbounded
  uint64_t seed = 0;
  int num_sequences = 4;  // open loop with sequences and async: sequences at once
  // JSON input data in streams (perf_analyzer's list of lists): the lengths of the
  // consecutive runs of Target::steps that form each stream. A new sequence takes
  // one stream at random and walks its steps (wrapping); its length is the
  // stream's own unless length_from_stream is false (--sequence-length given).
  std::vector<int> stream_lengths;
  bool length_from_stream = false;
  bool async = false;  // many requests in flight per worker (unary)
  // Requests to send in all (perf_analyzer's --request-count and the warm-up);
  // 0: until Stop. Workers end by themselves once the last one is answered.
  uint64_t max_requests = 0;
  // session_concurrency > 0 selects chat sessions (perf_analyzer's
  // --session-concurrency; OpenAI service kind): that many workers, each running
  // whole sessions one after another until every session ran once. A session sends
  // its turns (indexes into Target::payloads) in order, one at a time, each with
  // the conversation so far (chat_history.h), and waits turn_delays_ns[turn's
  // payload] after each answer but the last before the next turn.
  int session_concurrency = 0;
  std::vector<std::vector<size_t>> sessions;
  std::vector<int64_t> turn_delays_ns;
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
  bool KeepsBodies() const { return target_->keep_bodies; }

 private:
  struct Worker;
  struct Sequence;
  void RunClosed(Worker* worker);
  void RunOpen(Worker* worker);
  void RunAsyncClosed(Worker* worker);
  void RunAsyncOpen(Worker* worker);
  void RunPeriodic(Worker* worker);
  void RunSessions(Worker* worker);
  // Sessions: whether this build and the options can run them (else *error).
  bool SessionsReady(std::string* error) const;
  // Sessions: sleeps up to `ns`, waking early on Stop; false when stopped.
  bool Pause(int64_t ns) const;
  // Periodic: whether the requests numbered first..last (the latest group, as the
  // worker's client numbers them) have each had request_period responses.
  bool GroupReachedPeriod(Worker* worker, uint64_t first, uint64_t last) const;
  // Periodic: fails the finished requests in `done` that had fewer responses than
  // the request period (their group could never reach it) and tells whether there
  // were any; Collect then records them with perf_analyzer's error.
  bool EndedBeforePeriod(std::vector<RequestRecord>* done);
  void Finish(Worker* worker);  // async: waits for the requests still in flight
  void Record(Worker* worker, RequestRecord&& record, const std::string& error);
  // Keeps `error` as the run's first error unless one was kept already.
  void NoteError(const std::string& error);
  void Execute(Worker* worker, size_t step);
  void EndSequence(Worker* worker);
  // Async: whether another request may go now (a free sequence, or room in the
  // worker's share), sending it; Collect records Poll's output and frees sequences
  // (a failed request's error: `failure`, or the client's own when empty).
  bool CanSend(Worker* worker) const;
  void SendNext(Worker* worker, size_t step);
  void Collect(Worker* worker, const std::string& failure = "");
  void EndSequencesAsync(Worker* worker);
  // The parameters of the sequence's next request (starting a new sequence when the
  // last one ended) and the data step it uses.
  SequenceParams NextInSequence(Worker* worker, Sequence* sequence, size_t* step);
  uint64_t NewSequenceId(size_t index);
  bool OpenLoop() const {
    return options_.request_rate > 0 || !options_.intervals_ns.empty() ||
           !options_.schedule.empty();
  }
  // The open loop's next request: when it goes (*at) and its data step (*step);
  // false once a fixed schedule is spent.
  bool NextSend(int64_t* at, size_t* step);
  bool TakeSend();  // false once max_requests were sent

  std::shared_ptr<const Target> target_;
  LoadOptions options_;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> next_step_{0};
  std::atomic<size_t> next_session_{0};
  std::atomic<uint64_t> sent_{0};
  std::atomic<uint64_t> delayed_{0};
  std::atomic<uint64_t> completed_{0};

  std::mutex schedule_mu_;  // guards the open loop's schedule
  int64_t next_send_ns_ = 0;
  size_t next_interval_ = 0;   // in options_.intervals_ns
  size_t next_scheduled_ = 0;  // in options_.schedule
  int64_t start_ns_ = 0;
  std::mt19937_64 rng_;

  std::mutex sequence_mu_;              // guards sequence_ids_ and sequence_counter_
  std::vector<uint64_t> sequence_ids_;  // per sequence in progress (global index)
  uint64_t sequence_counter_ = 0;

  std::mutex error_mu_;  // guards first_error_
  std::string first_error_;
};

}  // namespace tritonx::perf
