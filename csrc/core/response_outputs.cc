#include "response_outputs.h"

namespace tritonx {
namespace {

Shape ResolveOutputShape(const TensorSpec& spec, const Shape& produced, bool batched) {
  // Output reshape: the backend produced `reshape`, the client sees `dims`.
  int64_t batch = batched && !produced.empty() ? produced[0] : 0;
  int64_t elements = ElementCount(produced);
  int64_t per_item = batched ? (batch == 0 ? 0 : elements / batch) : elements;
  Shape out = spec.dims;
  int64_t known = 1;
  int wildcard = -1;
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i] == -1) {
      wildcard = static_cast<int>(i);
    } else {
      known *= out[i];
    }
  }
  if (wildcard >= 0) out[wildcard] = known == 0 ? 0 : per_item / known;
  if (batched) out.insert(out.begin(), batch);
  return out;
}

}  // namespace

void ApplyOutputSpec(const ModelSpec& spec, const InferenceRequest& request,
                     InferenceResponse* response) {
  // Keep only outputs the model declares, in the order the client asked for them
  // (all of them in config order when it asked for none), with output reshape undone.
  std::vector<Tensor> produced = std::move(response->outputs);
  std::vector<bool> taken(produced.size(), false);
  std::vector<Tensor> kept;
  auto take = [&](const TensorSpec& output_spec) {
    for (size_t i = 0; i < produced.size(); ++i) {
      if (taken[i] || produced[i].name != output_spec.name) continue;
      Tensor& tensor = produced[i];
      if (output_spec.has_reshape) {
        tensor.shape =
            ResolveOutputShape(output_spec, tensor.shape, spec.max_batch_size > 0);
      }
      taken[i] = true;
      kept.push_back(std::move(tensor));
      return;
    }
  };
  if (request.requested_outputs.empty()) {
    for (const auto& output_spec : spec.outputs) take(output_spec);
  } else {
    for (const auto& name : request.requested_outputs) {
      if (const TensorSpec* output_spec = spec.FindOutput(name)) take(*output_spec);
    }
  }
  response->outputs = std::move(kept);
}

}  // namespace tritonx
