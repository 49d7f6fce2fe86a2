#include "http_socket.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "http_message.h"

namespace tritonx::perf {
namespace {

// OpenSSL's queued errors as one line (and the queue emptied for the next call).
std::string SslErrors(const std::string& what) {
  std::string text = what;
  unsigned long code;
  while ((code = ERR_get_error()) != 0) {
    char buffer[256];
    ERR_error_string_n(code, buffer, sizeof(buffer));
    text += std::string(": ") + buffer;
  }
  return text;
}

int FileType(const std::string& type) {
  return type == "DER" ? SSL_FILETYPE_ASN1 : SSL_FILETYPE_PEM;
}

}  // namespace

std::shared_ptr<HttpTlsContext> HttpTlsContext::Create(const HttpsOptions& options,
                                                       std::string* error) {
  std::shared_ptr<HttpTlsContext> tls(new HttpTlsContext);
  tls->ctx_ = SSL_CTX_new(TLS_client_method());
  if (tls->ctx_ == nullptr) {
    *error = SslErrors("cannot create a TLS context");
    return nullptr;
  }
  SSL_CTX_set_verify(
      tls->ctx_, options.verify_peer != 0 ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, nullptr);
  const bool cas = options.ca_file.empty()
                       ? SSL_CTX_set_default_verify_paths(tls->ctx_) == 1
                       : SSL_CTX_load_verify_locations(
                             tls->ctx_, options.ca_file.c_str(), nullptr) == 1;
  if (!cas) {
    *error = SslErrors("cannot load the CA certificates " + options.ca_file);
    return nullptr;
  }
  if (!options.cert_file.empty() &&
      SSL_CTX_use_certificate_file(tls->ctx_, options.cert_file.c_str(),
                                   FileType(options.cert_type)) != 1) {
    *error = SslErrors("cannot load the client certificate " + options.cert_file);
    return nullptr;
  }
  if (!options.key_file.empty() &&
      SSL_CTX_use_PrivateKey_file(tls->ctx_, options.key_file.c_str(),
                                  FileType(options.key_type)) != 1) {
    *error = SslErrors("cannot load the private key " + options.key_file);
    return nullptr;
  }
  // As libcurl: any non-zero verify_host checks the name (1 has meant 2 since 7.66).
  tls->verify_host_ = options.verify_peer != 0 && options.verify_host != 0;
  return tls;
}

HttpTlsContext::~HttpTlsContext() {
  if (ctx_ != nullptr) SSL_CTX_free(ctx_);
}

bool HttpSocket::Open(const std::string& url,
                      const std::shared_ptr<HttpTlsContext>& tls, bool nonblocking,
                      std::string* error) {
  Close();
  fd_ = OpenHttpSocket(url, error);
  if (fd_ < 0) return false;
  if (tls) {
    ssl_ = SSL_new(tls->ctx());
    const auto colon = url.rfind(':');
    std::string host = colon == std::string::npos ? url : url.substr(0, colon);
    if (host.size() > 1 && host.front() == '[') host = host.substr(1, host.size() - 2);
    in6_addr ip;
    const bool literal = inet_pton(AF_INET, host.c_str(), &ip) == 1 ||
                         inet_pton(AF_INET6, host.c_str(), &ip) == 1;
    bool ok = ssl_ != nullptr && SSL_set_fd(ssl_, fd_) == 1;
    // SNI takes a name, never an address.
    if (ok && !literal) ok = SSL_set_tlsext_host_name(ssl_, host.c_str()) == 1;
    if (ok && tls->verify_host()) {
      X509_VERIFY_PARAM* param = SSL_get0_param(ssl_);
      ok = literal ? X509_VERIFY_PARAM_set1_ip_asc(param, host.c_str()) == 1
                   : X509_VERIFY_PARAM_set1_host(param, host.c_str(), 0) == 1;
    }
    if (!ok || SSL_connect(ssl_) != 1) {
      std::string why = SslErrors("TLS handshake with " + url + " failed");
      if (ssl_ != nullptr && SSL_get_verify_result(ssl_) != X509_V_OK) {
        why += std::string(" (") +
               X509_verify_cert_error_string(SSL_get_verify_result(ssl_)) + ")";
      }
      *error = why;
      Close();
      return false;
    }
  }
  if (nonblocking) fcntl(fd_, F_SETFL, fcntl(fd_, F_GETFL) | O_NONBLOCK);
  return true;
}

void HttpSocket::Close() {
  if (ssl_ != nullptr) {
    SSL_free(ssl_);
    ssl_ = nullptr;
  }
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
}

bool HttpSocket::SendAll(const char* data, size_t size, std::string* error) {
  while (size > 0) {
    if (ssl_ != nullptr) {
      ERR_clear_error();
      const int n = SSL_write(ssl_, data, static_cast<int>(size));
      if (n > 0) {
        data += n;
        size -= static_cast<size_t>(n);
        continue;
      }
      const int reason = SSL_get_error(ssl_, n);
      if (reason == SSL_ERROR_WANT_WRITE || reason == SSL_ERROR_WANT_READ) {
        pollfd p{fd_,
                 static_cast<short>(reason == SSL_ERROR_WANT_WRITE ? POLLOUT : POLLIN),
                 0};
        poll(&p, 1, 1000);
        continue;
      }
      *error = SslErrors("failed to send the request over TLS");
      errno = EPIPE;
      return false;
    }
    const ssize_t n = send(fd_, data, size, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        pollfd p{fd_, POLLOUT, 0};
        poll(&p, 1, 1000);
        continue;
      }
      *error = std::string("failed to send the request: ") + strerror(errno);
      return false;
    }
    data += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

ssize_t HttpSocket::Recv(char* buffer, size_t size, bool wait, std::string* error) {
  for (;;) {
    if (ssl_ != nullptr) {
      ERR_clear_error();
      const int n = SSL_read(ssl_, buffer, static_cast<int>(size));
      if (n > 0) return n;
      const int reason = SSL_get_error(ssl_, n);
      if (reason == SSL_ERROR_ZERO_RETURN) return 0;
      if (reason == SSL_ERROR_WANT_READ || reason == SSL_ERROR_WANT_WRITE) {
        if (!wait) {
          errno = EAGAIN;
          return -1;
        }
        pollfd p{fd_,
                 static_cast<short>(reason == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT),
                 0};
        poll(&p, 1, 1000);
        continue;
      }
      // A peer that closes without close_notify reads as an end, as for plain TCP.
      if (reason == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) return 0;
      *error = SslErrors("failed to read the response over TLS");
      errno = EIO;
      return -1;
    }
    const ssize_t n = recv(fd_, buffer, size, wait ? 0 : MSG_DONTWAIT);
    if (n >= 0) return n;
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
      *error = std::string("failed to read the response: ") + strerror(errno);
    }
    return -1;
  }
}

}  // namespace tritonx::perf
