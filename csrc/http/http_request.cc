// What each request gets: head checks, body decoding, the native infer path and
// the hand-off of every other route to the control handler.
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/http.h>
#include <event2/http_struct.h>
#include <event2/keyvalq_struct.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <sys/socket.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

#include "core/http_messages.h"
#include "core/infer_json.h"
#include "core/logging.h"
#include "core/request_builder.h"
#include "core/trace.h"
#include "http_cloud.h"
#include "http_compression.h"
#include "http_forward.h"
#include "http_infer_codec.h"
#include "http_server_impl.h"

namespace tritonx {

using httpfe::Mailbox;
using httpfe::Outgoing;
using httpfe::PendingCall;
using httpfe::Worker;

namespace httpfe {

// Triton (libevhtp) drops the connection, unanswered, when a URL, header name or
// header value reaches 8 KiB; the Python frontend does the same.
constexpr size_t kMaxFieldSize = 8191;

namespace {

// A field value without the whitespace (SP, HTAB) around it, which HTTP says is not
// part of it (RFC 9110, 5.5); evhttp strips only leading spaces and trailing
// whitespace. In place; returns the new length.
size_t TrimWhitespace(char* value) {
  size_t length = std::strlen(value);
  size_t start = 0;
  while (start < length && (value[start] == ' ' || value[start] == '\t')) ++start;
  while (length > start && (value[length - 1] == ' ' || value[length - 1] == '\t')) {
    --length;
  }
  if (start > 0) std::memmove(value, value + start, length - start);
  value[length - start] = '\0';
  return length - start;
}

bool IsHttp11(evhttp_request* req) {
  return req->major > 1 || (req->major == 1 && req->minor >= 1);
}

// Renders a finished inference on the core thread that completed it.
// `binary_mime` (a cloud endpoint's): binary outputs are answered with the content
// type "<binary_mime><json size>" instead of KServe's framing.
const char* MethodName(unsigned cmd) {
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

// "/v2/models/{m}[/versions/{v}]{suffix}" (path without query) -> model, version.
bool MatchModelRoute(const std::string& path, const char* suffix, std::string* model,
                     std::string* version) {
  static const char kPrefix[] = "/v2/models/";
  const std::string kSuffix(suffix);
  const size_t plen = sizeof(kPrefix) - 1, slen = kSuffix.size();
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

enum class Route { kOther, kInfer, kCloudInfer, kGenerate, kGenerateStream };

}  // namespace

// `buffer`'s bytes in one piece, owned by `buffer`. evbuffer_pullup copies every
// chain into a new one before it frees any, so a large body would take twice its
// size at that moment; copying it out a step at a time (each step drains what it
// copied) and handing the copy back as the buffer's only chain peaks at the body
// plus one step. The caller is the buffer's only user. Null when the memory for the
// copy cannot be had (the buffer is then left as it was).
const char* MakeContiguous(evbuffer* buffer) {
  constexpr size_t kStep = size_t{16} << 20;
  constexpr size_t kTrimWhileCopyingBytes = size_t{64} << 20;
  const size_t size = evbuffer_get_length(buffer);
  if (size <= kStep || evbuffer_get_contiguous_space(buffer) == size) {
    return reinterpret_cast<const char*>(evbuffer_pullup(buffer, -1));
  }
  char* data = static_cast<char*>(std::malloc(size));
  if (data == nullptr)
    return reinterpret_cast<const char*>(evbuffer_pullup(buffer, -1));
  size_t done = 0;
  while (done < size) {
    const int n = evbuffer_remove(buffer, data + done, std::min(size - done, kStep));
    if (n <= 0) break;  // cannot happen: the buffer holds `size` bytes
    done += static_cast<size_t>(n);
#ifdef __GLIBC__
    // The drained chains are small blocks that glibc keeps mapped once freed: for
    // a large body, hand them back as we go, or the copy still costs its size
    // twice (1 GiB: 2.0 -> 1.1 GiB at the peak; each trim walks the heap, so not
    // for bodies that cost little anyway).
    if (size >= kTrimWhileCopyingBytes) malloc_trim(0);
#endif
  }
  evbuffer_add_reference(
      buffer, data, done,
      [](const void* bytes, size_t, void*) { std::free(const_cast<void*>(bytes)); },
      nullptr);
  return data;
}

}  // namespace httpfe

void HttpServer::Impl::Handle(Worker* worker, evhttp_request* req) {
  using namespace httpfe;
  const char* uri = evhttp_request_get_uri(req);
  evkeyvalq* in = evhttp_request_get_input_headers(req);
  // An integer, not the enum: libevent's type for an unknown method (1 << 15) lies
  // outside the enum's values (UBSan's "invalid enum load", fuzz_http_server).
  const unsigned cmd = static_cast<unsigned>(evhttp_request_get_command(req));
  if (cmd == kUnknownMethod) {
    // The Python frontend's answer to a method it cannot parse.
    Reply(worker, req, Error(400, "Bad Request", {{"Connection", "close"}}));
    return;
  }

  // Head limits of the Python frontend (evhttp itself only bounds the total).
  size_t head = std::strlen(uri) + std::strlen(MethodName(cmd)) + 13;
  size_t fields = 0;
  bool field_too_long = std::strlen(uri) > kMaxFieldSize;
  for (evkeyval* kv = in->tqh_first; kv != nullptr; kv = kv->next.tqe_next) {
    const size_t key_len = std::strlen(kv->key);
    const size_t value_len = TrimWhitespace(kv->value);
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
    Reply(worker, req,
          Error(431,
                HttpHeadTooLarge(options_.max_header_size, options_.max_header_count),
                {{"Connection", "close"}}));
    return;
  }

  std::string path(HttpOriginForm(uri));
  path = path.substr(0, path.find_first_of("?#"));
  if (VerboseLogging())
    Log(LogLevel::kVerbose, HttpRequestLogLine(MethodName(cmd), path));
  std::string model, version;
  Route route = Route::kOther;
  InferFraming framing;
  if (options_.cloud) {
    // A cloud endpoint: its inference route only, when C++ answers as it does.
    evbuffer* pending = evhttp_request_get_input_buffer(req);
    if (cmd == EVHTTP_REQ_POST &&
        options_.cloud->Accepts(path, in, evbuffer_get_length(pending),
                                &framing.header_length) &&
        CloudModelServable(&framing.model)) {
      route = Route::kCloudInfer;
      framing.cloud = true;
    }
  } else if (cmd == EVHTTP_REQ_POST) {
    if (MatchModelRoute(path, "/infer", &model, &version)) {
      route = Route::kInfer;
    } else if (MatchModelRoute(path, "/generate", &model, &version)) {
      route = Route::kGenerate;
    } else if (MatchModelRoute(path, "/generate_stream", &model, &version)) {
      route = Route::kGenerateStream;
    }
  }
  const bool generate = route == Route::kGenerate || route == Route::kGenerateStream;

  evbuffer* input = evhttp_request_get_input_buffer(req);
  const size_t wire_size = evbuffer_get_length(input);
  if (wire_size > HttpBodyCap(options_.max_input_size)) {  // evhttp's bound
    Reply(worker, req,
          Error(400, HttpBodyTooLarge(HttpBodyCap(options_.max_input_size))));
    return;
  }
  if (wire_size >= kTrimAfterBytes) worker->large_seen = true;

  // The body: moved out of evhttp's buffer without copying its chains, made
  // contiguous, and kept alive by whoever holds a tensor pointing into it.
  std::shared_ptr<const void> owner;
  const char* body = nullptr;
  size_t size = 0;
  const char* encoding_header = evhttp_find_header(in, "Content-Encoding");
  // Cloud endpoints read bodies as sent (their Python frontend answers those).
  const Encoding encoding = encoding_header && !options_.cloud
                                ? RequestEncoding(encoding_header)
                                : Encoding::kIdentity;
  if (generate && encoding != Encoding::kIdentity) {
    // Triton's generate endpoints take no compressed bodies.
    Reply(worker, req,
          Error(400, "Unsupported content-encoding, only 'identity' is supported."));
    return;
  }
  if (encoding != Encoding::kIdentity && wire_size > 0) {
    if (encoding == Encoding::kUnsupported) {
      // text/plain: Triton answers it only for an infer request, before its
      // handler sets a content type.
      Reply(worker, req,
            PlainError(501, HttpUnsupportedCompression(),
                       {{"Accept-Encoding", "gzip, deflate"}}));
      return;
    }
    auto inflated = std::make_shared<std::string>();
    bool too_large = false;
    std::string error;
    const char* wire = reinterpret_cast<const char*>(evbuffer_pullup(input, -1));
    if (wire == nullptr && wire_size != 0) {
      Reply(worker, req, Error(503, HttpBodyOutOfMemory(wire_size)));
      return;
    }
    if (!Inflate(encoding, wire, wire_size, options_.max_input_size, inflated.get(),
                 &too_large, &error)) {
      Reply(worker, req, Error(400, HttpDecompressFailed(error)));
      return;
    }
    if (too_large) {
      Reply(worker, req, Error(400, HttpBodyTooLarge(options_.max_input_size)));
      return;
    }
    body = inflated->data();
    size = inflated->size();
    owner = std::move(inflated);
  } else {
    // The limit bounds the JSON or raw part only (a decompressed body is bounded
    // whole, above), so a body within it is within every bound. A binary size that
    // does not parse is left to the parser, which refuses it.
    if (wire_size > options_.max_input_size) {
      int64_t header_length = framing.cloud ? framing.header_length : -1;
      const char* hlen =
          framing.cloud ? nullptr
                        : evhttp_find_header(in, "Inference-Header-Content-Length");
      size_t parsed = 0;
      if (hlen == nullptr || ParseHeaderLength(hlen, wire_size, &parsed).ok()) {
        if (hlen != nullptr) header_length = static_cast<int64_t>(parsed);
        const std::string refusal =
            HttpInputSizeError(header_length, wire_size, options_.max_input_size);
        if (!refusal.empty()) {
          Reply(worker, req, Error(400, refusal));
          return;
        }
      }
    }
    std::shared_ptr<evbuffer> own(evbuffer_new(), evbuffer_free);
    evbuffer_add_buffer(own.get(), input);
    size = evbuffer_get_length(own.get());
    // A large infer or generate body is made contiguous (a copy) where it is
    // parsed, off the loop; body stays null until then.
    const bool later =
        (route == Route::kInfer || route == Route::kCloudInfer || generate) &&
        size >= kParseOffloadBytes;
    if (!later) {
      body = size ? reinterpret_cast<const char*>(evbuffer_pullup(own.get(), -1)) : "";
      if (body == nullptr) {
        Reply(worker, req, Error(503, HttpBodyOutOfMemory(size)));
        return;
      }
    }
    owner = std::move(own);
  }

  if (route == Route::kInfer) {
    HandleInfer(worker, req, model, version, std::move(owner), body, size);
    return;
  }
  if (route == Route::kCloudInfer) {
    HandleInfer(worker, req, options_.cloud->model(), "", std::move(owner), body, size,
                framing);
    return;
  }
  if (generate) {
    HandleGenerate(worker, req, model, version, route == Route::kGenerateStream,
                   std::move(owner), body, size);
    return;
  }
  if (cmd == EVHTTP_REQ_GET && options_.live_in_cpp && path == "/v2/health/live") {
    Reply(worker, req, Simple(200, "", "text/plain"));
    return;
  }
  HandleControl(worker, req, std::string(body, size));
}

bool HttpServer::Impl::AdmitInfer(Worker* worker, evhttp_request* req) {
  if (options_.infer_header.empty()) return true;
  evkeyvalq* in = evhttp_request_get_input_headers(req);
  const char* value = evhttp_find_header(in, options_.infer_header.c_str());
  if (value != nullptr && options_.infer_value == value) return true;
  Reply(worker, req,
        httpfe::Simple(
            403, "{\"error\":\"" + HttpRestrictedApi(options_.infer_header) + "\"}",
            "text/plain"));
  return false;
}

namespace httpfe {

// What the loop thread reads from an infer request's head before the body is parsed
// (on the loop, or on the parse pool for large bodies, where evhttp's request must
// not be touched).
struct InferHead {
  std::string model_name;            // as in the URL
  std::shared_ptr<Mailbox> mailbox;  // the connection's worker's
  bool has_header_length = false;
  std::string header_length;
  Encoding compression = Encoding::kIdentity;
  std::string binary_mime;  // a cloud endpoint's (RenderReply)
  Status forwarded_status;
  Parameters forwarded;  // --http-header-forward-pattern matches
};

}  // namespace httpfe

bool HttpServer::Impl::CloudModelServable(std::shared_ptr<Model>* model) const {
  Status status = registry_->Find(options_.cloud->model(), "", model);
  if (status.ok())
    status = CheckTransactionPolicy((*model)->spec(), WireProtocol::kHttp);
  return status.ok();
}

void HttpServer::Impl::HandleInfer(Worker* worker, evhttp_request* req,
                                   const std::string& name, const std::string& version,
                                   std::shared_ptr<const void> owner, const char* body,
                                   size_t size, const httpfe::InferFraming& framing) {
  using namespace httpfe;
  const uint64_t received_ns = NowNs();  // for a trace: HTTP_RECV_START
  evkeyvalq* in = evhttp_request_get_input_headers(req);
  if (!AdmitInfer(worker, req)) return;
  // A cloud request's model was found and checked when its route was chosen.
  std::shared_ptr<Model> model = framing.model;
  Status status;
  if (!model) {
    status = registry_->Find(name, version, &model);
    if (status.ok())
      status = CheckTransactionPolicy(model->spec(), WireProtocol::kHttp);
  }
  if (!status.ok()) {
    // Triton finds these before its infer handler sets a content type (so
    // libevhtp's text/plain).
    Reply(worker, req, PlainError(HttpStatusOf(status.code()), status.message()));
    return;
  }
  InferHead head;
  head.model_name = name;
  head.mailbox = worker->mailbox;
  if (framing.cloud) {
    // The content type gave the JSON size; answers are never compressed.
    head.has_header_length = framing.header_length >= 0;
    head.header_length = std::to_string(framing.header_length);
    head.binary_mime = options_.cloud->reply_mime();
  } else {
    if (const char* hlen = evhttp_find_header(in, "Inference-Header-Content-Length")) {
      head.has_header_length = true;
      head.header_length = hlen;
    }
    const char* accept = evhttp_find_header(in, "Accept-Encoding");
    head.compression = accept ? ResponseEncoding(accept) : Encoding::kIdentity;
  }
  if (options_.forward) {
    head.forwarded_status = options_.forward->Forward(in, &head.forwarded);
  }

  std::shared_ptr<PendingCall> call = Track(worker, req);
  call->model = model;
  call->request = std::make_shared<InferenceRequest>();
  call->request->protocol = InferenceRequest::Protocol::kHttp;
  call->request->recv_start_ns = received_ns;
  if (model->Tracing()) ReadTraceContext(in, call->request.get());
  evhttp_connection* conn = evhttp_request_get_connection(req);
  const evutil_socket_t fd = bufferevent_getfd(evhttp_connection_get_bufferevent(conn));
  call->http11 = IsHttp11(req);
  call->closed_ev =
      event_new(worker->base, fd, EV_CLOSED, &Impl::OnPeerClosed, call.get());
  event_add(call->closed_ev, nullptr);
  if (size < kParseOffloadBytes) {
    ParseAndEnqueue(call, head, owner, body, size, /*on_loop=*/true);
    return;
  }
  // Parsing a large JSON body takes long enough (tens of ms for 30 MB) to delay
  // every other connection of this worker: it runs on the parse pool instead.
  auto moved = std::make_shared<InferHead>(std::move(head));
  parse_pool_->Submit([this, call, moved, owner = std::move(owner), body, size] {
    ParseAndEnqueue(call, *moved, owner, body, size, /*on_loop=*/false);
  });
}

void HttpServer::Impl::ParseAndEnqueue(const std::shared_ptr<PendingCall>& call,
                                       httpfe::InferHead& head,
                                       const std::shared_ptr<const void>& owner,
                                       const char* body, size_t size, bool on_loop) {
  using namespace httpfe;
  std::atomic<int64_t>* inflight = &inflight_;
  const std::shared_ptr<Mailbox>& mailbox = head.mailbox;
  // `plain`: answered as text/plain, as Triton answers what it refuses before its
  // infer handler sets a content type.
  auto fail = [&](const Status& status, bool plain = false) {
    const int code = HttpStatusOf(status.code());
    Outgoing out =
        plain ? PlainError(code, status.message()) : Error(code, status.message());
    if (on_loop) {
      SendOnLoop(call, std::move(out), inflight);
    } else {
      PostReply(mailbox, call, std::move(out), inflight);
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
  InferenceRequest* request = call->request.get();
  OutputEncoding encoding;
  size_t hlen = 0;
  Status status;
  if (head.has_header_length) {
    status = ParseHeaderLength(head.header_length.c_str(), size, &hlen);
    if (!status.ok()) return fail(status, /*plain=*/true);
  }
  // Triton takes the body's length as the header's when the header is absent, and a
  // zero header length means a raw body (so an empty body is a raw one).
  if (status.ok() && (head.has_header_length ? hlen : size) == 0) {
    status = DeduceRawInput(model->spec(), body, size, owner, request);
    encoding.default_binary = true;  // a raw request gets binary outputs back
  } else if (status.ok()) {
    status =
        ParseInferBody(body, size, owner, head.has_header_length, hlen, head.model_name,
                       request, &encoding, options_.shared_memory.get());
  }
  if (status.ok()) status = head.forwarded_status;
  if (!status.ok()) return fail(status);
  if (model->Tracing()) request->recv_end_ns = NowNs();
  for (auto& param : head.forwarded) request->parameters.push_back(std::move(param));

  request->SetResponseCallback(
      [call, mailbox, inflight, encoding = std::move(encoding),
       compression = head.compression, id = request->id,
       mime = head.binary_mime](std::unique_ptr<InferenceResponse> result) {
        PostReply(mailbox, call,
                  RenderReply(std::move(result), id, encoding, compression, mime),
                  inflight);
      });
  status = model->Enqueue(call->request);
  // Not taken: the callback will never run (Enqueue dropped it).
  if (!status.ok()) fail(status);
}

void HttpServer::Impl::HandleControl(Worker* worker, evhttp_request* req,
                                     std::string body) {
  HttpControlRequest request;
  request.method = httpfe::MethodName(evhttp_request_get_command(req));
  request.url = HttpOriginForm(evhttp_request_get_uri(req));
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

}  // namespace tritonx
