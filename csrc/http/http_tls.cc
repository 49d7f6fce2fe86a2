#include "http_tls.h"

#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "core/http_messages.h"

namespace tritonx {
namespace {

// The reason a file cannot be opened (as Python's OSError.strerror), or empty.
// Checked first so that a missing file is reported as such, not as bad PEM.
std::string OpenError(const std::string& path) {
  FILE* file = std::fopen(path.c_str(), "rb");
  if (file == nullptr) return std::strerror(errno);
  std::fclose(file);
  return "";
}

}  // namespace

Status HttpTlsContext::Create(const HttpTlsOptions& options,
                              std::shared_ptr<HttpTlsContext>* out) {
  if (options.server_cert.empty() || options.server_key.empty())
    return InvalidArgError(HttpTlsNeedsCert());
  if (options.mutual && options.root_cert.empty())
    return InvalidArgError(HttpTlsNeedsRoot());
  std::shared_ptr<HttpTlsContext> tls(new HttpTlsContext());
  tls->ctx_ = SSL_CTX_new(TLS_server_method());
  if (tls->ctx_ == nullptr) return Status(StatusCode::kInternal, "SSL_CTX_new failed");
  SSL_CTX* ctx = tls->ctx_;
  // As the Python engine's ssl.PROTOCOL_TLS_SERVER context with TLS 1.2 minimum.
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                               SSL_OP_NO_RENEGOTIATION);
  // Partial writes: bufferevent_openssl retries a write with the same buffer
  // moved, which OpenSSL otherwise refuses ("bad write retry").
  SSL_CTX_set_mode(ctx,
                   SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);

  // An empty reason with `not_pem`: the file opened but is not PEM (worded by
  // HttpTlsBad*Cert).
  bool not_pem = false;
  std::string reason = OpenError(options.server_cert);
  if (reason.empty()) reason = OpenError(options.server_key);
  if (reason.empty() &&
      (SSL_CTX_use_certificate_chain_file(ctx, options.server_cert.c_str()) != 1 ||
       SSL_CTX_use_PrivateKey_file(ctx, options.server_key.c_str(), SSL_FILETYPE_PEM) !=
           1 ||
       SSL_CTX_check_private_key(ctx) != 1)) {
    not_pem = true;
  }
  ERR_clear_error();
  if (!reason.empty() || not_pem) {
    return InvalidArgError(
        HttpTlsBadServerCert(options.server_cert, options.server_key, reason));
  }
  if (!options.root_cert.empty()) {
    reason = OpenError(options.root_cert);
    if (reason.empty() &&
        SSL_CTX_load_verify_locations(ctx, options.root_cert.c_str(), nullptr) != 1)
      not_pem = true;
    ERR_clear_error();
    if (!reason.empty() || not_pem) {
      return InvalidArgError(HttpTlsBadRootCert(options.root_cert, reason));
    }
  }
  // A client without a certificate, or with one that does not chain to the root,
  // fails the handshake (Python: verify_mode = CERT_REQUIRED). Without mutual the
  // root is loaded but no certificate is asked for, as in the Python engine.
  if (options.mutual) {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  }
  *out = std::move(tls);
  return Status::Ok();
}

HttpTlsContext::~HttpTlsContext() { SSL_CTX_free(ctx_); }

bufferevent* HttpTlsContext::NewBufferEvent(event_base* base, void* self) {
  SSL* ssl = SSL_new(static_cast<HttpTlsContext*>(self)->ctx_);
  if (ssl == nullptr) {
    // evhttp then makes a plaintext bufferevent; HttpServer refuses every request
    // that arrives on one (Impl::Handle checks for the SSL).
    ERR_clear_error();
    return nullptr;
  }
  bufferevent* bev = bufferevent_openssl_socket_new(
      base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
  if (bev == nullptr) {
    SSL_free(ssl);
    return nullptr;
  }
  // Clients that close the socket without TLS's close_notify (most do after a
  // response) are an ordinary end of connection, not an error.
  bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
  return bev;
}

}  // namespace tritonx
