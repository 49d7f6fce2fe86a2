// Triton's generate extension on the native engine: the request JSON (RapidJSON) ->
// an InferenceRequest through the walk both engines share (core/generate_json.h,
// which has the request rules), and one response -> its JSON object:
// `{"id"?, "model_name", "model_version", <parameter or output>: <value>...}` with
// keys in byte order, the first of a repeated key winning (reserved keys, then
// parameters, then outputs, as Triton's std::map fills them); an output with one
// element is written as a scalar, otherwise as the flat list of its elements.
//
// Stateless functions; safe from any thread.
#pragma once

#include <cstddef>
#include <string>

#include "core/generate_json.h"
#include "core/infer_request.h"
#include "core/model_spec.h"
#include "core/status.h"

namespace tritonx {
namespace httpfe {

// Fills `out` (inputs with their own copies of the data, id, parameters) from a
// generate body for the model `spec`.
Status ParseGenerateBody(const char* body, size_t size, const ModelSpec& spec,
                         InferenceRequest* out);

// One OK response as the generate JSON object; `request_id` is used when the
// response carries no id of its own.
Status RenderGenerateResponse(const InferenceResponse& response,
                              const std::string& request_id, std::string* json);

}  // namespace httpfe
}  // namespace tritonx
