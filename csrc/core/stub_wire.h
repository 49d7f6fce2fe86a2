// The execute messages that travel through a StubRing (stub_ring.h): what the server
// writes for a batch and what the stub answers. Tensor bytes are not in the messages:
// a tensor is named by (offset, byte count) in the writer's data area. Both ends are
// this code (the stub loads the same extension), so the encoding is private to it.
// Plain functions and values; thread safe.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "infer_request.h"
#include "status.h"
#include "stub_ring.h"

namespace tritonx::stub {

struct WireTensor {
  std::string_view name;
  std::string_view datatype;
  std::vector<int64_t> shape;
  uint64_t offset = 0;
  uint64_t bytes = 0;
};

// One request as the stub sees it (views into the message).
struct WireRequest {
  // The server's name for the request while the stub may still answer it: a
  // decoupled model's senders name their request by it (StubExecutor::SendResponse).
  uint64_t key = 0;
  std::string_view id;
  bool correlation_is_string = false;
  uint64_t correlation_id = 0;
  std::string_view correlation_id_str;
  uint32_t flags = 0;
  uint64_t timeout_us = 0;
  uint64_t trace_id = 0;  // the request's trace (0: not traced), for BLS children
  // OpenTelemetry mode: the request's span context (RequestTrace::OtelContext), what
  // request.trace().get_context() returns in the stub; empty otherwise.
  std::string_view trace_context;
  std::vector<std::string_view> requested_outputs;
  Parameters parameters;
  std::vector<WireTensor> inputs;
};

// One request's answer: an error, or outputs and response parameters.
struct WireResponse {
  Status status;
  std::vector<WireTensor> outputs;
  Parameters parameters;
};

// The stub's answer to an execute: a response per request, or an error for the
// whole batch (execute raised; a decoupled model's stub may have sent that error to
// its open requests on the response stream already, marked in answered_by_sender).
struct WireReply {
  Status batch_status;
  std::vector<WireResponse> responses;
  // The requests (by index) the backend rescheduled (iterative sequences): they run
  // again instead of being answered; a decoupled stub sends only these.
  std::vector<uint32_t> rescheduled;
  // The requests (by index) left to their response senders: their answer comes on
  // the response stream (stub_stream.h), maybe after this reply. A non-decoupled
  // model's, in a successful reply: their entry in `responses` is empty. A
  // decoupled model's, in a failed reply: the stub ended each of them on the stream
  // (with the batch's error unless its sender had closed it).
  std::vector<uint32_t> answered_by_sender;
};

void WriteTensor(MessageWriter& w, const WireTensor& t);
void WriteParameters(MessageWriter& w, const Parameters& params);
// The request message for `requests` (keys first_key, first_key + 1, ...), whose
// inputs were laid out one after another from data offset 0, each padded to
// kTensorAlign. Returns their total size.
size_t WriteRequests(MessageWriter& w, const std::vector<RequestPtr>& requests,
                     uint64_t first_key);
bool ReadRequests(std::string_view message, std::vector<WireRequest>* out);

// Reply: WriteReplyHeader, then per response WriteError or WriteOutputs, then
// WriteRequestMarks (always, maybe empty); or WriteBatchError alone.
void WriteBatchError(MessageWriter& w, const Status& status,
                     const std::vector<uint32_t>& answered_by_sender);
void WriteReplyHeader(MessageWriter& w, uint32_t count);
void WriteError(MessageWriter& w, const Status& status);
void WriteOutputs(MessageWriter& w, const std::vector<WireTensor>& outputs,
                  const Parameters& params);
void WriteRequestMarks(MessageWriter& w, const std::vector<uint32_t>& rescheduled,
                       const std::vector<uint32_t>& answered_by_sender);
bool ReadReply(std::string_view message, WireReply* out);
// How a response's outputs lie in a data area: one after another from `first`, each
// padded to kTensorAlign, appended to `outputs` (names point into `response`).
// Returns where they end.
uint64_t DescribeOutputs(const InferenceResponse& response, uint64_t first,
                         std::vector<WireTensor>* outputs);
// Copies the outputs' bytes into `base` in that layout, from `*offset` on (advanced
// past them); GPU outputs come to the host, as device memory does not cross
// processes.
Status CopyOutputs(const InferenceResponse& response, char* base, uint64_t* offset);
// The tensor `out` names in a data area of `area_bytes`: name, datatype, shape and
// byte count (not the data pointer). False when its datatype is unknown, its bytes
// lie past the area, its shape has a negative dim or overflows, or (fixed-size
// datatypes) its bytes do not fill its shape exactly: a peer's mistake, never read.
bool TensorFromWire(const WireTensor& out, uint64_t area_bytes, Tensor* tensor);
// One response as WriteError or WriteOutputs wrote it (stub_stream.h uses it too).
bool ReadResponse(MessageReader& r, WireResponse* out);

}  // namespace tritonx::stub
