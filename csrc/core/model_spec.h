// ModelSpec: the part of a model's configuration the core needs to check and batch
// requests. Built by the Python config layer from the normalized ModelConfig.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "infer_request.h"
#include "status.h"
#include "tensor.h"

namespace tritonx {

struct TensorSpec {
  std::string name;
  DataType dtype = DataType::kInvalid;
  Shape dims;  // without the batch dim; -1 is a variable dim
  bool optional = false;
  bool has_reshape = false;
  Shape reshape;  // what the backend sees instead of `dims` (batch dim excluded)
  // Outputs: the lines of `label_filename` (classification labels; may be empty).
  std::vector<std::string> labels;
  // Inputs: allow_ragged_batch. Requests batch together whatever this input's shape
  // (it is left out of InferenceRequest::shape_key), and gathering executors get it
  // as one 1-D tensor of every request's elements (Triton's framework backends).
  bool allow_ragged_batch = false;
};

// model_config.proto BatchInput.Kind: a tensor the core makes for each batch from
// the shapes of `source_input` in its requests (backend_input_collector's kinds).
enum class BatchInputKind {
  kElementCount,                     // [requests]: each request's element count
  kAccumulatedElementCount,          // [requests]: running sum of those counts
  kAccumulatedElementCountWithZero,  // [requests + 1]: 0, then the running sum
  kMaxElementCountAsShape,           // [max count]: only the shape carries meaning
  kItemShape,                        // [batch items, rank - 1]: each item's shape
  kItemShapeFlatten,                 // [batch items * (rank - 1)]: the same, flat
};

struct BatchInputSpec {
  BatchInputKind kind = BatchInputKind::kElementCount;
  // Every target name gets the same tensor (Triton feeds each one).
  std::vector<std::string> target_names;
  DataType dtype = DataType::kInt32;  // kInt32 or kFp32 (the config layer checks)
  std::string source_input;
};

// model_config.proto BatchOutput of kind BATCH_SCATTER_WITH_INPUT_SHAPE (the only
// kind): the model returns these outputs with all requests' elements concatenated;
// each request gets its share, shaped like its `source_input` where the output's
// dims are -1 (backend_output_responder's ProcessBatchOutput).
struct BatchOutputSpec {
  std::vector<std::string> target_names;
  std::string source_input;
};

struct ModelSpec {
  std::string name;
  int64_t version = 1;
  int32_t max_batch_size = 0;
  // model_transaction_policy.decoupled: the backend answers each request with 0..N
  // responses through its sender instead of one response per execution.
  bool decoupled = false;
  // response_cache.enable: answers may come from the server's response cache (when
  // it has one; never for decoupled models).
  bool response_cache = false;
  std::vector<TensorSpec> inputs;
  std::vector<TensorSpec> outputs;
  std::vector<BatchInputSpec> batch_inputs;
  std::vector<BatchOutputSpec> batch_outputs;
  // sequence_batching.state output_names: tensors the model returns for the sequence
  // batcher, which keeps each as its sequence's next state. Not in `outputs` and
  // never sent to a client, but sliced per request like a declared output.
  std::vector<std::string> state_outputs;

  const TensorSpec* FindInput(const std::string& name) const;
  const TensorSpec* FindOutput(const std::string& name) const;
  bool IsStateOutput(const std::string& name) const;
  // The batch output whose targets include `output_name`, or null.
  const BatchOutputSpec* FindBatchOutput(const std::string& output_name) const;
  // Whether any input is ragged or any batch input is configured: a batch of one
  // request then still needs gathering (flattening, batch inputs).
  bool HasRaggedBatching() const;
};

// Checks a request against the spec with Triton's rules and messages: known and
// required inputs, data types, shapes (batch dim first when max_batch_size > 0),
// byte sizes, BYTES element counts, requested outputs. On success fills
// request->batch_size and request->shape_key (ragged inputs left out, so requests
// that differ only there batch together), and applies input `reshape`.
Status ValidateRequest(const ModelSpec& spec, InferenceRequest* request);

// "[request id: <id>] ": Triton prefixes the errors it finds while normalizing a
// request (and a few its frontends find) with the request's id.
std::string RequestPrefix(const InferenceRequest& request);

// Triton's "input byte size mismatch" refusal; `model` is the quoted name.
Status InputByteSizeMismatch(const std::string& prefix, const std::string& input,
                             const std::string& model, int64_t expected, uint64_t got);

}  // namespace tritonx
