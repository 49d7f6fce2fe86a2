// HttpServer::Impl, shared by http_server.cc (lifecycle, threads, replies) and
// http_request.cc (what each request gets). Internal to csrc/http.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "../grpc/worker_pool.h"
#include "core/http_messages.h"
#include "core/infer_json.h"
#include "core/infer_request.h"
#include "http_compression.h"
#include "http_error_page.h"
#include "http_infer_codec.h"
#include "http_server.h"
#include "http_worker.h"

namespace tritonx {
namespace httpfe {
struct InferHead;  // http_request.cc
// How an infer request's body and answer are framed: KServe's (the
// Inference-Header-Content-Length header), or a cloud endpoint's (http_cloud.h).
struct InferFraming {
  bool cloud = false;
  int64_t header_length = -1;    // cloud: -1 JSON body, else JSON bytes (0: raw)
  std::shared_ptr<Model> model;  // cloud: found and checked already
};
// Infer bodies of this many bytes or more are parsed on the parse pool, not on the
// loop thread (core/infer_json.h).
inline constexpr size_t kParseOffloadBytes = kJsonOffLoopBytes;
}  // namespace httpfe

using httpfe::Mailbox;
using httpfe::Outgoing;
using httpfe::PendingCall;
using httpfe::Worker;

// Thread safety: mu_ guards start/stop; workers_, pool_ and parse_pool_ are set by
// Start before any worker runs and reset by Stop after they have been joined.
// Ownership: owned by HttpServer; owns the workers and pools.

class HttpServer::Impl {
 public:
  Impl(std::shared_ptr<ModelRegistry> registry, HttpControlHandler handler,
       HttpServerOptions options)
      : registry_(std::move(registry)),
        handler_(std::move(handler)),
        options_(std::move(options)),
        page_limits_{HttpBodyCap(options_.max_input_size)} {}

  Status Start(const std::string& address, int port, bool reuse_port, int* bound_port);
  void Stop(double grace_seconds);
  bool running() const {
    std::lock_guard<std::mutex> lock(mu_);
    return !workers_.empty();
  }

 private:
  static void OnRequest(evhttp_request* req, void* arg);
  static bufferevent* OnNewConnection(event_base* base, void* arg);
  static void OnWake(evutil_socket_t, short, void* arg);
  static void OnPeerClosed(evutil_socket_t, short, void* arg);

  void Handle(Worker* worker, evhttp_request* req);
  void HandleInfer(Worker* worker, evhttp_request* req, const std::string& model,
                   const std::string& version, std::shared_ptr<const void> owner,
                   const char* body, size_t size,
                   const httpfe::InferFraming& framing = {});
  // The cloud endpoint's model can take a request (found, not decoupled: set in
  // `model`); else its Python frontend answers the request.
  bool CloudModelServable(std::shared_ptr<Model>* model) const;
  // Parses an infer body into call->request and enqueues it; answers errors (from
  // the loop thread directly, else through the worker's mailbox).
  void ParseAndEnqueue(const std::shared_ptr<PendingCall>& call,
                       httpfe::InferHead& head,
                       const std::shared_ptr<const void>& owner, const char* body,
                       size_t size, bool on_loop);
  void HandleControl(Worker* worker, evhttp_request* req, std::string body);
  // False (and answered 403) when the inference group is restricted and `req`
  // lacks the header.
  bool AdmitInfer(Worker* worker, evhttp_request* req);

  // Triton's generate extension (http_generate_stream.cc).
  struct GenerateEvent;
  // `body` null: a large body, left in `owner` (its evbuffer) to be made
  // contiguous and parsed on the parse pool, as infer's.
  void HandleGenerate(Worker* worker, evhttp_request* req, const std::string& model,
                      const std::string& version, bool stream,
                      std::shared_ptr<const void> owner, const char* body, size_t size);
  // Parses a generate body into call->request and enqueues it; answers errors (from
  // the loop thread directly, else through the worker's mailbox).
  void ParseGenerateAndEnqueue(const std::shared_ptr<PendingCall>& call,
                               const std::shared_ptr<Mailbox>& mailbox,
                               const std::shared_ptr<const void>& owner,
                               const char* body, size_t size, Parameters forwarded,
                               bool on_loop);
  void OnGenerateEvent(const std::shared_ptr<PendingCall>& call, GenerateEvent& event);
  void StartStream(const std::shared_ptr<PendingCall>& call, int status);
  void WriteEvent(const std::shared_ptr<PendingCall>& call, const std::string& json);
  void FinishStream(const std::shared_ptr<PendingCall>& call);
  static void OnStreamClosed(evhttp_connection* conn, void* arg);
  // Stop: forgets the stream calls' close callbacks and frees their requests that
  // evhttp no longer owns.
  static void ReleaseStream(PendingCall* call);
  void Reply(Worker* worker, evhttp_request* req, Outgoing out);
  std::shared_ptr<PendingCall> Track(Worker* worker, evhttp_request* req);

  std::shared_ptr<ModelRegistry> registry_;
  HttpControlHandler handler_;
  const HttpServerOptions options_;
  const httpfe::ErrorPageLimits page_limits_;
  std::atomic<int64_t> inflight_{0};

  mutable std::mutex mu_;
  int listen_fd_ = -1;
  std::vector<std::unique_ptr<Worker>> workers_;
  std::unique_ptr<grpcfe::WorkerPool> pool_;
  // Parses large infer bodies off the loop threads (kParseOffloadBytes).
  std::unique_ptr<grpcfe::WorkerPool> parse_pool_;
};

namespace httpfe {

// The request type libevent 2.1 gives a method it does not know
// (EVHTTP_REQ_UNKNOWN_ in its http-internal.h).
inline constexpr uint16_t kUnknownMethod = 1u << 15;

// A complete reply with `body` as its content (Content-Type omitted when null).
Outgoing Simple(int status, const std::string& body, const char* content_type,
                HttpHeaders extra = {});
// `{"error": ...}` as application/json.
Outgoing Error(int status, const std::string& message, HttpHeaders extra = {});
// The same as text/plain: how Triton answers what it refuses before a handler sets
// a content type (libevhtp's default).
Outgoing PlainError(int status, const std::string& message, HttpHeaders extra = {});
// An infer response as the reply to its request: its error, or the KServe JSON
// header and binary outputs (`encoding`), compressed when asked, under a cloud
// endpoint's `binary_mime` when it has one (http_reply.cc).
Outgoing RenderReply(std::unique_ptr<InferenceResponse> result,
                     const std::string& request_id, const OutputEncoding& encoding,
                     Encoding compression, const std::string& binary_mime);

}  // namespace httpfe
}  // namespace tritonx
