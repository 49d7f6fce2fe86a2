// HTTPS for HttpServer: one OpenSSL server context (certificate, key, and for
// mutual TLS the CA that client certificates must chain to) and the bufferevent
// factory that evhttp calls for every accepted connection (evhttp_set_bevcb), so
// that libevent's bufferevent_openssl does the handshake and record layer.
#pragma once

#include <memory>
#include <string>

#include "core/status.h"

struct bufferevent;
struct event_base;
struct ssl_ctx_st;

namespace tritonx {

// The PEM files of --http-server-cert / --http-server-key / --http-root-cert and
// --http-use-ssl-mutual, as the Python engine takes them.
struct HttpTlsOptions {
  std::string server_cert;
  std::string server_key;
  std::string root_cert;  // optional unless `mutual`
  bool mutual = false;
};

// Thread safety: immutable once created; NewBufferEvent may be called from every
// worker's loop thread at once (SSL_CTX is reference counted and safe to share
// for SSL_new). Ownership: owns the SSL_CTX; each SSL it makes is owned by the
// bufferevent it is handed to (freed with it, BEV_OPT_CLOSE_ON_FREE).
class HttpTlsContext {
 public:
  // Loads the files; an InvalidArgument status names the flag to fix, with the
  // Python engine's wording (python/tritonx/frontends/http_access.py).
  static Status Create(const HttpTlsOptions& options,
                       std::shared_ptr<HttpTlsContext>* out);
  ~HttpTlsContext();
  HttpTlsContext(const HttpTlsContext&) = delete;
  HttpTlsContext& operator=(const HttpTlsContext&) = delete;

  // evhttp's bevcb: a server-side TLS bufferevent with no socket yet (evhttp
  // sets it), or null if OpenSSL cannot make a session (the connection is
  // then dropped).
  static bufferevent* NewBufferEvent(event_base* base, void* self);

 private:
  HttpTlsContext() = default;
  ssl_ctx_st* ctx_ = nullptr;
};

}  // namespace tritonx
