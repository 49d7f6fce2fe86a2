// Internals of HttpServer shared by its source files: the per-thread worker (an
// event_base + evhttp) and its mailbox.
#pragma once

#include <event2/event.h>
#include <event2/http.h>

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_set>
#include <vector>

#include "../grpc/worker_pool.h"
#include "core/model.h"
#include "http_server.h"

namespace tritonx {
namespace httpfe {

// Work handed to a worker's loop thread from any thread. Thread safety: Post and
// Close from any thread; Drain only on the loop thread. Ownership: shared by the
// worker and every pending completion, so a late completion finds it closed
// instead of dangling.
class Mailbox {
 public:
  explicit Mailbox(event* wake) : wake_(wake) {}
  // False when closed (the task is dropped, never run).
  bool Post(std::function<void()> task) {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_) return false;
    const bool wake = tasks_.empty();
    tasks_.push_back(std::move(task));
    // Activated under the lock: Close cannot free the event in between.
    if (wake) event_active(wake_, 0, 0);
    return true;
  }
  void Drain() {
    std::vector<std::function<void()>> tasks;
    {
      std::lock_guard<std::mutex> lock(mu_);
      tasks.swap(tasks_);
    }
    for (auto& task : tasks) task();
  }
  void Close() {
    std::lock_guard<std::mutex> lock(mu_);
    closed_ = true;
    tasks_.clear();
  }

 private:
  std::mutex mu_;
  event* const wake_;
  std::vector<std::function<void()>> tasks_;
  bool closed_ = false;
};

struct Worker;

// A reply built on any thread, sent on the loop thread. `body` is an evbuffer the
// reply owns (freed after sending).
struct Outgoing {
  int status = 200;
  HttpHeaders headers;
  evbuffer* body = nullptr;
};

// A generate call's progress (see http_generate_stream.cc). Loop thread only.
struct GenerateState {
  bool stream = false;     // generate_stream: Server-Sent Events, chunked
  bool head_sent = false;  // the SSE head is out; evhttp watches the peer from here
  bool dropped = false;    // connection gone or over its bound: responses discarded
  int responses = 0;       // /generate: how many responses arrived
  int first_status = 200;  // /generate: the first response, rendered
  std::string first_body;
  evhttp_connection* conn = nullptr;  // while our close callback is installed on it
};

// One request handed off (to the core or the control pool) and not yet answered.
// Thread safety: `req`, `closed_ev` and `worker` are used only on the worker's loop
// thread; the rest is set before the hand-off. Ownership: shared by the worker's
// pending set and the completion closure; evhttp keeps `req` valid until it is
// replied to, because it stops reading a connection while a request is out.
struct PendingCall {
  Worker* worker = nullptr;
  evhttp_request* req = nullptr;
  event* closed_ev = nullptr;  // peer-closed watcher (infer only)
  event* probe_ev = nullptr;   // after a FIN: is the peer gone or half-closed?
  evutil_socket_t fd = -1;
  bool http11 = true;  // may be sent an interim 100 response
  std::shared_ptr<Model> model;
  RequestPtr request;
  bool answered = false;
  std::unique_ptr<GenerateState> generate;  // generate routes only
};

struct Worker {
  event_base* base = nullptr;
  evhttp* http = nullptr;
  evhttp_bound_socket* bound = nullptr;
  event* wake = nullptr;
  std::shared_ptr<Mailbox> mailbox;
  std::thread thread;
  std::unordered_set<std::shared_ptr<PendingCall>> pending;  // loop thread only
  void* owner = nullptr;                                     // the HttpServer::Impl
  bool tls = false;  // connections are HTTPS (bufferevent_openssl)
  // Memory return after large requests (see NoteLargeRequest). Loop thread only.
  event* trim = nullptr;
  bool large_seen = false;
  // Where memory is trimmed (the server's parse pool, which outlives the loop).
  grpcfe::WorkerPool* background = nullptr;
  // Replies handed to evhttp and not yet written out (WatchFlush). Changed on the
  // loop thread; Stop reads it from its own.
  std::atomic<int64_t> unflushed{0};
  // Resumes accepting after accept() ran out of descriptors (OnAcceptError).
  // Loop thread only.
  event* accept_retry = nullptr;
};

// How long a worker stops accepting after accept() failed for want of descriptors
// or kernel memory; the connection waiting in the backlog is taken on the next try.
constexpr int kAcceptRetryMs = 100;
// At most one log line this often (per process) while accept() keeps failing.
constexpr int kAcceptWarnEverySeconds = 10;

// Installs the accept-failure pause (OnAcceptError) on `worker`'s listener. Loop
// thread, or before the loop starts.
void WatchAcceptErrors(Worker* worker);

// A request of this many body bytes or more makes its worker hand freed memory back
// to the OS once it is idle: parsing it leaves the worker thread's malloc arena full
// of freed fragments that glibc would otherwise keep (measured: +50 MB after a 30 MB
// JSON tensor).
constexpr size_t kTrimAfterBytes = size_t{4} << 20;
constexpr int kTrimDelayMs = 1000;

// Loop thread. Arms the worker's trim timer after a large request was seen.
void ArmMemoryReturn(Worker* worker);

// Loop thread, just before evhttp_send_reply / evhttp_send_reply_end: counts `req`'s
// reply in worker->unflushed until its last byte is written or its connection goes
// away, so that Stop does not end the loop under a reply still being written. Takes
// the connection's close callback until then.
void WatchFlush(Worker* worker, evhttp_request* req);

// Sends `out` on `req` (loop thread) and frees its body.
void SendReply(Worker* worker, evhttp_request* req, Outgoing& out);

// Sends `out` for `call` on its worker's loop thread and forgets the call.
void SendOnLoop(const std::shared_ptr<PendingCall>& call, Outgoing out,
                std::atomic<int64_t>* inflight);

// Queues `out` for `call` from any thread (dropped, buffer freed, if the server
// has stopped).
void PostReply(const std::shared_ptr<Mailbox>& mailbox,
               const std::shared_ptr<PendingCall>& call, Outgoing out,
               std::atomic<int64_t>* inflight);

const char* ReasonPhrase(int status);

// `buffer`'s bytes in one piece, owned by `buffer`, copied with a bounded peak (see
// http_request.cc); null when the memory for the copy cannot be had. The caller is
// the buffer's only user.
const char* MakeContiguous(evbuffer* buffer);

}  // namespace httpfe
}  // namespace tritonx
