// Triton's rules for request-level parameters, applied once for HTTP and gRPC.
#pragma once

#include "infer_request.h"
#include "status.h"

namespace tritonx {

// Moves the scheduling parameters out of `given` into the request (`priority`,
// `timeout`, `sequence_id`, `sequence_start`, `sequence_end`), rejects the other
// reserved names and keeps the rest as custom parameters. Reserved, as Triton
// 2.51's frontends have it: any `triton_` prefix (gRPC allows
// `triton_enable_empty_final_response`, with its own wording of the refusal);
// `headers` and `binary_data_output` are custom parameters like any other (the
// HTTP codec consumes `binary_data_output` first). `request->protocol` says which
// frontend built the request; the value types each protocol allows are checked by
// its codec (infer_json.h, grpc/infer_codec.cc).
Status ApplyRequestParameters(Parameters given, InferenceRequest* request);

// Triton's refusal of a reserved key (`triton_` prefix; gRPC allows
// `triton_enable_empty_final_response`), or OK. Its frontends check it per key
// before the key's value.
Status ReservedParameter(const std::string& key, InferenceRequest::Protocol protocol);

// The first error ApplyRequestParameters would return for a request built by
// `protocol`, without building one: a frontend that must refuse bad parameters
// before it reads the inputs (Triton's order) calls it as soon as it has them.
Status CheckRequestParameters(const Parameters& given,
                              InferenceRequest::Protocol protocol);

}  // namespace tritonx
