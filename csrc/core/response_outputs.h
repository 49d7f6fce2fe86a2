// What a response carries back to the client: the outputs the request asked for (all
// of the model's, in config order, when it named none), in its order, with each
// output's `reshape` undone. Applied to every OK response as it is sent
// (InferenceRequest::Send), whichever scheduler or sender produced it.
#pragma once

#include "infer_request.h"
#include "model_spec.h"

namespace tritonx {

// Drops outputs the model does not declare or the request did not ask for, orders
// the rest, and restores the client-visible shape of reshaped outputs.
void ApplyOutputSpec(const ModelSpec& spec, const InferenceRequest& request,
                     InferenceResponse* response);

}  // namespace tritonx
