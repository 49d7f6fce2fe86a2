// Raw HTTP/1.1 keep-alive client for KServe V2 infer (Triton's binary tensor
// extension, or JSON tensors): one blocking socket per connection, every request
// prebuilt when the load starts (http_message.h), so the client costs a send() and
// a few recv() per request.
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <thread>

#include "connection.h"
#include "http_message.h"
#include "http_response_reader.h"
#include "http_socket.h"

namespace tritonx::perf {
namespace {

// Thread-safety: one worker thread at a time. Ownership: owns its socket; shares the
// TLS context with the run's other connections.
class HttpConnection : public Connection {
 public:
  HttpConnection(std::shared_ptr<const Target> target,
                 std::shared_ptr<HttpTlsContext> tls)
      : target_(std::move(target)), messages_(*target_), tls_(std::move(tls)) {}
  ~HttpConnection() override { Close(); }

  bool Open(std::string* error) {
    Close();
    if (!messages_.error().empty()) {
      *error = messages_.error();
      return false;
    }
    buffer_.clear();
    return socket_.Open(target_->url, tls_, /*nonblocking=*/false, error);
  }

  void Infer(size_t step, const SequenceParams& seq, RequestRecord* rec) override {
    rec->start_ns = NowNs();
    MarkSequence(seq, rec);
    std::string with_sequence;
    if (seq.id != 0) with_sequence = messages_.WithSequence(step, seq);
    const std::string& message = seq.id == 0 ? messages_.Message(step) : with_sequence;
    int status = 0;
    std::string body;
    int64_t first_byte = 0;
    for (int attempt = 0;; ++attempt) {
      // A kept-alive connection the server has closed in the meantime fails before
      // any byte of an answer: the request never reached it, so send it once more on
      // a fresh connection, as HTTP clients do.
      const bool reused = socket_.is_open();
      if (!reused && !Open(&error_)) {
        Fail(rec);
        // Back off a little: an unreachable server must not become a busy loop.
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        return;
      }
      if (!socket_.SendAll(message.data(), message.size(), &error_)) {
        Close();
        if (reused && attempt == 0) continue;
        Fail(rec);
        return;
      }
      rec->send_ns = NowNs() - rec->start_ns;
      if (ReadResponse(&status, &body, &first_byte)) break;
      Close();
      if (reused && attempt == 0 && first_byte == 0) continue;
      Fail(rec);
      return;
    }
    rec->end_ns = NowNs();
    rec->recv_ns = rec->end_ns - (first_byte ? first_byte : rec->end_ns);
    if (status != 200) {
      error_ = "HTTP " + std::to_string(status) + ": " + HttpErrorText(body);
      rec->ok = false;
      return;
    }
    rec->ok = true;
    rec->response_ns.push_back(rec->end_ns);
  }

 private:
  void Fail(RequestRecord* rec) {
    rec->ok = false;
    rec->end_ns = NowNs();
  }

  void Close() {
    socket_.Close();
    buffer_.clear();
  }

  // Appends at least one more byte to buffer_; false at EOF or error.
  bool Fill(int64_t* first_byte) {
    char chunk[65536];
    const ssize_t n = socket_.Recv(chunk, sizeof(chunk), /*wait=*/true, &error_);
    if (n > 0) {
      if (*first_byte == 0) *first_byte = NowNs();
      buffer_.append(chunk, static_cast<size_t>(n));
      return true;
    }
    if (n == 0) error_ = "the server closed the connection";
    return false;
  }

  bool ReadResponse(int* status, std::string* body, int64_t* first_byte) {
    reader_.Reset(/*keep_body=*/false);
    for (;;) {
      const ParseResult parsed = reader_.Feed(&buffer_, &error_);
      if (parsed == ParseResult::kError) return false;
      if (parsed == ParseResult::kComplete) break;
      if (!Fill(first_byte)) return false;
    }
    *status = reader_.status();
    *body = std::move(reader_.body());
    if (reader_.close()) Close();
    return true;
  }

  std::shared_ptr<const Target> target_;
  HttpMessages messages_;
  std::shared_ptr<HttpTlsContext> tls_;  // null: plain HTTP
  HttpSocket socket_;
  std::string buffer_;  // bytes read and not yet parsed
  HttpResponseReader reader_;
};

}  // namespace

int OpenHttpSocket(const std::string& url, std::string* error) {
  const auto colon = url.rfind(':');
  const std::string host = colon == std::string::npos ? url : url.substr(0, colon);
  const std::string port = colon == std::string::npos ? "80" : url.substr(colon + 1);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &found);
  if (rc != 0) {
    *error = "cannot resolve '" + host + "': " + gai_strerror(rc);
    return -1;
  }
  std::string last = "no address";
  int opened = -1;
  for (addrinfo* ai = found; ai != nullptr; ai = ai->ai_next) {
    const int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, 0);
    if (fd < 0) continue;
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
      int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      opened = fd;
      break;
    }
    last = strerror(errno);
    close(fd);
  }
  freeaddrinfo(found);
  if (opened < 0) *error = "failed to connect to " + url + ": " + last;
  return opened;
}

std::shared_ptr<HttpTlsContext> HttpTls(const Target& target, std::string* error,
                                        bool* ok) {
  *ok = true;
  if (!target.https.enabled) return nullptr;
  auto tls = HttpTlsContext::Create(target.https, error);
  *ok = tls != nullptr;
  return tls;
}

std::unique_ptr<Connection> ConnectHttp(const std::shared_ptr<const Target>& target,
                                        std::string* error) {
  bool ok;
  auto tls = HttpTls(*target, error, &ok);
  if (!ok) return nullptr;
  auto connection = std::make_unique<HttpConnection>(target, std::move(tls));
  if (!connection->Open(error)) return nullptr;
  return connection;
}

}  // namespace tritonx::perf
