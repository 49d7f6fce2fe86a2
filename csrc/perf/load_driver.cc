#include "load_driver.h"

#include <algorithm>
#include <chrono>
#include <cmath>

namespace tritonx::perf {

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::unique_ptr<Connection> Connect(const std::shared_ptr<const Target>& target,
                                    std::string* error) {
  if (target->protocol == "http") return ConnectHttp(target, error);
#ifdef TRITONX_PERF_GRPC
  if (target->protocol == "grpc") return ConnectGrpc(target, error);
#endif
  *error = "protocol '" + target->protocol + "' is not available in this build";
  return nullptr;
}

// One thread, its connection, the records it finished and its sequence in progress.
struct LoadDriver::Worker {
  std::unique_ptr<Connection> connection;  // sync
  std::unique_ptr<AsyncClient> async;      // async
  size_t share = 0;                        // async closed loop: requests in flight
  std::vector<RequestRecord> done;         // async: Poll's output, reused
  std::thread thread;
  std::mutex mu;  // guards records (the worker appends, Drain takes)
  std::vector<RequestRecord> records;
  uint64_t sequence_id = 0;
  int sequence_left = 0;  // requests left in the current sequence
  int sequence_pos = 0;
  std::mt19937_64 rng;
};

LoadDriver::LoadDriver(std::shared_ptr<const Target> target, LoadOptions options)
    : target_(std::move(target)),
      options_(options),
      next_sequence_(options.sequence_id_start),
      rng_(options.seed) {}

LoadDriver::~LoadDriver() { Stop(); }

bool LoadDriver::Start(std::string* error) {
  const bool open_loop = options_.request_rate > 0;
  const bool async =
      options_.async && options_.sequence_length == 0 && !target_->streaming;
  int count = open_loop ? std::max(1, options_.max_threads) : options_.concurrency;
  if (async && !open_loop) count = std::min(count, std::max(1, options_.max_threads));
  if (target_->steps.empty()) {
    *error = "no request to send";
    return false;
  }
  for (int i = 0; i < count; ++i) {
    auto worker = std::make_unique<Worker>();
    if (async) {
      worker->async = MakeAsyncClient(target_, error);
      // The concurrency spread evenly, the first workers taking the remainder.
      worker->share = static_cast<size_t>(options_.concurrency / count +
                                          (i < options_.concurrency % count ? 1 : 0));
    } else {
      worker->connection = Connect(target_, error);
    }
    if (!worker->connection && !worker->async) {
      workers_.clear();
      return false;
    }
    worker->rng.seed(options_.seed + 7919 * static_cast<uint64_t>(i + 1));
    workers_.push_back(std::move(worker));
  }
  stop_.store(false);
  sent_.store(0);
  next_send_ns_ = NowNs();
  for (auto& worker : workers_) {
    Worker* w = worker.get();
    w->thread = std::thread([this, w, open_loop] {
      if (w->async) {
        if (open_loop) {
          RunAsyncOpen(w);
        } else {
          RunAsyncClosed(w, w->share);
        }
      } else if (open_loop) {
        RunOpen(w);
      } else {
        RunClosed(w);
      }
    });
  }
  return true;
}

void LoadDriver::Stop() {
  stop_.store(true);
  for (auto& worker : workers_) {
    if (worker->thread.joinable()) worker->thread.join();
  }
}

std::vector<RequestRecord> LoadDriver::Drain() {
  std::vector<RequestRecord> all;
  for (auto& worker : workers_) {
    std::vector<RequestRecord> taken;
    {
      std::lock_guard<std::mutex> lock(worker->mu);
      taken.swap(worker->records);
    }
    if (all.empty()) {
      all = std::move(taken);
    } else {
      all.insert(all.end(), std::make_move_iterator(taken.begin()),
                 std::make_move_iterator(taken.end()));
    }
  }
  return all;
}

std::string LoadDriver::FirstError() {
  std::lock_guard<std::mutex> lock(error_mu_);
  return first_error_;
}

void LoadDriver::Execute(Worker* w, size_t step) {
  SequenceParams seq;
  if (options_.sequence_length > 0) {
    if (w->sequence_left == 0) {
      // A new sequence: the next id (wrapping inside the range) and a length within
      // +/- variation % of the base, as perf_analyzer draws them.
      uint64_t id = next_sequence_.fetch_add(1);
      if (options_.sequence_id_end > options_.sequence_id_start) {
        const uint64_t span = options_.sequence_id_end - options_.sequence_id_start;
        id = options_.sequence_id_start + (id - options_.sequence_id_start) % span;
      }
      const double base = options_.sequence_length;
      const double spread = base * options_.sequence_variation / 100.0;
      std::uniform_real_distribution<double> length(base - spread, base + spread);
      w->sequence_id = id;
      w->sequence_left = std::max(1, static_cast<int>(std::lround(length(w->rng))));
      w->sequence_pos = 0;
      seq.start = true;
    }
    seq.id = w->sequence_id;
    seq.end = w->sequence_left == 1;
    step = static_cast<size_t>(w->sequence_pos);
  }
  RequestRecord record;
  w->connection->Infer(step, seq, &record);
  if (seq.id != 0) {
    // A failed step still moves on: its END must reach the server sometime.
    --w->sequence_left;
    ++w->sequence_pos;
  }
  Record(w, std::move(record), w->connection->error());
}

void LoadDriver::Record(Worker* w, RequestRecord&& record, const std::string& error) {
  if (!record.ok) {
    std::lock_guard<std::mutex> lock(error_mu_);
    if (first_error_.empty()) first_error_ = error.empty() ? "request failed" : error;
  }
  {
    std::lock_guard<std::mutex> lock(w->mu);
    w->records.push_back(std::move(record));
  }
  // Counted after it is stored: a reader that sees the count can Drain the record.
  completed_.fetch_add(1, std::memory_order_release);
}

void LoadDriver::EndSequence(Worker* w) {
  // A sequence cut short by Stop would hold its server slot until the model's idle
  // timeout; its END is sent now so that the next step starts from free slots.
  if (options_.sequence_length > 0 && w->sequence_left > 0) {
    w->sequence_left = 1;
    Execute(w, 0);
  }
}

bool LoadDriver::TakeSend() {
  if (options_.max_requests == 0) return true;
  return sent_.fetch_add(1, std::memory_order_relaxed) < options_.max_requests;
}

void LoadDriver::RunClosed(Worker* w) {
  while (!stop_.load(std::memory_order_relaxed) && TakeSend()) {
    Execute(w, next_step_.fetch_add(1, std::memory_order_relaxed));
  }
  EndSequence(w);
}

int64_t LoadDriver::NextSendTime() {
  std::lock_guard<std::mutex> lock(schedule_mu_);
  const int64_t at = next_send_ns_;
  double gap_s = 1.0 / options_.request_rate;
  if (options_.poisson) {
    std::exponential_distribution<double> exp(options_.request_rate);
    gap_s = exp(rng_);
  }
  next_send_ns_ += static_cast<int64_t>(gap_s * 1e9);
  return at;
}

void LoadDriver::RunOpen(Worker* w) {
  // Late by more than this counts as delayed (the pool could not keep the rate).
  constexpr int64_t kLateNs = 1'000'000;
  while (!stop_.load(std::memory_order_relaxed)) {
    const int64_t at = NextSendTime();
    // Sleep in short slices so that Stop is not held up by a low rate.
    for (;;) {
      if (stop_.load(std::memory_order_relaxed)) break;
      const int64_t wait = at - NowNs();
      if (wait <= 0) break;
      std::this_thread::sleep_for(
          std::chrono::nanoseconds(std::min<int64_t>(wait, 50'000'000)));
    }
    if (stop_.load(std::memory_order_relaxed) || !TakeSend()) break;
    if (NowNs() - at > kLateNs) delayed_.fetch_add(1, std::memory_order_relaxed);
    Execute(w, next_step_.fetch_add(1, std::memory_order_relaxed));
  }
  EndSequence(w);
}

namespace {
// Async workers wake at least this often to see Stop.
constexpr int64_t kPollSliceNs = 50'000'000;
}  // namespace

void LoadDriver::Finish(Worker* w) {
  // Every request sent is answered (or fails) before the worker ends, as the sync
  // workers finish theirs; a server that never answers is given up on after a while.
  const int64_t limit = NowNs() + 60'000'000'000;
  while (w->async->InFlight() > 0 && NowNs() < limit) {
    w->async->Poll(std::min(NowNs() + kPollSliceNs, limit), &w->done);
    for (auto& record : w->done) Record(w, std::move(record), w->async->error());
    w->done.clear();
  }
}

void LoadDriver::RunAsyncClosed(Worker* w, size_t share) {
  bool more = true;  // max_requests not reached yet
  while (!stop_.load(std::memory_order_relaxed) && (more || w->async->InFlight() > 0)) {
    while (more && w->async->InFlight() < share &&
           !stop_.load(std::memory_order_relaxed)) {
      if (!TakeSend()) {
        more = false;
        break;
      }
      RequestRecord failed;
      if (!w->async->Send(next_step_.fetch_add(1, std::memory_order_relaxed),
                          &failed)) {
        Record(w, std::move(failed), w->async->error());
        // An unreachable server must not become a busy loop.
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
    }
    w->async->Poll(NowNs() + kPollSliceNs, &w->done);
    for (auto& record : w->done) {
      // A server that is down fails every call at once: keep that from spinning.
      if (!record.ok) std::this_thread::sleep_for(std::chrono::milliseconds(1));
      Record(w, std::move(record), w->async->error());
    }
    w->done.clear();
  }
  Finish(w);
}

void LoadDriver::RunAsyncOpen(Worker* w) {
  constexpr int64_t kLateNs = 1'000'000;
  while (!stop_.load(std::memory_order_relaxed)) {
    const int64_t at = NextSendTime();
    // Until the request's time: collect answers (or just wait when none is due).
    for (;;) {
      if (stop_.load(std::memory_order_relaxed)) break;
      const int64_t now = NowNs();
      if (now >= at) {
        // Behind schedule: still take what is ready, without waiting.
        if (w->async->InFlight() > 0) w->async->Poll(now, &w->done);
        break;
      }
      w->async->Poll(std::min(at, now + kPollSliceNs), &w->done);
      for (auto& record : w->done) Record(w, std::move(record), w->async->error());
      w->done.clear();
    }
    for (auto& record : w->done) Record(w, std::move(record), w->async->error());
    w->done.clear();
    if (stop_.load(std::memory_order_relaxed) || !TakeSend()) break;
    if (NowNs() - at > kLateNs) delayed_.fetch_add(1, std::memory_order_relaxed);
    RequestRecord failed;
    if (!w->async->Send(next_step_.fetch_add(1, std::memory_order_relaxed), &failed)) {
      Record(w, std::move(failed), w->async->error());
    }
  }
  Finish(w);
}

}  // namespace tritonx::perf
