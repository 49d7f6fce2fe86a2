// Triton's generate extension (POST .../generate and .../generate_stream): the
// request JSON -> an InferenceRequest, and one response -> its JSON object. The
// rules and messages are Triton 2.51's, as observed on the reference server:
//
// * The body is one JSON object, read member by member in document order. A key
//   naming a model input becomes that input; `parameters` (an object) gives request
//   parameters; every other key, `id` included, becomes a request parameter too
//   (string, int, bool or double; anything else is refused). A string `id` is also
//   the request id. Reserved parameter names (`priority`, `triton_*`...) are not
//   interpreted: they reach the backend as they are, as in Triton.
// * An input's value is a scalar (one element) or an array (as many elements as it
//   has items; nested arrays are then checked against the shape like `data`). Its
//   shape is the model config's dims, with the batch dim first when the model
//   batches; the innermost variable dim takes what the element count leaves, every
//   other variable dim (the batch dim among them) is 1; an element count that fits
//   no such shape is refused ("The schema can not convert input ...").
// * A response is `{"id"?, "model_name", "model_version", <output>: <value>...}`
//   with keys in byte order; an output with one element is written as a scalar,
//   otherwise as the flat list of its elements.
//
// Stateless functions; safe from any thread.
#pragma once

#include <cstddef>
#include <string>

#include "core/infer_request.h"
#include "core/model_spec.h"
#include "core/status.h"

namespace tritonx {
namespace httpfe {

// What Triton's generate answers when a model did not produce exactly one response.
inline constexpr char kGenerateOneResponse[] =
    "generate expects model to produce exactly 1 response, use generate stream for "
    "model that generates various number of responses";

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
