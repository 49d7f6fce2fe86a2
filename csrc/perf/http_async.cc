// Many HTTP/1.1 requests in flight from one thread (tritonx-perf --async): a pool of
// keep-alive connections, one request in flight on each (HTTP/1.1 answers in order,
// so a connection is busy until its answer is read), a new connection opened when
// every one is busy, and ppoll() over the busy ones, as libcurl's multi interface
// does for perf_analyzer. The OpenAI service kind uses it too: JSON payloads
// POSTed to an endpoint, each event of a streamed answer a response of its own.
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "connection.h"
#include "http_message.h"
#include "http_response_reader.h"
#include "http_socket.h"

namespace tritonx::perf {
namespace {

// Thread-safety: one thread (its worker). Ownership: owns its sockets; shares the TLS
// context with the run's other clients.
class HttpAsyncClient : public AsyncClient {
 public:
  HttpAsyncClient(std::shared_ptr<const Target> target,
                  std::shared_ptr<HttpTlsContext> tls)
      : target_(std::move(target)), messages_(*target_), tls_(std::move(tls)) {}

  const std::string& BuildError() const { return messages_.error(); }

  bool Send(size_t step, const SequenceParams& seq, RequestRecord* failed) override {
    Conn* conn = TakeConn();
    MarkSequence(seq, &conn->rec);
    // A sequence's request carries its parameters; others are sent prebuilt.
    if (seq.id != 0) {
      conn->message = messages_.WithSequence(step, seq);
    } else {
      conn->message.clear();
    }
    if (openai_ && target_->keep_bodies) {
      conn->rec.request_body = target_->payloads[step % target_->payloads.size()];
    }
    return Start(conn, step, failed);
  }

  bool SendPayload(size_t step, const std::string& payload,
                   RequestRecord* failed) override {
    Conn* conn = TakeConn();
    conn->message = messages_.OpenAIRequest(payload);
    if (target_->keep_bodies) conn->rec.request_body = payload;
    return Start(conn, step, failed);
  }

  void Poll(int64_t deadline_ns, std::vector<RequestRecord>* done) override {
    const int64_t wait = std::max<int64_t>(deadline_ns - NowNs(), 0);
    if (busy_.empty()) {
      if (wait > 0) std::this_thread::sleep_for(std::chrono::nanoseconds(wait));
      return;
    }
    fds_.resize(busy_.size());
    for (size_t i = 0; i < busy_.size(); ++i) {
      fds_[i] = pollfd{busy_[i]->sock.fd(), POLLIN, 0};
    }
    timespec timeout{static_cast<time_t>(wait / 1'000'000'000),
                     static_cast<long>(wait % 1'000'000'000)};
    const int ready = ppoll(fds_.data(), fds_.size(), &timeout, nullptr);
    if (ready <= 0) return;
    // Walk backwards so that finished connections can leave busy_ in place.
    for (size_t i = fds_.size(); i-- > 0;) {
      if (fds_[i].revents == 0) continue;
      Conn* conn = busy_[i];
      const Outcome outcome = Read(conn);
      if (outcome == Outcome::kPending) continue;
      busy_[i] = busy_.back();
      busy_.pop_back();
      if (outcome == Outcome::kResent) {
        busy_.push_back(conn);
        continue;
      }
      done->push_back(std::move(conn->rec));
      idle_.push_back(conn);
    }
  }

  size_t InFlight() const override { return busy_.size(); }

 private:
  struct Conn {
    HttpSocket sock;
    bool used = false;  // answered a request before: the server may have closed it
    bool retried = false;
    size_t step = 0;
    std::string message;  // a request's own bytes; empty: the step's prebuilt one
    int64_t first_byte = 0;
    std::string buffer;  // bytes read and not yet parsed
    HttpResponseReader reader;
    int64_t reading_ns = 0;  // time spent in Read for the request in flight
    RequestRecord rec;
  };
  enum class Outcome { kPending, kDone, kResent };

  Conn* TakeConn() {
    Conn* conn;
    if (idle_.empty()) {
      conns_.push_back(std::make_unique<Conn>());
      conn = conns_.back().get();
    } else {
      conn = idle_.back();
      idle_.pop_back();
    }
    conn->rec = RequestRecord{};
    return conn;
  }

  // Sends conn's request (its message, or the step's prebuilt one); false with
  // *failed when it could not be sent.
  bool Start(Conn* conn, size_t step, RequestRecord* failed) {
    conn->rec.start_ns = NowNs();
    // The data step the request used (the load counts steps without wrapping).
    conn->rec.step = openai_ ? step % target_->payloads.size() : step;
    conn->step = step;
    conn->retried = false;
    if (!Transmit(conn)) {
      conn->rec.ok = false;
      conn->rec.end_ns = NowNs();
      *failed = std::move(conn->rec);
      idle_.push_back(conn);
      return false;
    }
    conn->rec.send_ns = NowNs() - conn->rec.start_ns;
    busy_.push_back(conn);
    return true;
  }

  // OpenAI event streams: each whole event read so far is a response, timed now.
  void TakeEvents(Conn* conn, bool at_end) {
    std::string event;
    while (conn->reader.NextEvent(at_end, &event)) {
      conn->rec.response_ns.push_back(NowNs());
      ++conn->rec.responses;
      if (target_->keep_bodies) conn->rec.response_bodies.push_back(std::move(event));
    }
  }

  void Close(Conn* conn) {
    conn->sock.Close();
    conn->used = false;
    conn->buffer.clear();
  }

  // Writes the request (opening the connection when needed); a kept-alive one the
  // server closed meanwhile gets one more try on a fresh connection.
  bool Transmit(Conn* conn) {
    const std::string& message =
        conn->message.empty() ? messages_.Message(conn->step) : conn->message;
    conn->first_byte = 0;
    conn->reading_ns = 0;
    conn->buffer.clear();
    // OpenAI answers are read for their events or body; KServe ones for errors only.
    conn->reader.Reset(/*keep_body=*/openai_);
    for (int attempt = 0; attempt < 2; ++attempt) {
      // TLS reads need a non-blocking socket (a record may arrive in parts); plain
      // reads use MSG_DONTWAIT on a blocking one.
      if (!conn->sock.is_open() &&
          !conn->sock.Open(target_->url, tls_, /*nonblocking=*/tls_ != nullptr,
                           &error_)) {
        return false;
      }
      if (conn->sock.SendAll(message.data(), message.size(), &error_)) return true;
      const bool used = conn->used;
      Close(conn);
      if (!used) return false;
    }
    return false;
  }

  Outcome Fail(Conn* conn) {
    Close(conn);
    conn->rec.ok = false;
    conn->rec.end_ns = NowNs();
    return Outcome::kDone;
  }

  Outcome Read(Conn* conn) {
    const int64_t began = NowNs();
    char chunk[65536];
    for (;;) {
      const ssize_t n = conn->sock.Recv(chunk, sizeof(chunk), /*wait=*/false, &error_);
      if (n > 0) {
        if (conn->first_byte == 0) conn->first_byte = NowNs();
        conn->buffer.append(chunk, static_cast<size_t>(n));
        // A short read drained the socket; TLS returns a record at a time, and
        // what OpenSSL already holds would never wake ppoll: read on until EAGAIN.
        if (static_cast<size_t>(n) < sizeof(chunk) && !conn->sock.tls()) break;
        continue;
      }
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      // EOF or error. Before any byte of an answer on a reused connection: the
      // request never reached the server, send it once more.
      if (n == 0) error_ = "the server closed the connection";
      if (conn->first_byte == 0 && conn->used && !conn->retried) {
        Close(conn);
        conn->retried = true;
        if (Transmit(conn)) return Outcome::kResent;
      }
      return Fail(conn);
    }
    HttpResponseReader& reader = conn->reader;
    const ParseResult parsed = reader.Feed(&conn->buffer, &error_);
    if (parsed == ParseResult::kError) return Fail(conn);
    const bool events = openai_ && reader.event_stream() && reader.status() == 200;
    if (events) TakeEvents(conn, parsed == ParseResult::kComplete);
    if (parsed == ParseResult::kIncomplete) {
      conn->reading_ns += NowNs() - began;
      return Outcome::kPending;
    }
    RequestRecord& rec = conn->rec;
    rec.end_ns = NowNs();
    // An event stream's bytes come as the model makes them: its receive time is the
    // time spent reading them, not the span from the first byte to the last.
    rec.recv_ns = events ? conn->reading_ns + (rec.end_ns - began)
                         : rec.end_ns - conn->first_byte;
    conn->used = true;
    if (reader.close()) Close(conn);
    if (reader.status() != 200) {
      error_ = "HTTP " + std::to_string(reader.status()) + ": " +
               HttpErrorText(reader.body());
      rec.ok = false;
      return Outcome::kDone;
    }
    rec.ok = true;
    if (!events) {  // one answer: a KServe response or a whole OpenAI body
      rec.response_ns.push_back(rec.end_ns);
      rec.responses = 1;
      if (openai_ && target_->keep_bodies) {
        rec.response_bodies.push_back(std::move(reader.body()));
      }
    }
    return Outcome::kDone;
  }

  std::shared_ptr<const Target> target_;
  const bool openai_ = !target_->endpoint.empty();
  HttpMessages messages_;
  std::shared_ptr<HttpTlsContext> tls_;       // null: plain HTTP
  std::vector<std::unique_ptr<Conn>> conns_;  // every connection ever opened
  std::vector<Conn*> idle_;                   // free for the next request
  std::vector<Conn*> busy_;                   // a request in flight each
  std::vector<pollfd> fds_;
};

}  // namespace

std::unique_ptr<AsyncClient> MakeHttpAsync(const std::shared_ptr<const Target>& target,
                                           std::string* error) {
  bool ok;
  auto tls = HttpTls(*target, error, &ok);
  if (!ok) return nullptr;
  auto client = std::make_unique<HttpAsyncClient>(target, std::move(tls));
  if (!client->BuildError().empty()) {
    *error = client->BuildError();
    return nullptr;
  }
  return client;
}

std::unique_ptr<AsyncClient> MakeAsyncClient(
    const std::shared_ptr<const Target>& target, std::string* error) {
  if (target->protocol == "http") return MakeHttpAsync(target, error);
#ifdef TRITONX_PERF_GRPC
  if (target->protocol == "grpc") return MakeGrpcAsync(target, error);
#endif
  *error = "protocol '" + target->protocol + "' is not available in this build";
  return nullptr;
}

}  // namespace tritonx::perf
