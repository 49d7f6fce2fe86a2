// What a response carries back to the client: the outputs the request asked for (all
// of the model's when it named none) in the order the model produced them (Triton's
// order), with each output's `reshape` undone and the classification extension
// applied. Applied to every OK response as it is sent (InferenceRequest::Send),
// whichever scheduler or sender produced it: the one place these rules live for
// both protocols.
#pragma once

#include <string>
#include <vector>

#include "infer_request.h"
#include "model_spec.h"

namespace tritonx {

// Drops outputs the model does not declare or the request did not ask for, restores
// the client-visible shape of reshaped outputs and replaces outputs asked for with a
// class count by their classification. An error (an output type that cannot be
// classified) fails the whole response, as in Triton.
Status ApplyOutputSpec(const ModelSpec& spec, const InferenceRequest& request,
                       InferenceResponse* response);

// Where each output of an OK response reaches its consumer: a GPU output the
// request does not keep on the device (InferenceRequest::KeepsOnDevice) is copied
// to host memory here, once (tensor_memory.h). Applied by Send after
// ApplyOutputSpec, so frontends, ensembles and every other C++ consumer see host
// bytes. INTERNAL when a copy fails (or CUDA is not built).
Status PlaceOutputs(const InferenceRequest& request, InferenceResponse* response);

// Triton's classification extension: the `count` largest values of `output` (per
// batch item when `batched`) as BYTES "value:index[:label]", shape [batch, k] or [k]
// with k = min(count, values per item). Ties keep the lower index first.
Status Classify(const Tensor& output, uint32_t count, bool batched,
                const std::vector<std::string>& labels, Tensor* result);

}  // namespace tritonx
