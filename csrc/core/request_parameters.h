// Triton's rules for request-level parameters, applied once for HTTP and gRPC.
#pragma once

#include "infer_request.h"
#include "status.h"

namespace tritonx {

// Moves the scheduling parameters out of `given` into the request (`priority`,
// `timeout`, `sequence_id`, `sequence_start`, `sequence_end`), rejects the other
// reserved names (`headers`, `binary_data_output`, any `triton_` prefix except
// `triton_enable_empty_final_response`) and keeps the rest as custom parameters.
Status ApplyRequestParameters(Parameters given, InferenceRequest* request);

}  // namespace tritonx
