// What the infer and generate JSON walks (core/infer_json.h, core/generate_json.h)
// decode, as the Python values `build_request` takes. Shared by the walk over
// json.loads' objects (bind_infer_json.cpp) and the generate walk over RapidJSON's
// document (bind_http.cpp, builds with the native HTTP engine).
#pragma once

#include <string>
#include <string_view>
#include <unordered_set>

#include "core/infer_json.h"
#include "core/model_spec.h"
#include "pybind_common.h"

namespace tritonx::bindings {

// Collects the descriptions as build_request takes them: inputs (name, datatype,
// shape, "bytes" | "shm", bytes | slice into the body | (region, offset, size)),
// outputs (name, (region, offset, size) | None, class count). JSON `data` is
// converted to wire bytes here, by the builder's rules, so a helper process hands
// back bytes. An input named twice is refused, as the request builder refuses it.
// Thread-safety: none; one request on one thread, with the GIL held. Owns the
// Python lists it fills.
class PySink final : public InferJsonSink {
 public:
  py::object id = py::str("");
  bool default_binary = false;
  py::list inputs;
  py::list outputs;
  py::dict binary_outputs;
  std::unordered_set<std::string> names;  // of the inputs so far

  void SetId(std::string_view value) override {
    id = py::str(value.data(), value.size());
  }
  void SetDefaultBinary(bool binary) override { default_binary = binary; }
  Status AddInput(InputDescription input, size_t offset) override;
  Status AddOutput(OutputDescription output, int binary) override;
};

// (region, offset, byte size) of a shared-memory reference.
py::tuple ShmTuple(const ShmReference& ref);

// The model spec a generate walk needs, from generate_spec(model)'s plain values.
ModelSpec GenerateSpecFromPy(const py::tuple& given);

// What decode_generate_json returns: (id, inputs, parameters as (key, value) pairs).
py::tuple GenerateDecoded(const PySink& sink, const Parameters& params);

}  // namespace tritonx::bindings
