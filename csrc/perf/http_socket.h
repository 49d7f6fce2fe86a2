// The byte stream under tritonx-perf's HTTP clients: a TCP socket, or TLS over it
// (OpenSSL) for an https:// server, so that http_connection.cc (blocking) and
// http_async.cc (non-blocking, ppoll) send and read the same way on both.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>

#include "connection.h"

struct ssl_ctx_st;
struct ssl_st;

namespace tritonx::perf {

// The client side of HTTPS for one Target: verification settings and an optional
// client certificate, loaded once. Thread-safety: immutable once made; shared by
// every connection of a run (OpenSSL allows SSL_new on one SSL_CTX from many
// threads). Ownership: owns the SSL_CTX.
class HttpTlsContext {
 public:
  // nullptr with *error when a file cannot be loaded.
  static std::shared_ptr<HttpTlsContext> Create(const HttpsOptions& options,
                                                std::string* error);
  ~HttpTlsContext();
  HttpTlsContext(const HttpTlsContext&) = delete;
  HttpTlsContext& operator=(const HttpTlsContext&) = delete;

  ssl_ctx_st* ctx() const { return ctx_; }
  bool verify_host() const { return verify_host_; }

 private:
  HttpTlsContext() = default;
  ssl_ctx_st* ctx_ = nullptr;
  bool verify_host_ = true;
};

// One connection. Thread-safety: one thread at a time. Ownership: owns its socket
// and TLS session; not copyable.
class HttpSocket {
 public:
  HttpSocket() = default;
  ~HttpSocket() { Close(); }
  HttpSocket(const HttpSocket&) = delete;
  HttpSocket& operator=(const HttpSocket&) = delete;

  // Connects to host:port and, with `tls`, completes the handshake (blocking);
  // false with *error when either fails. `nonblocking` leaves the socket
  // O_NONBLOCK for Recv's kNoWait (the async pool).
  bool Open(const std::string& url, const std::shared_ptr<HttpTlsContext>& tls,
            bool nonblocking, std::string* error);
  void Close();
  bool is_open() const { return fd_ >= 0; }
  int fd() const { return fd_; }
  bool tls() const { return ssl_ != nullptr; }

  // Writes all of it, waiting for room when the socket is full; false with errno
  // (or *error for TLS) set when the connection failed.
  bool SendAll(const char* data, size_t size, std::string* error);
  // > 0: bytes read; 0: the peer closed; -1: an error (*error set), or with
  // `wait` false nothing to read now (errno EAGAIN, *error untouched).
  ssize_t Recv(char* buffer, size_t size, bool wait, std::string* error);

 private:
  int fd_ = -1;
  ssl_st* ssl_ = nullptr;
};

}  // namespace tritonx::perf
