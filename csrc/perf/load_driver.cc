#include "load_driver.h"

#ifdef TRITONX_PERF_CHAT
#include "chat_history.h"
#endif

#include <algorithm>
#include <chrono>
#include <cmath>
#include <optional>

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

// One sequence in progress: its id, the requests it has left, and whether one of
// them is in flight. Owned by one worker.
struct LoadDriver::Sequence {
  size_t index = 0;  // in sequence_ids_
  uint64_t id = 0;
  int left = 0;  // requests still to send; 0: the next request starts a new one
  int pos = 0;   // requests sent so far (the data step of the next one)
  size_t stream_start = 0;   // its data stream: steps [start, start + length)
  size_t stream_length = 0;  // 0: no streams, the steps from the first
  bool busy = false;
};

// One thread, its connection, the records it finished and its sequences.
struct LoadDriver::Worker {
  std::unique_ptr<Connection> connection;  // sync
  std::unique_ptr<AsyncClient> async;      // async
  size_t share = 0;                        // async closed loop: requests in flight
  std::vector<RequestRecord> done;         // async: Poll's output, reused
  std::thread thread;
  std::mutex mu;  // guards records (the worker appends, Drain takes)
  std::vector<RequestRecord> records;
  std::vector<Sequence> sequences;  // sync: one; async: the worker's share
  std::deque<size_t> free;          // async: sequences with nothing in flight
  std::mt19937_64 rng;
};

LoadDriver::LoadDriver(std::shared_ptr<const Target> target, LoadOptions options)
    : target_(std::move(target)), options_(options), rng_(options.seed) {}

LoadDriver::~LoadDriver() { Stop(); }

bool LoadDriver::Start(std::string* error) {
  const bool periodic = options_.periodic_end > 0;
  if (periodic && !(options_.async && target_->streaming)) {
    *error = "periodic concurrency needs an asynchronous gRPC stream";
    return false;
  }
  const bool sessions = options_.session_concurrency > 0;
  if (sessions && !SessionsReady(error)) return false;
  const bool open_loop = OpenLoop();
  const bool async = options_.async || sessions;
  const bool sequences = options_.sequence_length > 0;
  int count = periodic    ? 1
              : sessions  ? options_.session_concurrency
              : open_loop ? std::max(1, options_.max_threads)
                          : options_.concurrency;
  // Async: requests (closed loop) or sequences (open loop) spread over the workers.
  int spread = options_.concurrency;
  if (async && open_loop && sequences) {
    spread = std::max(1, options_.num_sequences);
    count = std::min(count, spread);
  } else if (async && !open_loop) {
    count = std::min(count, std::max(1, options_.max_threads));
  }
  if (target_->steps.empty() && target_->payloads.empty()) {
    *error = "no request to send";
    return false;
  }
  const int in_progress = async && (open_loop || sequences) ? spread : count;
  const uint64_t range = options_.sequence_id_end > options_.sequence_id_start
                             ? options_.sequence_id_end - options_.sequence_id_start
                             : 0;
  if (sequences && range != 0 && range < static_cast<uint64_t>(in_progress)) {
    // Two sequences in progress must never share an id.
    *error = "--sequence-id-range holds " + std::to_string(range) +
             " ids, fewer than the " + std::to_string(in_progress) +
             " sequences in progress at once";
    return false;
  }
  sequence_ids_.assign(sequences ? static_cast<size_t>(in_progress) : 0, 0);
  sequence_counter_ = 0;
  size_t next_index = 0;
  for (int i = 0; i < count; ++i) {
    auto worker = std::make_unique<Worker>();
    size_t owned = 1;  // sequences of this worker
    if (async) {
      worker->async = MakeAsyncClient(target_, error);
      // The concurrency (or the sequences) spread evenly, the first workers taking
      // the remainder.
      owned = static_cast<size_t>(spread / count + (i < spread % count ? 1 : 0));
      worker->share = owned;
    } else {
      worker->connection = Connect(target_, error);
    }
    if (!worker->connection && !worker->async) {
      workers_.clear();
      return false;
    }
    if (sequences) {
      worker->sequences.resize(async ? owned : 1);
      for (auto& sequence : worker->sequences) sequence.index = next_index++;
      for (size_t k = 0; k < worker->sequences.size(); ++k) worker->free.push_back(k);
    }
    worker->rng.seed(options_.seed + 7919 * static_cast<uint64_t>(i + 1));
    workers_.push_back(std::move(worker));
  }
  stop_.store(false);
  sent_.store(0);
  next_session_.store(0);
  next_send_ns_ = start_ns_ = NowNs();
  next_interval_ = 0;
  next_scheduled_ = 0;
  for (auto& worker : workers_) {
    Worker* w = worker.get();
    w->thread = std::thread([this, w, open_loop, periodic, sessions] {
      if (sessions) {
        RunSessions(w);
      } else if (periodic) {
        RunPeriodic(w);
      } else if (w->async) {
        if (open_loop) {
          RunAsyncOpen(w);
        } else {
          RunAsyncClosed(w);
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

uint64_t LoadDriver::NewSequenceId(size_t index) {
  // perf_analyzer's rule: the next id of the range, in turn; one that another
  // sequence in progress still holds is passed over (Start checked that the range
  // has an id for every sequence in progress).
  std::lock_guard<std::mutex> lock(sequence_mu_);
  const uint64_t start = options_.sequence_id_start;
  const uint64_t range =
      options_.sequence_id_end > start ? options_.sequence_id_end - start : 0;
  for (;;) {
    const uint64_t n = sequence_counter_++;
    const uint64_t id = range != 0 ? start + n % range : start + n;
    bool taken = false;
    for (size_t i = 0; i < sequence_ids_.size() && !taken; ++i) {
      taken = i != index && sequence_ids_[i] == id;
    }
    if (!taken) {
      sequence_ids_[index] = id;
      return id;
    }
  }
}

SequenceParams LoadDriver::NextInSequence(Worker* w, Sequence* s, size_t* step) {
  SequenceParams seq;
  if (s->left == 0) {
    // A new sequence: a length within +/- variation % of the base, as perf_analyzer
    // draws them, or its data stream's length.
    const double base = options_.sequence_length;
    const double spread = base * options_.sequence_variation / 100.0;
    std::uniform_real_distribution<double> length(base - spread, base + spread);
    s->id = NewSequenceId(s->index);
    s->left = std::max(1, static_cast<int>(std::lround(length(w->rng))));
    s->pos = 0;
    const auto& streams = options_.stream_lengths;
    if (!streams.empty()) {
      std::uniform_int_distribution<size_t> pick(0, streams.size() - 1);
      const size_t chosen = pick(w->rng);
      s->stream_start = 0;
      for (size_t i = 0; i < chosen; ++i) s->stream_start += streams[i];
      s->stream_length = static_cast<size_t>(std::max(1, streams[chosen]));
      if (options_.length_from_stream) s->left = static_cast<int>(s->stream_length);
    }
    seq.start = true;
  }
  seq.id = s->id;
  seq.end = s->left == 1;
  *step = s->stream_length == 0
              ? static_cast<size_t>(s->pos)
              : s->stream_start + static_cast<size_t>(s->pos) % s->stream_length;
  // A failed request still moves the sequence on: its END must reach the server.
  --s->left;
  ++s->pos;
  return seq;
}

void LoadDriver::Execute(Worker* w, size_t step) {
  SequenceParams seq;
  if (!w->sequences.empty()) seq = NextInSequence(w, &w->sequences[0], &step);
  RequestRecord record;
  w->connection->Infer(step, seq, &record);
  Record(w, std::move(record), w->connection->error());
}

void LoadDriver::NoteError(const std::string& error) {
  std::lock_guard<std::mutex> lock(error_mu_);
  if (first_error_.empty()) first_error_ = error.empty() ? "request failed" : error;
}

void LoadDriver::Record(Worker* w, RequestRecord&& record, const std::string& error) {
  const bool failed = !record.ok;
  {
    std::lock_guard<std::mutex> lock(w->mu);
    w->records.push_back(std::move(record));
  }
  // Noted after the record is stored: a reader that sees the error and then Drains
  // finds the failed record.
  if (failed) NoteError(error);
  // Counted after it is stored: a reader that sees the count can Drain the record.
  completed_.fetch_add(1, std::memory_order_release);
}

void LoadDriver::EndSequence(Worker* w) {
  // A sequence cut short by Stop would hold its server slot until the model's idle
  // timeout; its END is sent now so that the next step starts from free slots.
  if (!w->sequences.empty() && w->sequences[0].left > 0) {
    w->sequences[0].left = 1;
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

bool LoadDriver::NextSend(int64_t* at, size_t* step) {
  std::lock_guard<std::mutex> lock(schedule_mu_);
  if (!options_.schedule.empty()) {
    // Time and step are taken together: the request due first sends its own data.
    if (next_scheduled_ == options_.schedule.size()) return false;
    *at = start_ns_ + options_.schedule[next_scheduled_].first;
    *step = options_.schedule[next_scheduled_].second;
    ++next_scheduled_;
    return true;
  }
  *at = next_send_ns_;
  *step = next_step_.fetch_add(1, std::memory_order_relaxed);
  const auto& intervals = options_.intervals_ns;
  if (!intervals.empty()) {
    next_send_ns_ += intervals[next_interval_];
    next_interval_ = (next_interval_ + 1) % intervals.size();
    return true;
  }
  double gap_s = 1.0 / options_.request_rate;
  if (options_.poisson) {
    std::exponential_distribution<double> exp(options_.request_rate);
    gap_s = exp(rng_);
  }
  next_send_ns_ += static_cast<int64_t>(gap_s * 1e9);
  return true;
}

void LoadDriver::RunOpen(Worker* w) {
  // Late by more than this counts as delayed (the pool could not keep the rate).
  constexpr int64_t kLateNs = 1'000'000;
  int64_t at = 0;
  size_t step = 0;
  while (!stop_.load(std::memory_order_relaxed) && NextSend(&at, &step)) {
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
    Execute(w, step);
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
    Collect(w);
  }
}

bool LoadDriver::CanSend(Worker* w) const {
  if (!w->sequences.empty()) return !w->free.empty();
  // The open loop sends at each scheduled time whatever is in flight.
  return OpenLoop() || w->async->InFlight() < w->share;
}

void LoadDriver::SendNext(Worker* w, size_t step) {
  SequenceParams seq;
  Sequence* sequence = nullptr;
  if (!w->sequences.empty()) {
    sequence = &w->sequences[w->free.front()];
    w->free.pop_front();
    seq = NextInSequence(w, sequence, &step);
    sequence->busy = true;
  }
  RequestRecord failed;
  if (!w->async->Send(step, seq, &failed)) {
    if (sequence != nullptr) {
      sequence->busy = false;
      w->free.push_back(static_cast<size_t>(sequence - w->sequences.data()));
    }
    Record(w, std::move(failed), w->async->error());
    // An unreachable server must not become a busy loop.
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
}

void LoadDriver::Collect(Worker* w, const std::string& failure) {
  for (auto& record : w->done) {
    if (record.sequence_id != 0) {
      // Its sequence may send again (ids of sequences in progress are distinct).
      for (size_t k = 0; k < w->sequences.size(); ++k) {
        Sequence& s = w->sequences[k];
        if (s.busy && s.id == record.sequence_id) {
          s.busy = false;
          w->free.push_back(k);
          break;
        }
      }
    }
    // A server that is down fails every call at once: keep that from spinning.
    if (!record.ok) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    Record(w, std::move(record), failure.empty() ? w->async->error() : failure);
  }
  w->done.clear();
}

void LoadDriver::EndSequencesAsync(Worker* w) {
  // Each sequence cut short gets its END once its request in flight is answered
  // (never before it: the END must not overtake it).
  const int64_t limit = NowNs() + 60'000'000'000;
  for (;;) {
    bool pending = false;
    for (size_t k = 0; k < w->sequences.size(); ++k) {
      Sequence& s = w->sequences[k];
      if (s.left == 0) continue;
      pending = true;
      if (s.busy) continue;
      s.left = 1;
      w->free.erase(std::find(w->free.begin(), w->free.end(), k));
      w->free.push_front(k);
      SendNext(w, 0);  // the sequence picks its own step
    }
    if (!pending || NowNs() >= limit) return;
    w->async->Poll(std::min(NowNs() + kPollSliceNs, limit), &w->done);
    Collect(w);
  }
}

void LoadDriver::RunAsyncClosed(Worker* w) {
  bool more = true;  // max_requests not reached yet
  while (!stop_.load(std::memory_order_relaxed) && (more || w->async->InFlight() > 0)) {
    while (more && CanSend(w) && !stop_.load(std::memory_order_relaxed)) {
      if (!TakeSend()) {
        more = false;
        break;
      }
      SendNext(w, next_step_.fetch_add(1, std::memory_order_relaxed));
    }
    w->async->Poll(NowNs() + kPollSliceNs, &w->done);
    Collect(w);
  }
  EndSequencesAsync(w);
  Finish(w);
}

void LoadDriver::RunAsyncOpen(Worker* w) {
  constexpr int64_t kLateNs = 1'000'000;
  int64_t at = 0;
  size_t step = 0;
  while (!stop_.load(std::memory_order_relaxed) && NextSend(&at, &step)) {
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
      Collect(w);
    }
    Collect(w);
    // Sequences: the request goes to one with nothing in flight, waiting for one
    // when all are busy (it is then late, and counted so).
    while (!CanSend(w) && !stop_.load(std::memory_order_relaxed)) {
      w->async->Poll(NowNs() + kPollSliceNs, &w->done);
      Collect(w);
    }
    if (stop_.load(std::memory_order_relaxed) || !TakeSend()) break;
    if (NowNs() - at > kLateNs) delayed_.fetch_add(1, std::memory_order_relaxed);
    SendNext(w, step);
  }
  EndSequencesAsync(w);
  Finish(w);
}

bool LoadDriver::GroupReachedPeriod(Worker* w, uint64_t first, uint64_t last) const {
  for (uint64_t n = first; n <= last; ++n) {
    const std::optional<size_t> responses = w->async->ResponsesSoFar(n);
    if (responses && *responses < static_cast<size_t>(options_.request_period)) {
      return false;
    }
  }
  return true;
}

// perf_analyzer's words, where it aborts.
const char* const kEndedBeforePeriod =
    "Request received final response before request period was reached. Request "
    "period must be at most the total number of responses received by any request.";

bool LoadDriver::EndedBeforePeriod(std::vector<RequestRecord>* done) {
  bool ended = false;
  for (RequestRecord& record : *done) {
    if (record.ok && record.responses < static_cast<size_t>(options_.request_period)) {
      // perf_analyzer aborts the run here; the request fails (kEndedBeforePeriod).
      record.ok = false;
      ended = true;
    }
  }
  return ended;
}

void LoadDriver::RunPeriodic(Worker* w) {
  const uint64_t end = static_cast<uint64_t>(options_.periodic_end);
  uint64_t sent = 0;         // numbered as the client numbers them, from 1
  uint64_t group_first = 1;  // the latest group: group_first..sent
  auto send_group = [&](int size) {
    group_first = sent + 1;
    for (int k = 0; k < size && sent < end; ++k, ++sent) {
      SendNext(w, next_step_.fetch_add(1, std::memory_order_relaxed));
    }
  };
  send_group(std::max(1, options_.periodic_start));
  while (!stop_.load(std::memory_order_relaxed) &&
         (sent < end || w->async->InFlight() > 0)) {
    // A stream's Poll returns on any response, so each is seen as it comes.
    w->async->Poll(NowNs() + kPollSliceNs, &w->done);
    const bool period_too_long = EndedBeforePeriod(&w->done);
    Collect(w, period_too_long ? kEndedBeforePeriod : "");
    if (period_too_long) break;  // the rest are answered in Finish; nothing more sent
    if (sent < end && GroupReachedPeriod(w, group_first, sent)) {
      send_group(std::max(1, options_.periodic_step));
    }
  }
  Finish(w);
}

bool LoadDriver::SessionsReady(std::string* error) const {
#ifndef TRITONX_PERF_CHAT
  *error = "chat sessions are not available in this build (RapidJSON was missing)";
  return false;
#else
  if (target_->endpoint.empty()) {
    *error = "chat sessions need the OpenAI service kind";
    return false;
  }
  for (const auto& session : options_.sessions) {
    for (const size_t turn : session) {
      if (turn >= target_->payloads.size() || turn >= options_.turn_delays_ns.size()) {
        *error = "a session's turn has no payload";
        return false;
      }
    }
  }
  return true;
#endif
}

bool LoadDriver::Pause(int64_t ns) const {
  const int64_t until = NowNs() + ns;
  while (!stop_.load(std::memory_order_relaxed)) {
    const int64_t left = until - NowNs();
    if (left <= 0) return true;
    std::this_thread::sleep_for(std::chrono::nanoseconds(std::min(left, kPollSliceNs)));
  }
  return false;
}

void LoadDriver::RunSessions(Worker* w) {
#ifdef TRITONX_PERF_CHAT
  for (;;) {
    const size_t index = next_session_.fetch_add(1);
    if (index >= options_.sessions.size()) return;
    const std::vector<size_t>& turns = options_.sessions[index];
    ChatHistory history;
    for (size_t k = 0; k < turns.size(); ++k) {
      if (stop_.load(std::memory_order_relaxed)) return;
      const size_t step = turns[k];
      std::string payload, error;
      RequestRecord record;
      if (!history.NextPayload(target_->payloads[step], &payload, &error)) {
        record.step = step;
        record.start_ns = record.end_ns = NowNs();
        Record(w, std::move(record), error);
        return;
      }
      if (!w->async->SendPayload(step, payload, &record)) {
        Record(w, std::move(record), w->async->error());
        return;
      }
      // One turn in flight: its answer is the next turn's history.
      while (w->done.empty()) {
        if (stop_.load(std::memory_order_relaxed)) return Finish(w);
        w->async->Poll(NowNs() + kPollSliceNs, &w->done);
      }
      record = std::move(w->done.front());
      w->done.clear();
      error = w->async->error();
      if (record.ok && !history.AddAnswer(record.response_bodies, &error)) {
        record.ok = false;
      }
      const bool ok = record.ok;
      Record(w, std::move(record), error);
      if (!ok) return;  // the rest of this session would lack its history
      if (k + 1 < turns.size() && !Pause(options_.turn_delays_ns[step])) return;
    }
  }
#else
  (void)w;
#endif
}

}  // namespace tritonx::perf
