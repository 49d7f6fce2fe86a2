// Template part of fuzz_models.h.
#pragma once

#include <utility>

#include "core/response_cache.h"
#include "core/tensor.h"

namespace tritonx::fuzz {

template <typename Render>
void RunAsServer(const ModelSpec& spec, InferenceRequest* request, Render&& render) {
  const Status valid = ValidateRequest(spec, request);
  Trace("validate", valid);
  if (!valid.ok()) return;
  (void)ResponseCache::Key(*request);
  InferenceResponse response;
  response.model_name = spec.name;
  response.model_version = spec.version;
  response.id = request->id;
  size_t next_output = 0;
  for (const Tensor& input : request->inputs) {
    if (input.dtype == DataType::kBytes && input.on_host()) {
      size_t total = 0;
      ForEachBytesElement(input.data, input.byte_size,
                          [&total](const char*, size_t size) { total += size; });
    }
    Tensor output = input;
    output.name = spec.outputs[next_output % spec.outputs.size()].name;
    ++next_output;
    response.outputs.push_back(std::move(output));
  }
  render(response);
}

}  // namespace tritonx::fuzz
