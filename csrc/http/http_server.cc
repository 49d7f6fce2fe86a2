#include "http_server.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/keyvalq_struct.h>
#include <event2/thread.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <mutex>

#include "../grpc/worker_pool.h"
#include "http_compression.h"
#include "http_infer_codec.h"
#include "http_worker.h"

namespace tritonx {

using httpfe::Mailbox;
using httpfe::Outgoing;
using httpfe::PendingCall;
using httpfe::Worker;

namespace httpfe {

// Triton (libevhtp) drops the connection, unanswered, when a URL, header name or
// header value reaches 8 KiB; the Python frontend does the same.
constexpr size_t kMaxFieldSize = 8191;

const char* ReasonPhrase(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 503:
      return "Service Unavailable";
    default:
      return "Unknown";
  }
}

void SendOnLoop(const std::shared_ptr<PendingCall>& call, Outgoing out,
                std::atomic<int64_t>* inflight) {
  if (call->answered) {
    if (out.body) evbuffer_free(out.body);
    return;
  }
  call->answered = true;
  if (call->closed_ev != nullptr) {
    event_free(call->closed_ev);
    call->closed_ev = nullptr;
  }
  evkeyvalq* headers = evhttp_request_get_output_headers(call->req);
  for (const auto& [name, value] : out.headers) {
    evhttp_add_header(headers, name.c_str(), value.c_str());
  }
  evhttp_send_reply(call->req, out.status, ReasonPhrase(out.status), out.body);
  if (out.body) evbuffer_free(out.body);
  call->worker->pending.erase(call);
  inflight->fetch_sub(1, std::memory_order_acq_rel);
}

void PostReply(const std::shared_ptr<Mailbox>& mailbox,
               const std::shared_ptr<PendingCall>& call, Outgoing out,
               std::atomic<int64_t>* inflight) {
  evbuffer* body = out.body;
  // The body travels as a raw pointer so the task stays copyable.
  auto shared = std::make_shared<Outgoing>(std::move(out));
  if (!mailbox->Post([call, shared, inflight] {
        SendOnLoop(call, std::move(*shared), inflight);
      })) {
    if (body) evbuffer_free(body);
  }
}

namespace {

Outgoing Simple(int status, const std::string& body, const char* content_type,
                HttpHeaders extra = {}) {
  Outgoing out;
  out.status = status;
  if (content_type) out.headers.emplace_back("Content-Type", content_type);
  for (auto& h : extra) out.headers.push_back(std::move(h));
  out.body = evbuffer_new();
  if (!body.empty()) evbuffer_add(out.body, body.data(), body.size());
  return out;
}

Outgoing Error(int status, const std::string& message, HttpHeaders extra = {}) {
  return Simple(status, ErrorBody(message), "application/json", std::move(extra));
}

// Renders a finished inference on the core thread that completed it.
Outgoing RenderReply(std::unique_ptr<InferenceResponse> result,
                     const std::string& request_id, const OutputEncoding& encoding,
                     Encoding compression) {
  if (!result->status.ok()) {
    return Error(HttpStatusOf(result->status.code()), result->status.message());
  }
  std::string json;
  std::vector<size_t> binaries;
  Status status = RenderInferResponse(*result, request_id, encoding, &json, &binaries);
  if (!status.ok()) return Error(HttpStatusOf(status.code()), status.message());
  const char* type = binaries.empty() ? "application/json" : "application/octet-stream";
  Outgoing out;
  out.headers.emplace_back("Content-Type", type);
  if (compression == Encoding::kGzip || compression == Encoding::kDeflate) {
    std::vector<Span> parts{{json.data(), json.size()}};
    for (size_t i : binaries) {
      const Tensor& t = result->outputs[i];
      parts.push_back({t.data, t.byte_size});
    }
    std::string packed = Deflate(compression, parts.data(), parts.size());
    out.headers.emplace_back("Content-Encoding",
                             compression == Encoding::kGzip ? "gzip" : "deflate");
    if (!binaries.empty()) {
      out.headers.emplace_back("Inference-Header-Content-Length",
                               std::to_string(json.size()));
    }
    out.body = evbuffer_new();
    evbuffer_add(out.body, packed.data(), packed.size());
    return out;
  }
  if (!binaries.empty()) {
    out.headers.emplace_back("Inference-Header-Content-Length",
                             std::to_string(json.size()));
  }
  out.body = evbuffer_new();
  evbuffer_add(out.body, json.data(), json.size());
  std::shared_ptr<InferenceResponse> keep(std::move(result));
  for (size_t i : binaries) {
    const Tensor& t = keep->outputs[i];
    if (t.byte_size >= 64 * 1024) {
      // Large outputs are written from the tensor itself; the buffer holds the
      // response until the bytes have gone out.
      auto* hold = new std::shared_ptr<InferenceResponse>(keep);
      evbuffer_add_reference(
          out.body, t.data, t.byte_size,
          [](const void*, size_t, void* arg) {
            delete static_cast<std::shared_ptr<InferenceResponse>*>(arg);
          },
          hold);
    } else if (t.byte_size > 0) {
      evbuffer_add(out.body, t.data, t.byte_size);
    }
  }
  out.status = 200;
  return out;
}

const char* MethodName(evhttp_cmd_type cmd) {
  switch (cmd) {
    case EVHTTP_REQ_GET:
      return "GET";
    case EVHTTP_REQ_POST:
      return "POST";
    case EVHTTP_REQ_HEAD:
      return "HEAD";
    case EVHTTP_REQ_PUT:
      return "PUT";
    case EVHTTP_REQ_DELETE:
      return "DELETE";
    case EVHTTP_REQ_OPTIONS:
      return "OPTIONS";
    case EVHTTP_REQ_TRACE:
      return "TRACE";
    case EVHTTP_REQ_CONNECT:
      return "CONNECT";
    case EVHTTP_REQ_PATCH:
      return "PATCH";
    default:
      return "UNKNOWN";
  }
}

// "/v2/models/{m}[/versions/{v}]/infer" (path without query) -> model, version.
bool MatchInfer(const std::string& path, std::string* model, std::string* version) {
  static const char kPrefix[] = "/v2/models/";
  static const char kSuffix[] = "/infer";
  const size_t plen = sizeof(kPrefix) - 1, slen = sizeof(kSuffix) - 1;
  if (path.size() <= plen + slen || path.compare(0, plen, kPrefix) != 0 ||
      path.compare(path.size() - slen, slen, kSuffix) != 0) {
    return false;
  }
  std::string middle = path.substr(plen, path.size() - plen - slen);
  size_t slash = middle.find('/');
  std::string name = middle.substr(0, slash);
  if (name.empty()) return false;
  version->clear();
  if (slash != std::string::npos) {
    static const char kVersions[] = "/versions/";
    std::string rest = middle.substr(slash);
    if (rest.compare(0, sizeof(kVersions) - 1, kVersions) != 0) return false;
    *version = rest.substr(sizeof(kVersions) - 1);
    if (version->empty() ||
        version->find_first_not_of("0123456789") != std::string::npos) {
      return false;
    }
  }
  // tritonclient percent-encodes model names.
  char* decoded = evhttp_uridecode(name.c_str(), 0, nullptr);
  if (decoded == nullptr) return false;
  *model = decoded;
  free(decoded);
  return true;
}

}  // namespace
}  // namespace httpfe

// ---------------------------------------------------------------------------
// Thread safety: mu_ guards start/stop; workers_ and pool_ are set by Start before
// any worker runs and reset by Stop after they have been joined.

class HttpServer::Impl {
 public:
  Impl(std::shared_ptr<ModelRegistry> registry, HttpControlHandler handler,
       HttpServerOptions options)
      : registry_(std::move(registry)),
        handler_(std::move(handler)),
        options_(std::move(options)) {}

  Status Start(const std::string& address, int port, bool reuse_port, int* bound_port);
  void Stop(double grace_seconds);
  bool running() const {
    std::lock_guard<std::mutex> lock(mu_);
    return !workers_.empty();
  }

 private:
  static void OnRequest(evhttp_request* req, void* arg);
  static void OnWake(evutil_socket_t, short, void* arg);
  static void OnPeerClosed(evutil_socket_t, short, void* arg);

  void Handle(Worker* worker, evhttp_request* req);
  void HandleInfer(Worker* worker, evhttp_request* req, const std::string& model,
                   const std::string& version, std::shared_ptr<const void> owner,
                   const char* body, size_t size);
  void HandleControl(Worker* worker, evhttp_request* req, std::string body);
  void Reply(Worker* worker, evhttp_request* req, Outgoing out);
  std::shared_ptr<PendingCall> Track(Worker* worker, evhttp_request* req);

  std::shared_ptr<ModelRegistry> registry_;
  HttpControlHandler handler_;
  const HttpServerOptions options_;
  std::atomic<int64_t> inflight_{0};

  mutable std::mutex mu_;
  int listen_fd_ = -1;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::unique_ptr<grpcfe::WorkerPool> pool_;
};

Status HttpServer::Impl::Start(const std::string& address, int port, bool reuse_port,
                               int* bound_port) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!workers_.empty())
    return Status(StatusCode::kAlreadyExists, "HTTP server is already running");
  // Once per process, before any base exists: event_active and loopbreak are then
  // safe from other threads.
  static const int threads_ready = evthread_use_pthreads();
  (void)threads_ready;

  const std::string target = address + ":" + std::to_string(port);
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_PASSIVE;
  addrinfo* found = nullptr;
  const std::string service = std::to_string(port);
  if (getaddrinfo(address.empty() ? nullptr : address.c_str(), service.c_str(), &hints,
                  &found) != 0 ||
      found == nullptr) {
    return Status(StatusCode::kUnavailable, "unable to resolve '" + target + "'");
  }
  int fd = -1;
  for (addrinfo* ai = found; ai != nullptr && fd < 0; ai = ai->ai_next) {
    fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) continue;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (reuse_port) setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 1024) != 0) {
      close(fd);
      fd = -1;
    }
  }
  freeaddrinfo(found);
  if (fd < 0)
    return Status(StatusCode::kUnavailable, "unable to bind to '" + target + "'");
  evutil_make_socket_nonblocking(fd);
  sockaddr_storage bound{};
  socklen_t len = sizeof(bound);
  getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len);
  *bound_port = ntohs(bound.ss_family == AF_INET6
                          ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                          : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  listen_fd_ = fd;

  pool_ = std::make_unique<grpcfe::WorkerPool>(
      static_cast<size_t>(options_.control_threads));
  const int count = options_.thread_count > 0 ? options_.thread_count : 1;
  for (int i = 0; i < count; ++i) {
    auto worker = std::make_unique<Worker>();
    worker->owner = this;
    worker->base = event_base_new();
    worker->http = evhttp_new(worker->base);
    evhttp_set_gencb(worker->http, &Impl::OnRequest, worker.get());
    evhttp_set_allowed_methods(worker->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST |
                                                 EVHTTP_REQ_HEAD | EVHTTP_REQ_PUT |
                                                 EVHTTP_REQ_DELETE |
                                                 EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH);
    // evhttp's own head limit is a backstop well above ours, so that heads between
    // the two get the Python frontend's 431 (checked in Handle).
    evhttp_set_max_headers_size(
        worker->http, static_cast<ev_ssize_t>(2 * options_.max_header_size + 16384));
    // Bodies up to twice the limit are read and answered 400 with the Python
    // frontend's message (Handle); evhttp answers larger ones 413 itself, after
    // draining them so that the client reads the answer.
    evhttp_set_max_body_size(worker->http,
                             static_cast<ev_ssize_t>(2 * options_.max_input_size));
    evhttp_set_flags(worker->http, EVHTTP_SERVER_LINGERING_CLOSE);
    evhttp_set_default_content_type(worker->http, "text/plain");
    evhttp_set_timeout(worker->http, 600);
    worker->bound = evhttp_accept_socket_with_handle(worker->http, fd);
    worker->wake = event_new(worker->base, -1, 0, &Impl::OnWake, worker.get());
    worker->mailbox = std::make_shared<Mailbox>(worker->wake);
    workers_.push_back(std::move(worker));
  }
  for (auto& worker : workers_) {
    Worker* w = worker.get();
    worker->thread =
        std::thread([w] { event_base_loop(w->base, EVLOOP_NO_EXIT_ON_EMPTY); });
  }
  return Status::Ok();
}

void HttpServer::Impl::Stop(double grace_seconds) {
  std::lock_guard<std::mutex> lock(mu_);
  if (workers_.empty()) return;
  // Stop accepting on every worker's own thread; connections already open are
  // still served while the grace period runs.
  for (auto& worker : workers_) {
    Worker* w = worker.get();
    w->mailbox->Post([w] {
      if (w->bound) evhttp_del_accept_socket(w->http, w->bound);
      w->bound = nullptr;
    });
  }
  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::microseconds(
                            static_cast<int64_t>(std::max(grace_seconds, 0.0) * 1e6));
  while (inflight_.load() > 0 && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  for (auto& worker : workers_) {
    worker->mailbox->Close();
    event_base_loopbreak(worker->base);
  }
  for (auto& worker : workers_) {
    worker->thread.join();
    for (const auto& call : worker->pending) {
      if (call->closed_ev) event_free(call->closed_ev);
      call->closed_ev = nullptr;
      if (call->model && call->request) call->model->Cancel(call->request);
    }
    worker->pending.clear();
    evhttp_free(worker->http);
    event_free(worker->wake);
    event_base_free(worker->base);
  }
  workers_.clear();
  close(listen_fd_);
  listen_fd_ = -1;
  // Control calls still running finish; their replies find the mailboxes closed.
  pool_->Shutdown();
  pool_.reset();
  inflight_.store(0);
}

void HttpServer::Impl::OnWake(evutil_socket_t, short, void* arg) {
  static_cast<Worker*>(arg)->mailbox->Drain();
}

void HttpServer::Impl::OnRequest(evhttp_request* req, void* arg) {
  auto* worker = static_cast<Worker*>(arg);
  static_cast<Impl*>(worker->owner)->Handle(worker, req);
}

void HttpServer::Impl::OnPeerClosed(evutil_socket_t, short, void* arg) {
  // The client went away while its request was out: drop it if still queued (the
  // callback then answers CANCELLED, which goes nowhere); an executing one is
  // flagged for the backend to notice.
  auto* call = static_cast<PendingCall*>(arg);
  event_del(call->closed_ev);
  if (call->model && call->request) call->model->Cancel(call->request);
}

void HttpServer::Impl::Reply(Worker* worker, evhttp_request* req, Outgoing out) {
  (void)worker;
  evkeyvalq* headers = evhttp_request_get_output_headers(req);
  for (const auto& [name, value] : out.headers) {
    evhttp_add_header(headers, name.c_str(), value.c_str());
  }
  evhttp_send_reply(req, out.status, httpfe::ReasonPhrase(out.status), out.body);
  if (out.body) evbuffer_free(out.body);
}

std::shared_ptr<PendingCall> HttpServer::Impl::Track(Worker* worker,
                                                     evhttp_request* req) {
  auto call = std::make_shared<PendingCall>();
  call->worker = worker;
  call->req = req;
  worker->pending.insert(call);
  inflight_.fetch_add(1, std::memory_order_acq_rel);
  return call;
}

void HttpServer::Impl::Handle(Worker* worker, evhttp_request* req) {
  using namespace httpfe;
  const char* uri = evhttp_request_get_uri(req);
  evkeyvalq* in = evhttp_request_get_input_headers(req);
  const evhttp_cmd_type cmd = evhttp_request_get_command(req);

  // Head limits of the Python frontend (evhttp itself only bounds the total).
  size_t head = std::strlen(uri) + std::strlen(MethodName(cmd)) + 13;
  size_t fields = 0;
  bool field_too_long = std::strlen(uri) > kMaxFieldSize;
  for (evkeyval* kv = in->tqh_first; kv != nullptr; kv = kv->next.tqe_next) {
    const size_t key_len = std::strlen(kv->key), value_len = std::strlen(kv->value);
    field_too_long =
        field_too_long || key_len > kMaxFieldSize || value_len > kMaxFieldSize;
    head += key_len + value_len + 4;
    ++fields;
  }
  if (field_too_long) {
    // Closed without an answer, as Triton does: the reply cannot be written.
    evhttp_connection* conn = evhttp_request_get_connection(req);
    shutdown(bufferevent_getfd(evhttp_connection_get_bufferevent(conn)), SHUT_RDWR);
    Reply(worker, req, Simple(400, "", nullptr));
    return;
  }
  if (head > options_.max_header_size || fields > options_.max_header_count) {
    Reply(
        worker, req,
        Error(431,
              "request header fields too large: the request line and headers may take "
              "at most " +
                  std::to_string(options_.max_header_size) + " bytes in at most " +
                  std::to_string(options_.max_header_count) + " fields",
              {{"Connection", "close"}}));
    return;
  }

  evbuffer* input = evhttp_request_get_input_buffer(req);
  const size_t wire_size = evbuffer_get_length(input);
  const char* hlen_header = evhttp_find_header(in, "Inference-Header-Content-Length");
  const char* size_what = hlen_header != nullptr ? "body" : "JSON";
  auto size_error = [&](size_t size) {
    return Error(400, std::string("Request ") + size_what + " size of " +
                          std::to_string(size) +
                          " bytes exceeds the maximum allowed value of " +
                          std::to_string(options_.max_input_size) +
                          " bytes. Use --http-max-input-size to increase the limit.");
  };

  if (wire_size > options_.max_input_size) {
    Reply(worker, req, size_error(wire_size));
    return;
  }

  // The body: moved out of evhttp's buffer without copying its chains, made
  // contiguous, and kept alive by whoever holds a tensor pointing into it.
  std::shared_ptr<const void> owner;
  const char* body = nullptr;
  size_t size = 0;
  const char* encoding_header = evhttp_find_header(in, "Content-Encoding");
  const Encoding encoding =
      encoding_header ? RequestEncoding(encoding_header) : Encoding::kIdentity;
  if (encoding != Encoding::kIdentity && wire_size > 0) {
    if (encoding == Encoding::kUnsupported) {
      Reply(worker, req,
            Error(501, "Unsupported compression type",
                  {{"Accept-Encoding", "gzip, deflate"}}));
      return;
    }
    auto inflated = std::make_shared<std::string>();
    bool too_large = false;
    std::string error;
    const char* wire = reinterpret_cast<const char*>(evbuffer_pullup(input, -1));
    if (!Inflate(encoding, wire, wire_size, options_.max_input_size, inflated.get(),
                 &too_large, &error)) {
      Reply(worker, req, Error(400, "failed to decompress the request: " + error));
      return;
    }
    if (too_large) {
      Reply(worker, req, size_error(options_.max_input_size + 1));
      return;
    }
    body = inflated->data();
    size = inflated->size();
    owner = std::move(inflated);
  } else {
    std::shared_ptr<evbuffer> own(evbuffer_new(), evbuffer_free);
    evbuffer_add_buffer(own.get(), input);
    size = evbuffer_get_length(own.get());
    body = size ? reinterpret_cast<const char*>(evbuffer_pullup(own.get(), -1)) : "";
    owner = std::move(own);
  }

  std::string path(uri);
  path = path.substr(0, path.find_first_of("?#"));
  std::string model, version;
  if (cmd == EVHTTP_REQ_POST && !options_.infer_via_control &&
      MatchInfer(path, &model, &version)) {
    HandleInfer(worker, req, model, version, std::move(owner), body, size);
    return;
  }
  if (cmd == EVHTTP_REQ_GET && options_.live_in_cpp && path == "/v2/health/live") {
    Reply(worker, req, Simple(200, "", "text/plain"));
    return;
  }
  HandleControl(worker, req, std::string(body, size));
}

void HttpServer::Impl::HandleInfer(Worker* worker, evhttp_request* req,
                                   const std::string& name, const std::string& version,
                                   std::shared_ptr<const void> owner, const char* body,
                                   size_t size) {
  using namespace httpfe;
  evkeyvalq* in = evhttp_request_get_input_headers(req);
  if (!options_.infer_header.empty()) {
    const char* value = evhttp_find_header(in, options_.infer_header.c_str());
    if (value == nullptr || options_.infer_value != value) {
      Reply(worker, req,
            Simple(403,
                   "{\"error\":\"This API is restricted, expecting header '" +
                       options_.infer_header + "'\"}",
                   "text/plain"));
      return;
    }
  }
  std::shared_ptr<Model> model;
  Status status = registry_->Find(name, version, &model);
  if (status.ok() && model->spec().decoupled) {
    status = Status(
        StatusCode::kUnsupported,
        "HTTP end point doesn't support models with decoupled transaction policy");
  }
  auto request = std::make_shared<InferenceRequest>();
  OutputEncoding encoding;
  if (status.ok()) {
    const char* hlen_header = evhttp_find_header(in, "Inference-Header-Content-Length");
    size_t hlen = 0;
    if (hlen_header != nullptr) status = ParseHeaderLength(hlen_header, size, &hlen);
    if (status.ok() && hlen_header != nullptr && hlen == 0) {
      status = ParseRawBody(body, size, owner, model->spec(), request.get(), &encoding);
    } else if (status.ok()) {
      status = ParseInferBody(body, size, owner, hlen_header != nullptr, hlen, name,
                              request.get(), &encoding);
    }
  }
  if (!status.ok()) {
    Reply(worker, req, Error(HttpStatusOf(status.code()), status.message()));
    return;
  }
  const char* accept = evhttp_find_header(in, "Accept-Encoding");
  const Encoding compression = accept ? ResponseEncoding(accept) : Encoding::kIdentity;

  std::shared_ptr<PendingCall> call = Track(worker, req);
  call->model = model;
  call->request = request;
  std::shared_ptr<Mailbox> mailbox = worker->mailbox;
  std::atomic<int64_t>* inflight = &inflight_;
  request->SetResponseCallback(
      [call, mailbox, inflight, encoding = std::move(encoding), compression,
       id = request->id](std::unique_ptr<InferenceResponse> result) {
        PostReply(mailbox, call,
                  RenderReply(std::move(result), id, encoding, compression), inflight);
      });
  evhttp_connection* conn = evhttp_request_get_connection(req);
  const evutil_socket_t fd = bufferevent_getfd(evhttp_connection_get_bufferevent(conn));
  call->closed_ev =
      event_new(worker->base, fd, EV_CLOSED, &Impl::OnPeerClosed, call.get());
  event_add(call->closed_ev, nullptr);
  status = model->Enqueue(request);
  if (!status.ok()) {
    // Not taken: the callback will never run.
    SendOnLoop(call, Error(HttpStatusOf(status.code()), status.message()), inflight);
  }
}

void HttpServer::Impl::HandleControl(Worker* worker, evhttp_request* req,
                                     std::string body) {
  HttpControlRequest request;
  request.method = httpfe::MethodName(evhttp_request_get_command(req));
  request.url = evhttp_request_get_uri(req);
  evkeyvalq* in = evhttp_request_get_input_headers(req);
  for (evkeyval* kv = in->tqh_first; kv != nullptr; kv = kv->next.tqe_next) {
    request.headers.emplace_back(kv->key, kv->value);
  }
  request.body = std::move(body);
  std::shared_ptr<PendingCall> call = Track(worker, req);
  std::shared_ptr<Mailbox> mailbox = worker->mailbox;
  std::atomic<int64_t>* inflight = &inflight_;
  HttpReplyFn reply = [call, mailbox, inflight](HttpReply r) {
    Outgoing out;
    out.status = r.status;
    out.headers = std::move(r.headers);
    out.body = evbuffer_new();
    if (!r.body.empty()) evbuffer_add(out.body, r.body.data(), r.body.size());
    httpfe::PostReply(mailbox, call, std::move(out), inflight);
  };
  pool_->Submit([handler = handler_, request = std::move(request), reply]() mutable {
    handler(std::move(request), std::move(reply));
  });
}

// ---------------------------------------------------------------------------

HttpServer::HttpServer(std::shared_ptr<ModelRegistry> registry,
                       HttpControlHandler handler, HttpServerOptions options)
    : impl_(std::make_unique<Impl>(std::move(registry), std::move(handler),
                                   std::move(options))) {}

HttpServer::~HttpServer() { Stop(0); }

Status HttpServer::Start(const std::string& address, int port, bool reuse_port,
                         int* bound_port) {
  return impl_->Start(address, port, reuse_port, bound_port);
}

void HttpServer::Stop(double grace_seconds) { impl_->Stop(grace_seconds); }

bool HttpServer::running() const { return impl_->running(); }

}  // namespace tritonx
