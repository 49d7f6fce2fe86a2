// Many HTTP/1.1 requests in flight from one thread (tritonx-perf --async): a pool of
// keep-alive connections, one request in flight on each (HTTP/1.1 answers in order,
// so a connection is busy until its answer is read), a new connection opened when
// every one is busy, and ppoll() over the busy ones, as libcurl's multi interface
// does for perf_analyzer.
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
    Conn* conn;
    if (idle_.empty()) {
      conns_.push_back(std::make_unique<Conn>());
      conn = conns_.back().get();
    } else {
      conn = idle_.back();
      idle_.pop_back();
    }
    conn->rec = RequestRecord{};
    MarkSequence(seq, &conn->rec);
    conn->rec.start_ns = NowNs();
    conn->step = step;
    // A sequence's request carries its parameters; others are sent prebuilt.
    if (seq.id != 0) {
      conn->message = messages_.WithSequence(step, seq);
    } else {
      conn->message.clear();
    }
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
    std::string message;  // a sequence request's own bytes; empty: the prebuilt one
    int64_t first_byte = 0;
    std::string buffer;
    RequestRecord rec;
  };
  enum class Outcome { kPending, kDone, kResent };

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
    conn->buffer.clear();
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
      if (conn->buffer.empty() && conn->used && !conn->retried) {
        Close(conn);
        conn->retried = true;
        if (Transmit(conn)) return Outcome::kResent;
      }
      return Fail(conn);
    }
    HttpResponse response;
    size_t consumed = 0;
    const ParseResult parsed =
        ParseHttpResponse(conn->buffer, &response, &consumed, &error_);
    if (parsed == ParseResult::kIncomplete) return Outcome::kPending;
    if (parsed == ParseResult::kError) return Fail(conn);
    RequestRecord& rec = conn->rec;
    rec.end_ns = NowNs();
    rec.recv_ns = rec.end_ns - conn->first_byte;
    conn->buffer.erase(0, consumed);
    conn->used = true;
    if (response.close) Close(conn);
    if (response.status != 200) {
      error_ = "HTTP " + std::to_string(response.status) + ": " +
               HttpErrorText(response.body);
      rec.ok = false;
      return Outcome::kDone;
    }
    rec.ok = true;
    rec.response_ns.push_back(rec.end_ns);
    return Outcome::kDone;
  }

  std::shared_ptr<const Target> target_;
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
