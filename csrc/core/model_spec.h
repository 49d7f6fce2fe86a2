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

  const TensorSpec* FindInput(const std::string& name) const;
  const TensorSpec* FindOutput(const std::string& name) const;
};

// Checks a request against the spec with Triton's rules and messages: known and
// required inputs, data types, shapes (batch dim first when max_batch_size > 0),
// byte sizes, BYTES element counts, requested outputs. On success fills
// request->batch_size and request->shape_key, and applies input `reshape`.
Status ValidateRequest(const ModelSpec& spec, InferenceRequest* request);

}  // namespace tritonx
