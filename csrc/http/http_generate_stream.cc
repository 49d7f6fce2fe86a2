// Triton's generate extension on the native server: `.../generate` (one JSON
// reply) and `.../generate_stream` (Server-Sent Events over a chunked reply).
//
// Every response of the request (decoupled models send 0..N, then FINAL) is
// rendered on the core thread that sends it and posted to the connection's loop,
// where it is written (stream) or kept (generate). The SSE head waits for the
// first response, whose status it carries (an error first: the error's status,
// as Triton does); each response is one `data: {...}\n\n` chunk; FINAL ends the
// reply. `/generate` answers at FINAL: the one response, or Triton's error when the
// model sent another number of them.
//
// Disconnects: before the head, the infer path's peer-closed watcher cancels the
// request. Once the head is out, evhttp watches the connection itself; when it
// drops it (reset or FIN: a half-closed SSE client counts as gone), our close
// callback cancels the request (`Model::Cancel`: dropped if queued, flagged for
// the backend if executing) and later responses are discarded.
//
// Slow readers: a model cannot be paused, so after each chunk the connection's
// queued output is checked against `max_stream_buffer`; past it the connection is
// shut down (the client sees the stream cut) and the request cancelled, so one
// connection never holds more than about that bound plus one response.
//
// Bodies of kParseOffloadBytes or more are parsed (and enqueued) on the parse pool,
// as infer's, so a large one does not delay the worker's other connections.
//
// Thread safety: everything here but ParseGenerateAndEnqueue (parse pool for large
// bodies; it touches only the call's request and model, then answers through the
// mailbox) and the response callback runs on the worker's loop thread; the callback
// only renders and posts to the mailbox.
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/http.h>
#include <event2/http_struct.h>
#include <sys/socket.h>

#include "core/trace.h"
#include "http_forward.h"
#include "http_generate.h"
#include "http_infer_codec.h"
#include "http_server_impl.h"

namespace tritonx {

using httpfe::GenerateState;

struct HttpServer::Impl::GenerateEvent {
  bool final = false;
  bool has_data = false;  // false: a FINAL without a response
  int status = 200;       // the response's HTTP status (an error's, else 200)
  std::string json;
};

namespace {

void Cancel(PendingCall* call) {
  if (call->model && call->request) call->model->Cancel(call->request);
}

void ForgetWatchers(PendingCall* call) {
  if (call->closed_ev != nullptr) event_free(call->closed_ev);
  call->closed_ev = nullptr;
  if (call->probe_ev != nullptr) event_free(call->probe_ev);
  call->probe_ev = nullptr;
}

}  // namespace

void HttpServer::Impl::HandleGenerate(Worker* worker, evhttp_request* req,
                                      const std::string& name,
                                      const std::string& version, bool stream,
                                      std::shared_ptr<const void> owner,
                                      const char* body, size_t size) {
  using namespace httpfe;
  const uint64_t received_ns = NowNs();  // for a trace: HTTP_RECV_START
  if (!AdmitInfer(worker, req)) return;
  std::shared_ptr<Model> model;
  Status status = registry_->Find(name, version, &model);
  Parameters forwarded;
  if (status.ok() && options_.forward) {
    status =
        options_.forward->Forward(evhttp_request_get_input_headers(req), &forwarded);
  }
  if (!status.ok()) {
    Reply(worker, req, Error(HttpStatusOf(status.code()), status.message()));
    return;
  }
  std::shared_ptr<PendingCall> call = Track(worker, req);
  call->model = model;
  call->request = std::make_shared<InferenceRequest>();
  call->request->recv_start_ns = received_ns;
  if (model->Tracing()) {
    ReadTraceContext(evhttp_request_get_input_headers(req), call->request.get());
  }
  call->generate = std::make_unique<GenerateState>();
  call->generate->stream = stream;
  evhttp_connection* conn = evhttp_request_get_connection(req);
  const evutil_socket_t fd = bufferevent_getfd(evhttp_connection_get_bufferevent(conn));
  call->http11 = req->major > 1 || (req->major == 1 && req->minor >= 1);
  call->closed_ev =
      event_new(worker->base, fd, EV_CLOSED, &Impl::OnPeerClosed, call.get());
  event_add(call->closed_ev, nullptr);
  if (body != nullptr) {
    ParseGenerateAndEnqueue(call, worker->mailbox, owner, body, size,
                            std::move(forwarded), true);
    return;
  }
  // A large body (kParseOffloadBytes): parsing it would delay every other
  // connection of this worker, so it runs on the parse pool, as infer's.
  parse_pool_->Submit([this, call, mailbox = worker->mailbox, owner = std::move(owner),
                       size, forwarded = std::move(forwarded)]() mutable {
    ParseGenerateAndEnqueue(call, mailbox, owner, nullptr, size, std::move(forwarded),
                            false);
  });
}

void HttpServer::Impl::ParseGenerateAndEnqueue(const std::shared_ptr<PendingCall>& call,
                                               const std::shared_ptr<Mailbox>& mailbox,
                                               const std::shared_ptr<const void>& owner,
                                               const char* body, size_t size,
                                               Parameters forwarded, bool on_loop) {
  using namespace httpfe;
  auto fail = [&](const Status& status) {
    Outgoing out = Error(HttpStatusOf(status.code()), status.message());
    if (on_loop) {
      SendOnLoop(call, std::move(out), &inflight_);
    } else {
      PostReply(mailbox, call, std::move(out), &inflight_);
    }
  };
  if (body == nullptr) {
    // The body's own evbuffer (Handle), not yet contiguous; no one else uses it.
    body = MakeContiguous(static_cast<evbuffer*>(const_cast<void*>(owner.get())));
    if (body == nullptr) {
      return fail(Status(StatusCode::kUnavailable, HttpBodyOutOfMemory(size)));
    }
  }
  const std::shared_ptr<Model>& model = call->model;
  const std::shared_ptr<InferenceRequest>& request = call->request;
  Status status = ParseGenerateBody(body, size, model->spec(), request.get());
  if (!status.ok()) return fail(status);
  if (model->Tracing()) request->recv_end_ns = NowNs();
  for (auto& param : forwarded) request->parameters.push_back(std::move(param));
  request->SetResponseStream(
      [this, call, mailbox, id = request->id](std::unique_ptr<InferenceResponse> result,
                                              uint32_t flags) {
        auto event = std::make_shared<GenerateEvent>();
        event->final = (flags & kResponseFlagFinal) != 0;
        if (result) {
          event->has_data = true;
          Status rendered = result->status;
          if (rendered.ok())
            rendered = RenderGenerateResponse(*result, id, &event->json);
          if (!rendered.ok()) {
            event->status = HttpStatusOf(rendered.code());
            event->json = ErrorBody(rendered.message());
          }
        }
        // Dropped when the server has stopped.
        mailbox->Post([this, call, event] { OnGenerateEvent(call, *event); });
      });
  status = model->Enqueue(request);
  // Not taken: no response will come (Enqueue dropped the callback).
  if (!status.ok()) fail(status);
}

void HttpServer::Impl::OnGenerateEvent(const std::shared_ptr<PendingCall>& call,
                                       GenerateEvent& event) {
  using namespace httpfe;
  if (call->answered) return;
  GenerateState& state = *call->generate;
  if (!state.stream) {
    if (event.has_data && ++state.responses == 1) {
      state.first_status = event.status;
      state.first_body = std::move(event.json);
    }
    if (!event.final) return;
    // The first response sets the status, also when the count is wrong (Triton
    // starts its reply with the first response).
    const int status = state.responses == 0 ? 200 : state.first_status;
    Outgoing out =
        state.responses == 1
            ? Simple(status, state.first_body, "application/json")
            : Simple(status, ErrorBody(kGenerateOneResponse), "application/json");
    SendOnLoop(call, std::move(out), &inflight_);
    return;
  }
  if (event.has_data && !state.dropped) {
    if (!state.head_sent) StartStream(call, event.status);
    WriteEvent(call, event.json);
  }
  if (event.final) FinishStream(call);
}

void HttpServer::Impl::StartStream(const std::shared_ptr<PendingCall>& call,
                                   int status) {
  GenerateState& state = *call->generate;
  ForgetWatchers(call.get());
  evkeyvalq* headers = evhttp_request_get_output_headers(call->req);
  evhttp_add_header(headers, "Content-Type", "text/event-stream; charset=utf-8");
  // HTTP/1.0 has no chunked encoding: the end of the connection ends the stream.
  if (!call->http11) evhttp_add_header(headers, "Connection", "close");
  evhttp_send_reply_start(call->req, status, httpfe::ReasonPhrase(status));
  state.head_sent = true;
  state.conn = evhttp_request_get_connection(call->req);
  if (state.conn == nullptr) {
    state.dropped = true;
    Cancel(call.get());
    return;
  }
  evhttp_connection_set_closecb(state.conn, &Impl::OnStreamClosed, call.get());
}

void HttpServer::Impl::WriteEvent(const std::shared_ptr<PendingCall>& call,
                                  const std::string& json) {
  GenerateState& state = *call->generate;
  if (state.dropped || state.conn == nullptr) return;
  evbuffer* chunk = evbuffer_new();
  evbuffer_add(chunk, "data: ", 6);
  evbuffer_add(chunk, json.data(), json.size());
  evbuffer_add(chunk, "\n\n", 2);
  // A traced request: a send pair per response (Triton writes these with 0 times).
  RequestTrace* trace = call->request ? call->request->trace.get() : nullptr;
  if (trace != nullptr) trace->Record(trace_activity::kHttpSendStart);
  evhttp_send_reply_chunk(call->req, chunk);
  if (trace != nullptr) trace->Record(trace_activity::kHttpSendEnd);
  evbuffer_free(chunk);
  bufferevent* bev = evhttp_connection_get_bufferevent(state.conn);
  if (evbuffer_get_length(bufferevent_get_output(bev)) <= options_.max_stream_buffer) {
    return;
  }
  // Too far behind: cut the stream. evhttp sees the shutdown on its next read,
  // drops the connection with what it had queued and calls OnStreamClosed.
  state.dropped = true;
  Cancel(call.get());
  shutdown(bufferevent_getfd(bev), SHUT_RDWR);
}

void HttpServer::Impl::FinishStream(const std::shared_ptr<PendingCall>& call) {
  GenerateState& state = *call->generate;
  // Triton answers a stream without responses with an empty 200 stream.
  if (!state.head_sent) StartStream(call, 200);
  if (state.conn != nullptr)
    evhttp_connection_set_closecb(state.conn, nullptr, nullptr);
  state.conn = nullptr;
  WatchFlush(call->worker, call->req);
  // Ends the chunked reply, or frees the request if evhttp has let it go.
  evhttp_send_reply_end(call->req);
  call->answered = true;
  call->worker->pending.erase(call);
  inflight_.fetch_sub(1, std::memory_order_acq_rel);
}

void HttpServer::Impl::OnStreamClosed(evhttp_connection*, void* arg) {
  // evhttp is freeing the connection; it has already let go of the request, which
  // stays ours until FinishStream.
  auto* call = static_cast<PendingCall*>(arg);
  call->generate->conn = nullptr;
  call->generate->dropped = true;
  Cancel(call);
}

void HttpServer::Impl::ReleaseStream(PendingCall* call) {
  if (!call->generate || !call->generate->head_sent) return;
  GenerateState& state = *call->generate;
  if (state.conn != nullptr) {
    // evhttp_free will free the connection and the request with it.
    evhttp_connection_set_closecb(state.conn, nullptr, nullptr);
    state.conn = nullptr;
  } else if (!call->answered) {
    evhttp_send_reply_end(call->req);  // detached: this frees it
  }
}

}  // namespace tritonx
