// HttpServer: the KServe v2 HTTP/REST endpoint on libevent's evhttp.
//
// N worker threads each run their own event_base and evhttp on one shared listening
// socket (the kernel spreads connections over them). `POST .../infer` (and Triton's
// generate extension, `.../generate` and `.../generate_stream` as Server-Sent
// Events, see http_generate.h) is handled entirely in C++: the body is parsed
// (http_infer_codec), enqueued on the core's Model and the response rendered on the
// core thread that completes it, then handed back to the connection's own event_base
// through a mailbox (evhttp is not thread safe). Every other route goes, as
// method/URL/headers/body, to one ControlHandler that runs on a small pool of its own
// threads (it may take the GIL and answer later from any thread), so the Python
// frontend's handlers stay the one place where that logic lives.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/model_registry.h"
#include "core/shared_memory_registry.h"
#include "core/status.h"

namespace tritonx {

class HttpTlsContext;  // http_tls.h
namespace httpfe {
class HeaderForwarder;  // http_forward.h
class CloudInferRoute;  // http_cloud.h
}  // namespace httpfe

struct HttpServerOptions {
  int thread_count = 2;
  size_t max_input_size = 64 * 1024 * 1024;
  // The request line and headers together, and how many fields (431 beyond).
  size_t max_header_size = 64 * 1024;
  size_t max_header_count = 1000;
  // Upper bound on threads running ControlHandler calls at once.
  int control_threads = 4;
  // --http-header-forward-pattern: matching headers of infer and generate requests
  // become request parameters (null: none are forwarded).
  std::shared_ptr<const httpfe::HeaderForwarder> forward;
  // --http-restricted-api for the inference group: the header (any case) and the
  // exact value an infer request must carry; empty name: not restricted.
  std::string infer_header;
  std::string infer_value;
  // Bytes a generate_stream reply may have queued for one connection (written but
  // not yet taken by the client). The model cannot be paused, so a client that
  // reads slower than it produces is disconnected past this bound and its request
  // cancelled, instead of the server buffering without limit.
  size_t max_stream_buffer = 32 * 1024 * 1024;
  // GET /v2/health/live answered in C++ (off when the health group is restricted).
  bool live_in_cpp = true;
  // HTTPS (every connection, plaintext ones are refused) when set; shared by the
  // workers for as long as the server runs.
  std::shared_ptr<HttpTlsContext> tls;
  // The server's system shared memory regions, for tensors that name one; null:
  // such tensors are refused.
  std::shared_ptr<SharedMemoryRegistry> shared_memory;
  // Set: a cloud endpoint, whose inference route is this one (no KServe routes, no
  // response compression: the endpoints answer as they are).
  std::shared_ptr<const httpfe::CloudInferRoute> cloud;
};

using HttpHeaders = std::vector<std::pair<std::string, std::string>>;

struct HttpReply {
  int status = 200;
  HttpHeaders headers;  // Content-Length is added by the server
  std::string body;
};

struct HttpControlRequest {
  std::string method;   // "GET", "POST", ...
  std::string url;      // the request target as sent
  HttpHeaders headers;  // as sent, in order
  std::string body;     // already decompressed
};

// Delivers the reply to one control request. Thread safe; the first call counts.
using HttpReplyFn = std::function<void(HttpReply)>;
// Runs on the control pool; must eventually call `reply` (possibly from another
// thread, after returning).
using HttpControlHandler = std::function<void(HttpControlRequest, HttpReplyFn)>;

// Thread safety: Start, Stop and running may be called from any thread. Ownership:
// the caller owns the server; it shares the registry and copies the handler.
class HttpServer {
 public:
  HttpServer(std::shared_ptr<ModelRegistry> registry, HttpControlHandler handler,
             HttpServerOptions options = {});
  ~HttpServer();  // Stop(0)
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds `address:port` (port 0 picks one) and starts the workers.
  Status Start(const std::string& address, int port, bool reuse_port, int* bound_port);

  // Stops accepting, lets requests in flight finish for up to `grace_seconds`,
  // then drops what is left and joins the workers. Blocking; idempotent.
  void Stop(double grace_seconds);

  bool running() const;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tritonx
