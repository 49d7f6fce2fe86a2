#include "http_server.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <event2/thread.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "core/http_messages.h"
#include "core/logging.h"
#include "core/trace.h"
#include "http_error_page.h"
#include "http_server_impl.h"
#include "http_tls.h"

namespace tritonx {

using httpfe::Mailbox;
using httpfe::Outgoing;
using httpfe::PendingCall;
using httpfe::Worker;

namespace httpfe {

const char* ReasonPhrase(int status) { return HttpReasonPhrase(status); }

namespace {

// The reply's last byte was written: evhttp then reuses or closes the connection,
// which must no longer call OnFlushConnectionGone. `arg`: the Worker.
void OnReplyFlushed(evhttp_request* req, void* arg) {
  evhttp_connection_set_closecb(evhttp_request_get_connection(req), nullptr, nullptr);
  static_cast<Worker*>(arg)->unflushed.fetch_sub(1, std::memory_order_relaxed);
}

// The connection went away (peer reset, or the server's evhttp_free) with the
// reply not written out: evhttp frees the request without its completion callback.
void OnFlushConnectionGone(evhttp_connection*, void* arg) {
  static_cast<Worker*>(arg)->unflushed.fetch_sub(1, std::memory_order_relaxed);
}

}  // namespace

void WatchFlush(Worker* worker, evhttp_request* req) {
  evhttp_connection* conn = evhttp_request_get_connection(req);
  if (conn == nullptr) return;  // detached: evhttp frees it without writing
  // A connection carries one reply at a time, so whichever callback comes first is
  // the only one: the completion clears the close callback.
  worker->unflushed.fetch_add(1, std::memory_order_relaxed);
  evhttp_request_set_on_complete_cb(req, &OnReplyFlushed, worker);
  evhttp_connection_set_closecb(conn, &OnFlushConnectionGone, worker);
}

// Sends `out` on `req` and frees its body. A HEAD request gets the head only:
// evhttp would write the body after it, and the client would read it as the start
// of the next response.
void SendReply(Worker* worker, evhttp_request* req, Outgoing& out) {
  evkeyvalq* headers = evhttp_request_get_output_headers(req);
  for (const auto& [name, value] : out.headers) {
    evhttp_add_header(headers, name.c_str(), value.c_str());
  }
  if (out.body != nullptr && evhttp_request_get_command(req) == EVHTTP_REQ_HEAD) {
    evbuffer_drain(out.body, evbuffer_get_length(out.body));
  }
  WatchFlush(worker, req);
  evhttp_send_reply(req, out.status, ReasonPhrase(out.status), out.body);
  if (out.body != nullptr) evbuffer_free(out.body);
  out.body = nullptr;
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
  if (call->probe_ev != nullptr) {
    event_free(call->probe_ev);
    call->probe_ev = nullptr;
  }
  RequestTrace* trace = call->request ? call->request->trace.get() : nullptr;
  if (trace != nullptr) trace->Record(trace_activity::kHttpSendStart);
  SendReply(call->worker, call->req, out);
  if (trace != nullptr) trace->Record(trace_activity::kHttpSendEnd);
  call->worker->pending.erase(call);
  inflight->fetch_sub(1, std::memory_order_acq_rel);
  ArmMemoryReturn(call->worker);
}

void ArmMemoryReturn(Worker* worker) {
  if (!worker->large_seen || worker->trim == nullptr) return;
  timeval delay{kTrimDelayMs / 1000, (kTrimDelayMs % 1000) * 1000};
  evtimer_add(worker->trim, &delay);  // re-arming pushes it back: trim when quiet
}

// Timer: the worker saw a large request; once it has nothing in flight, give the
// memory freed since back to the OS (glibc keeps it in the arena otherwise).
void OnTrim(evutil_socket_t, short, void* arg) {
  auto* worker = static_cast<Worker*>(arg);
  if (!worker->pending.empty()) {
    ArmMemoryReturn(worker);  // still busy: look again later
    return;
  }
  worker->large_seen = false;
#if defined(__GLIBC__)
  // Off the loop: trimming a large heap takes milliseconds, which this worker's
  // other connections would wait for.
  if (worker->background != nullptr) {
    worker->background->Submit([] { malloc_trim(0); });
  } else {
    malloc_trim(0);
  }
#endif
}

namespace {

// The worker whose loop runs on this thread: libevent hands the listener's error
// callback the evhttp, not the worker.
thread_local Worker* loop_worker = nullptr;

// When OnAcceptError last logged, in steady-clock seconds: every worker's listener
// fails at once when the process runs out of descriptors, one line says it.
std::atomic<int64_t> last_accept_warning{-kAcceptWarnEverySeconds};

// accept() failed with an error libevent does not retry by itself. For EMFILE,
// ENFILE, ENOBUFS and ENOMEM the pending connection stays in the backlog and the
// listening socket stays readable, so leaving the listener on would spin the loop
// at full CPU and print libevent's warning millions of times a minute (Triton
// 2.51 does both). Instead the worker stops accepting for kAcceptRetryMs; its open
// connections are served meanwhile, and the backlog waits until descriptors free up.
void OnAcceptError(evconnlistener* listener, void*) {
  const int error = EVUTIL_SOCKET_ERROR();
  Worker* worker = loop_worker;
  if (worker == nullptr || worker->accept_retry == nullptr) return;
  evconnlistener_disable(listener);
  const timeval delay{0, kAcceptRetryMs * 1000};
  evtimer_add(worker->accept_retry, &delay);
  const int64_t now = std::chrono::duration_cast<std::chrono::seconds>(
                          std::chrono::steady_clock::now().time_since_epoch())
                          .count();
  int64_t last = last_accept_warning.load(std::memory_order_relaxed);
  if (now - last >= kAcceptWarnEverySeconds &&
      last_accept_warning.compare_exchange_strong(last, now)) {
    Log(LogLevel::kWarning, std::string("HTTP server cannot accept connections: ") +
                                evutil_socket_error_to_string(error) +
                                " (new connections wait; retrying every " +
                                std::to_string(kAcceptRetryMs) + " ms)");
  }
}

void OnAcceptRetry(evutil_socket_t, short, void* arg) {
  auto* worker = static_cast<Worker*>(arg);
  // Stop may have removed the listener since.
  if (worker->bound != nullptr)
    evconnlistener_enable(evhttp_bound_socket_get_listener(worker->bound));
}

}  // namespace

void WatchAcceptErrors(Worker* worker) {
  if (worker->bound == nullptr) return;
  worker->accept_retry = evtimer_new(worker->base, &OnAcceptRetry, worker);
  evconnlistener_set_error_cb(evhttp_bound_socket_get_listener(worker->bound),
                              &OnAcceptError);
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

}  // namespace httpfe

Status HttpServer::Impl::Start(const std::string& address, int port, bool reuse_port,
                               int* bound_port) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!workers_.empty())
    return Status(StatusCode::kAlreadyExists, "HTTP server is already running");
  // Once per process, before any base exists: event_active and loopexit are then
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
  int bind_errno = 0;
  for (addrinfo* ai = found; ai != nullptr && fd < 0; ai = ai->ai_next) {
    fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (fd < 0) continue;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (reuse_port) setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    // No Nagle (Triton sets TCP_NODELAY too): a large response leaves in several
    // writes, and its tail waited for the client's delayed ACK (~40 ms per 1 MiB
    // response). Accepted sockets inherit it from the listener on Linux.
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 1024) != 0) {
      bind_errno = errno;
      close(fd);
      fd = -1;
    }
  }
  freeaddrinfo(found);
  if (fd < 0 && bind_errno == EADDRINUSE) {
    // tritonserver's words (trailing blank included).
    return Status(StatusCode::kUnavailable, "Socket '" + target + "' already in use ");
  }
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
  const int worker_count = options_.thread_count > 0 ? options_.thread_count : 1;
  // Each worker accepts on its own descriptor of the listening socket: evhttp
  // closes the one it was given when the worker stops accepting, and one number
  // closed once per worker could by then name a file that another thread of the
  // process (the in-process API's host, say) has just opened.
  std::vector<int> worker_fds;
  for (int i = 0; i < worker_count; ++i) {
    const int worker_fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (worker_fd < 0) {
      const std::string error = std::strerror(errno);
      for (int opened : worker_fds) close(opened);
      close(fd);
      listen_fd_ = -1;
      return Status(StatusCode::kUnavailable,
                    "unable to serve '" + target + "': " + error);
    }
    worker_fds.push_back(worker_fd);
  }

  pool_ = std::make_unique<grpcfe::WorkerPool>(
      static_cast<size_t>(options_.control_threads), 0, "HTTP control");
  // Large bodies are parsed at a lower priority than the event loops (nice +10,
  // about a tenth of the CPU share under contention), so that a 30 MB JSON
  // tensor does not delay other connections' requests on a loaded machine.
  parse_pool_ =
      std::make_unique<grpcfe::WorkerPool>(2, /*nice_increment=*/10, "HTTP parse");
  for (int i = 0; i < worker_count; ++i) {
    auto worker = std::make_unique<Worker>();
    worker->owner = this;
    // The changelist folds the interest changes evhttp makes on a connection within
    // one loop pass (read off while a request is handled, write on for the reply,
    // then back) into one epoll_ctl: ~5.5 such calls per keep-alive request become
    // ~2.5, worth 5-10 % more infer/s at concurrency 1-4 (benchmarks/README.md).
    // libevent's caveat is dup()ed descriptors in one base: each base here holds its
    // own duplicate of the listening socket and nothing else duplicated.
    event_config* base_config = event_config_new();
    event_config_set_flag(base_config, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
    worker->base = event_base_new_with_config(base_config);
    event_config_free(base_config);
    worker->http = evhttp_new(worker->base);
    evhttp_set_gencb(worker->http, &Impl::OnRequest, worker.get());
    // Every connection's bufferevent is ours (TLS or not), so that evhttp's own
    // error pages on it are replaced (http_error_page.h).
    evhttp_set_bevcb(worker->http, &Impl::OnNewConnection, worker.get());
    worker->tls = options_.tls != nullptr;
    // Every method reaches Handle, so that each gets the Python frontend's JSON
    // answer rather than evhttp's HTML 501 page: known ones are routed (405 from
    // the control handler), unknown ones (libevent 2.1 types them
    // EVHTTP_REQ_UNKNOWN_, 1 << 15, in http-internal.h) get 400 in Handle.
    evhttp_set_allowed_methods(
        worker->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                          EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS |
                          EVHTTP_REQ_PATCH | EVHTTP_REQ_TRACE | EVHTTP_REQ_CONNECT |
                          httpfe::kUnknownMethod);
    // evhttp's own head limit is a backstop well above ours, so that heads between
    // the two get the Python frontend's 431 (checked in Handle).
    evhttp_set_max_headers_size(
        worker->http, static_cast<ev_ssize_t>(2 * options_.max_header_size + 16384));
    // Bodies up to the cap are read, and their JSON or raw part checked against
    // the limit (Handle); evhttp answers larger ones 413 itself, after draining
    // them so that the client reads the answer (replaced: http_error_page.h).
    evhttp_set_max_body_size(
        worker->http, static_cast<ev_ssize_t>(HttpBodyCap(options_.max_input_size)));
    evhttp_set_flags(worker->http, EVHTTP_SERVER_LINGERING_CLOSE);
    evhttp_set_default_content_type(worker->http, "text/plain");
    evhttp_set_timeout(worker->http, 600);
    worker->bound = evhttp_accept_socket_with_handle(worker->http, worker_fds[i]);
    httpfe::WatchAcceptErrors(worker.get());
    worker->wake = event_new(worker->base, -1, 0, &Impl::OnWake, worker.get());
    worker->trim = evtimer_new(worker->base, &httpfe::OnTrim, worker.get());
    worker->background = parse_pool_.get();
    worker->mailbox = std::make_shared<Mailbox>(worker->wake);
    workers_.push_back(std::move(worker));
  }
  for (auto& worker : workers_) {
    Worker* w = worker.get();
    const httpfe::ErrorPageLimits* limits = &page_limits_;
    worker->thread = std::thread([w, limits] {
      httpfe::SetThreadErrorPageLimits(limits);
      httpfe::loop_worker = w;
      event_base_loop(w->base, EVLOOP_NO_EXIT_ON_EMPTY);
    });
  }
  return Status::Ok();
}

void HttpServer::Impl::Stop(double grace_seconds) {
  std::lock_guard<std::mutex> lock(mu_);
  if (workers_.empty()) return;
  // Stop accepting on every worker's own thread (which closes its duplicate of
  // the listening socket), then close the socket itself, so that new connections
  // are refused at once; connections already open are still served while the
  // grace period runs.
  struct Unbound {
    std::mutex mu;
    std::condition_variable cv;
    size_t left;
  };
  auto unbound = std::make_shared<Unbound>();
  unbound->left = workers_.size();
  for (auto& worker : workers_) {
    Worker* w = worker.get();
    const bool posted = w->mailbox->Post([w, unbound] {
      if (w->bound) evhttp_del_accept_socket(w->http, w->bound);
      w->bound = nullptr;
      std::lock_guard<std::mutex> done(unbound->mu);
      --unbound->left;
      unbound->cv.notify_all();
    });
    if (!posted) {
      std::lock_guard<std::mutex> done(unbound->mu);
      --unbound->left;
    }
  }
  {
    // The loops only run evhttp (no model code), so each answers at once; a loop
    // that does not still stops accepting through shutdown.
    std::unique_lock<std::mutex> wait(unbound->mu);
    unbound->cv.wait_for(wait, std::chrono::seconds(1),
                         [&unbound] { return unbound->left == 0; });
  }
  shutdown(listen_fd_, SHUT_RDWR);
  close(listen_fd_);
  listen_fd_ = -1;
  const auto deadline = std::chrono::steady_clock::now() +
                        std::chrono::microseconds(
                            static_cast<int64_t>(std::max(grace_seconds, 0.0) * 1e6));
  // Answered is not yet delivered: a reply leaves in the loop iterations after
  // evhttp_send_reply (a large one over many), and ending the loops before then
  // would cut it off. Wait for both within the grace period.
  auto unflushed = [this] {
    int64_t total = 0;
    for (const auto& worker : workers_) total += worker->unflushed.load();
    return total;
  };
  while ((inflight_.load() > 0 || unflushed() > 0) &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  for (auto& worker : workers_) {
    worker->mailbox->Close();
    // loopexit, not loopbreak: a loop thread that has not entered event_base_loop
    // yet (a stop right after Start) would clear loopbreak's flag on entry and run
    // forever; loopexit's event stays pending until the loop runs it.
    event_base_loopexit(worker->base, nullptr);
  }
  for (auto& worker : workers_) {
    worker->thread.join();
    for (const auto& call : worker->pending) {
      if (call->closed_ev) event_free(call->closed_ev);
      call->closed_ev = nullptr;
      if (call->probe_ev) event_free(call->probe_ev);
      call->probe_ev = nullptr;
      ReleaseStream(call.get());
      if (call->model && call->request) call->model->Cancel(call->request);
    }
    worker->pending.clear();
    evhttp_free(worker->http);
    event_free(worker->wake);
    if (worker->trim != nullptr) event_free(worker->trim);
    if (worker->accept_retry != nullptr) event_free(worker->accept_retry);
    event_base_free(worker->base);
  }
  workers_.clear();
  // Control calls still running finish; their replies find the mailboxes closed.
  pool_->Shutdown();
  pool_.reset();
  // Likewise bodies still being parsed (their calls hold no worker) and trims.
  parse_pool_->Shutdown();
  parse_pool_.reset();
  inflight_.store(0);
}

bufferevent* HttpServer::Impl::OnNewConnection(event_base* base, void* arg) {
  auto* worker = static_cast<Worker*>(arg);
  auto* self = static_cast<Impl*>(worker->owner);
  // A TLS connection's handshake runs in its bufferevent before evhttp reads a byte
  // of HTTP. Null (TLS could not be set up) makes evhttp use a plaintext one, on
  // which nothing is served (OnRequest).
  bufferevent* bev =
      worker->tls ? HttpTlsContext::NewBufferEvent(base, self->options_.tls.get())
                  : bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
  if (bev != nullptr) httpfe::WatchErrorPages(bev);
  return bev;
}

void HttpServer::Impl::OnWake(evutil_socket_t, short, void* arg) {
  static_cast<Worker*>(arg)->mailbox->Drain();
}

void HttpServer::Impl::OnRequest(evhttp_request* req, void* arg) {
  auto* worker = static_cast<Worker*>(arg);
  if (worker->tls) {
    // evhttp falls back to a plaintext bufferevent when ours could not be made
    // (HttpTlsContext::NewBufferEvent); nothing is served over one.
    evhttp_connection* conn = evhttp_request_get_connection(req);
    bufferevent* bev = evhttp_connection_get_bufferevent(conn);
    if (bufferevent_openssl_get_ssl(bev) == nullptr) {
      shutdown(bufferevent_getfd(bev), SHUT_RDWR);
      Outgoing refused;
      refused.status = 400;
      httpfe::SendReply(worker, req, refused);
      return;
    }
  }
  static_cast<Impl*>(worker->owner)->Handle(worker, req);
}

namespace {

// True once the connection is gone for good (reset, or closed on both sides).
bool PeerGone(evutil_socket_t fd) {
  tcp_info info{};
  socklen_t len = sizeof(info);
  if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len) == 0 &&
      info.tcpi_state == TCP_CLOSE) {
    return true;
  }
  int error = 0;
  len = sizeof(error);
  return getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len) == 0 && error != 0;
}

void CancelCall(PendingCall* call) {
  if (call->model && call->request) call->model->Cancel(call->request);
}

void OnProbe(evutil_socket_t, short, void* arg) {
  auto* call = static_cast<PendingCall*>(arg);
  if (PeerGone(call->fd)) {
    CancelCall(call);
    return;
  }
  // Still half-open: look again while the request is out.
  timeval again{0, 20000};
  event_add(call->probe_ev, &again);
}

}  // namespace

void HttpServer::Impl::OnPeerClosed(evutil_socket_t fd, short, void* arg) {
  // A FIN while the request is out: either the client went away (then its request
  // is dropped if still queued, or flagged for the backend to notice) or it only
  // half-closed after sending (nc -N; Triton answers those). The two look alike
  // until something is sent: an interim "100 Continue", which HTTP/1.1 clients
  // skip, makes a closed peer answer with a reset that OnProbe then sees. Over TLS
  // nothing can be written past the TLS bufferevent, and TLS clients end a session
  // with close_notify rather than half-closing, so a FIN there means gone.
  auto* call = static_cast<PendingCall*>(arg);
  event_del(call->closed_ev);
  static const char kContinue[] = "HTTP/1.1 100 Continue\r\n\r\n";
  if (!call->http11 || call->worker->tls ||
      send(fd, kContinue, sizeof(kContinue) - 1, MSG_NOSIGNAL | MSG_DONTWAIT) < 0) {
    CancelCall(call);
    return;
  }
  call->fd = fd;
  call->probe_ev = evtimer_new(call->worker->base, &OnProbe, call);
  timeval soon{0, 2000};
  event_add(call->probe_ev, &soon);
}

void HttpServer::Impl::Reply(Worker* worker, evhttp_request* req, Outgoing out) {
  SendReply(worker, req, out);
  httpfe::ArmMemoryReturn(worker);
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
