// What the infer and generate JSON walks (core/infer_json.h, core/generate_json.h)
// decode, as the Python values `build_request` takes. Shared by the walk over
// json.loads' objects (bind_infer_json.cpp) and the walks over RapidJSON's document
// (bind_http.cpp, builds with the native HTTP engine).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "core/infer_json.h"
#include "core/model_spec.h"
#include "pybind_common.h"

namespace tritonx::bindings {

// Collects the descriptions as plain C++ values, JSON `data` already converted to
// wire bytes by the builder's rules, so that a walk over RapidJSON's document runs
// with the GIL released (a 30 MB body is parsed, walked and converted while the
// event loop goes on); the *ToPy functions below make the Python values afterwards.
// An input named twice is refused, as the request builder refuses it.
// Thread-safety: none; one request on one thread. Needs no GIL. Owns what it holds
// (nothing points into the document once AddInput returns).
class DescriptionSink final : public InferJsonSink {
 public:
  struct Input {
    std::string name;
    std::string datatype;
    Shape shape;
    InputDescription::Source source = InputDescription::Source::kBytes;
    std::string wire;   // kJson: the data as wire bytes
    size_t offset = 0;  // kBytes: where its bytes start in the body
    size_t size = 0;    // kBytes: how many
    ShmReference shm;   // kSharedMemory
  };
  struct Output {
    OutputDescription description;
    int binary = -1;  // its `binary_data` flag (-1: not given)
  };

  std::string id;
  bool default_binary = false;
  std::vector<Input> inputs;
  std::vector<Output> outputs;

  void SetId(std::string_view value) override { id = std::string(value); }
  void SetDefaultBinary(bool binary) override { default_binary = binary; }
  Status AddInput(InputDescription input, size_t offset) override;
  Status AddOutput(OutputDescription output, int binary) override;

 private:
  std::unordered_set<std::string> names_;  // of the inputs so far
};

// build_request's inputs: (name, datatype, shape, "bytes" | "shm", buffer | slice
// into the body | (region, offset, size)); JSON data's wire bytes move into
// read-only buffer objects (WireBytes), never copied.
py::list InputsToPy(DescriptionSink& sink);
// build_request's outputs: (name, (region, offset, size) | None, class count).
py::list OutputsToPy(const DescriptionSink& sink);
// The outputs' own `binary_data` flags, by name (the last one given wins).
py::dict BinaryOutputsToPy(const DescriptionSink& sink);

// The model spec a generate walk needs, from generate_spec(model)'s plain values.
ModelSpec GenerateSpecFromPy(const py::tuple& given);

// What decode_generate_json returns: (id, inputs, parameters as (key, value) pairs).
py::tuple GenerateDecoded(DescriptionSink& sink, const Parameters& params);

// What decode_infer_json returns: (id, default_binary, inputs, outputs,
// binary_outputs, parameters | None, error | None).
py::tuple InferDecoded(DescriptionSink& sink, const Parameters& params,
                       const Status& status);

}  // namespace tritonx::bindings
