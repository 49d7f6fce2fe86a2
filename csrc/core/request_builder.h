// The one path from a decoded wire request to a core InferenceRequest.
//
// Each codec (gRPC's infer_codec, the native HTTP engine's http_infer_codec, the
// Python HTTP engine through tritonx._native.build_request) only decodes its wire
// format into the neutral descriptions below, in the order it reads them; the
// builder applies every rule that is not about the wire syntax, once for all of
// them: the datatype check and its per-protocol wording, JSON `data` values to
// wire bytes (element kinds, counts, FP16/BF16), shared memory references
// (--allow-client-shm, region and range), classification counts, shared memory
// output targets and the request parameters' reserved names. Raw-body shape
// deduction and the decoupled check are free functions here too.
//
// Thread safety: a RequestBuilder is used by one thread for one request.
// Ownership: it writes into the InferenceRequest it was given (not owned); the
// tensors it makes own their bytes or hold the description's owner or the region.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "infer_request.h"
#include "model_spec.h"
#include "shared_memory_registry.h"
#include "status.h"

namespace tritonx {

using WireProtocol = InferenceRequest::Protocol;

// A tensor's `shared_memory_region` / `_offset` / `_byte_size`, as decoded.
struct ShmReference {
  std::string region;
  uint64_t offset = 0;
  uint64_t byte_size = 0;
};

// One leaf of a JSON `data` array, as the JSON reader typed it. Integers that fit
// int64 are kInt, larger ones up to uint64 kUint, anything past that a kDouble (as
// RapidJSON reads them). `text` points into the decoder's document.
struct JsonScalar {
  enum class Type : uint8_t { kBool, kInt, kUint, kDouble, kString, kOther };
  Type type = Type::kOther;
  bool b = false;
  int64_t i = 0;
  uint64_t u = 0;
  double d = 0;
  std::string_view text;
};

struct InputDescription {
  enum class Source : uint8_t {
    kBytes,         // [data, data + byte_size), alive while `owner` lives
    kJson,          // `json`: the flattened leaves of `data`
    kSharedMemory,  // `shm`
    kMissing,       // the wire carries no data for it (gRPC)
  };
  std::string name;
  std::string_view datatype;  // as sent; valid during AddInput
  Shape shape;
  Source source = Source::kBytes;
  const char* data = nullptr;
  size_t byte_size = 0;
  std::shared_ptr<const void> owner;
  bool json_is_array = true;  // kJson: `data` was an array (Triton insists)
  std::vector<JsonScalar> json;
  ShmReference shm;
};

struct OutputDescription {
  std::string name;
  bool to_shm = false;
  ShmReference shm;
  uint32_t class_count = 0;  // classification extension; 0: the values
};

class RequestBuilder {
 public:
  // `model_name` words messages; `shm` null refuses every shared memory reference
  // as --allow-client-shm=false does.
  RequestBuilder(InferenceRequest* out, WireProtocol protocol, std::string model_name,
                 const SharedMemoryRegistry* shm);

  // In the order the codec decodes them; the first error ends the request.
  Status AddInput(InputDescription input);
  // `targets` receives the resolved shared memory target of an output that has one.
  Status AddOutput(OutputDescription output, ShmOutputs* targets);
  // The request-level parameters as decoded (Triton's reserved-name rules).
  Status SetParameters(Parameters parameters);

 private:
  Status ResolveShm(const ShmReference& ref, ShmUse use, ShmSpan* span) const;

  InferenceRequest* out_;
  WireProtocol protocol_;
  std::string model_name_;
  const SharedMemoryRegistry* shm_;
};

// The datatype of an input as a wire name. An unknown name is refused here only for
// in-process callers (WireProtocol::kNone; Request(...) from Python); from a wire
// `*out` is kInvalid: HTTP JSON `data` refuses it where Triton reads the type
// (JsonDataToWire), everything else in the core's ValidateRequest, as Triton's core.
Status ParseDataType(std::string_view datatype, const std::string& input,
                     WireProtocol protocol, DataType* out);

// An input's JSON `data` leaves (`input.json`, `input.json_is_array`) as the wire
// bytes of `dtype` for `shape`, with Triton's checks in its order: FP16/BF16, an
// array, each element's JSON type, the count, unsigned values; nothing is read for
// a shape without elements. Used by AddInput, and by the Python HTTP engine's
// infer JSON walk (bind_infer_json.cpp) to convert where it decodes (a helper
// process for large bodies).
Status JsonDataToWire(const std::string& name, DataType dtype, const Shape& shape,
                      const InputDescription& input, std::string* out);

// UNSUPPORTED when `protocol` cannot answer `spec`'s model: one-response endpoints
// (HTTP infer, gRPC ModelInfer) refuse decoupled models with Triton's message.
Status CheckTransactionPolicy(const ModelSpec& spec, WireProtocol protocol);

// "[request id: <id>] input '<name>' already exists in request": Triton refuses the
// second input of a name as it is added, before any of its data is read.
Status InputAlreadyExists(const std::string& request_id, const std::string& input);

// A body that is the raw bytes of the model's only input (HTTP's
// `Inference-Header-Content-Length: 0`, or an empty body): its shape is deduced from
// the config as Triton's core does (one variable dim, whole elements; BYTES: the
// whole body as one element of an input of shape [1]), with its messages.
Status DeduceRawInput(const ModelSpec& spec, const char* body, size_t body_size,
                      const std::shared_ptr<const void>& owner, InferenceRequest* out);

// A string value that is not UTF-8 (a lone surrogate escape): INVALID_ARG with
// RapidJSON's wording, which Triton answers.
Status InvalidSurrogate();

}  // namespace tritonx
