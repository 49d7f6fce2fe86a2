// The KServe v2 infer request JSON (HTTP's `/infer` body, or the JSON header of a
// binary-extension body), walked once for both HTTP engines.
//
// Triton's HTTP frontend checks the decoded JSON in one order with one set of
// messages: which members must be there and of which JSON type, one data source per
// input, the binary-extension sizes, the request parameters' types, output
// parameters. That walk lives here, once, written against a small JSON reader
// interface (the `Json` template argument below) so that it does not depend on the
// library that parsed the text: the native engine (csrc/http) instantiates it over
// RapidJSON, the Python engine (`_native.decode_infer_json`, bind_infer_json.cpp)
// over the objects Python's json module made, so builds without RapidJSON keep the
// same checks. What the walk decodes goes, in request order, to an InferJsonSink:
// the native engine's feeds the RequestBuilder directly; the Python engine's
// collects descriptions for the builder (the walk may run in a helper process).
//
// A `Json` reader provides, for a copyable node handle `Json::Value`:
//   static JsonKind Kind(Value v);
//   static bool Bool(Value v);                        // kBool
//   static int64_t Int(Value v);                      // kInt
//   static uint64_t Uint(Value v);                    // kUint
//   static double Double(Value v);                    // kDouble
//   static Status Text(Value v, std::string_view* s); // kString; fails if not UTF-8
//   static bool Find(Value obj, const char* key, Value* out);  // present, maybe null
//   static size_t Size(Value v);                      // kArray / kObject
//   template <class F> static Status Elements(Value array, F f);   // f(Value)
//   template <class F> static Status Members(Value obj, F f);  // f(string_view, Value)
//   static Status DataLeaves(Value data, InputDescription* input);  // `data`, kJson
// Numbers are typed as RapidJSON types them: an integer that fits int64 is kInt,
// one up to UINT64_MAX kUint, anything else (fractions, exponents, larger
// integers) kDouble.
//
// Stateless functions; safe from any thread.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "infer_request.h"
#include "request_builder.h"
#include "request_parameters.h"
#include "status.h"

namespace tritonx {

enum class JsonKind : uint8_t {
  kNull,
  kBool,
  kInt,
  kUint,
  kDouble,
  kString,
  kArray,
  kObject
};

// Inputs, and requested outputs, one request may name. Triton has no such limit,
// but a request naming more tensors than any model has cannot succeed, and each one
// costs work before the core can refuse it.
inline constexpr size_t kMaxRequestTensors = 4096;

// Request JSON of this many bytes or more is parsed off the event loop by both HTTP
// engines (the native one's parse pool, the Python one's decode threads): parsing
// costs ~10 ms per MB, which every other connection of that loop would wait for.
// Below it the Python engine's reader keeps the GIL: releasing it for a few
// microseconds of parsing can leave the loop waiting a switch interval (5 ms) for a
// model's thread.
inline constexpr size_t kJsonOffLoopBytes = size_t{256} << 10;

// Where the body's parts are: with `has_header_length` the first `header_length`
// bytes are the JSON and binary inputs follow; otherwise the body is all JSON.
struct InferBodyLayout {
  bool has_header_length = false;
  size_t header_length = 0;
  size_t body_size = 0;
};

// What the walk decodes, in request order. Used by one thread for one request.
class InferJsonSink {
 public:
  virtual ~InferJsonSink() = default;
  // The request's `id` (only when given), first.
  virtual void SetId(std::string_view id) = 0;
  // The request parameter `binary_data_output`.
  virtual void SetDefaultBinary(bool binary) = 0;
  // One input. A binary-extension input has source kBytes and `byte_size` set; its
  // bytes start at `binary_offset` into the body (the sink points `data` there).
  virtual Status AddInput(InputDescription input, size_t binary_offset) = 0;
  // One requested output; `binary`: its `binary_data` flag (-1: not given).
  virtual Status AddOutput(OutputDescription output, int binary) = 0;
};

// --- Triton's messages (infer_json.cc) -------------------------------------------
// "Unable to parse 'm': attempt to access non-existing object member 'm'" (INTERNAL).
Status JsonMissingMember(std::string_view member);
// "Unable to parse 'm': attempt to access JSON <what>" (INTERNAL unless `code`).
Status JsonWrongType(std::string_view member, std::string_view what,
                     StatusCode code = StatusCode::kInternal);
// The same for an unsigned integer member, as INVALID_ARG.
Status JsonNotUnsigned(std::string_view member);
// A body whose JSON could not be parsed: "failed to parse the request JSON buffer:
// <detail>" (INTERNAL); nesting past what either engine parses; bad UTF-8.
Status JsonParseFailure(std::string_view detail);
Status JsonTooDeep();
Status JsonInvalidEncoding();
// `Inference-Header-Content-Length` with atoi semantics; it must lie in
// [0, body_size] (INVALID_ARG with Triton's message otherwise).
Status ParseHeaderLength(std::string_view value, size_t body_size, size_t* out);

namespace infer_json {  // the walk's pieces that need no JSON reader

inline constexpr const char* kNotString = "non-string as string";
inline constexpr const char* kNotArray = "non-array as array";
inline constexpr const char* kNotBool = "non-boolean as boolean";
inline constexpr const char* kNotUnsigned = "non-unsigned-integer as unsigned-integer";

Status CheckCount(size_t count, const char* what);
// Exactly one of `data`, `binary_data_size`, `shared_memory_region` per input.
Status CheckOneSource(bool has_data, bool has_binary, bool has_shm);
Status DimTooLarge(uint64_t dim, const std::string& input);
// A binary input's size against the header length and the rest of the body.
Status CheckBinarySize(uint64_t bytes, const std::string& input,
                       const InferBodyLayout& layout, size_t offset,
                       const std::string& model);
Status ExtraBinaryData(const std::string& model);
Status ParameterInvalidType(const std::string& key);
Status OutputShmAndBinary();
Status OutputShmAndClasses();
Status NotBoolBinaryData();  // beside a shared memory region
Status NotUnsignedClassification();
Status NotRequestParameters();

}  // namespace infer_json

// A custom request parameter as Triton types it: string, int64, other numbers as
// double, bool; anything else is INVALID_ARG ("parameter 'k' has invalid type...").
template <class Json>
Status DecodeCustomParameter(const std::string& key, typename Json::Value value,
                             ParameterValue* out) {
  switch (Json::Kind(value)) {
    case JsonKind::kString: {
      std::string_view text;
      Status status = Json::Text(value, &text);
      if (status.ok()) *out = std::string(text);
      return status;
    }
    case JsonKind::kBool:
      *out = Json::Bool(value);
      return Status::Ok();
    case JsonKind::kInt:
      *out = Json::Int(value);
      return Status::Ok();
    case JsonKind::kUint:  // integers beyond int64 are kept as doubles, as Triton does
      *out = static_cast<double>(Json::Uint(value));
      return Status::Ok();
    case JsonKind::kDouble:
      *out = Json::Double(value);
      return Status::Ok();
    default:
      return infer_json::ParameterInvalidType(key);
  }
}

// A request parameter as Triton's HTTP frontend types it: `priority` and `timeout`
// unsigned, `sequence_id` unsigned or string, `sequence_start`/`_end` bool; any
// other key as DecodeCustomParameter.
template <class Json>
Status DecodeRequestParameter(const std::string& key, typename Json::Value value,
                              ParameterValue* out) {
  using infer_json::kNotBool;
  using infer_json::kNotString;
  const JsonKind kind = Json::Kind(value);
  const bool is_unsigned =
      kind == JsonKind::kUint || (kind == JsonKind::kInt && Json::Int(value) >= 0);
  const auto as_unsigned = [&] {
    return kind == JsonKind::kInt ? static_cast<uint64_t>(Json::Int(value))
                                  : Json::Uint(value);
  };
  if (key == "priority" || key == "timeout") {
    if (!is_unsigned) return JsonNotUnsigned(key);
    *out = as_unsigned();
    return Status::Ok();
  }
  if (key == "sequence_id" && is_unsigned) {
    *out = as_unsigned();
    return Status::Ok();
  }
  if (key == "sequence_id" && kind != JsonKind::kString) {
    return JsonWrongType(key, kNotString, StatusCode::kInvalidArg);
  }
  if ((key == "sequence_start" || key == "sequence_end") && kind != JsonKind::kBool) {
    return JsonWrongType(key, kNotBool, StatusCode::kInvalidArg);
  }
  return DecodeCustomParameter<Json>(key, value, out);
}

namespace infer_json {

template <class Json>
using V = typename Json::Value;

// Triton walks an object's member names in order, repeats included, and reads each
// name's value by a lookup (TritonJson's Find): the first member of that name. So
// a repeated parameter gets its first value each time, and generate refuses a
// repeated input (added twice). A name holding a NUL, which that lookup's C string
// would cut, keeps its own value.
template <class Json>
typename Json::Value FirstOfName(typename Json::Value obj, const std::string& name,
                                 typename Json::Value own) {
  typename Json::Value first = own;
  if (name.find('\0') == std::string::npos) Json::Find(obj, name.c_str(), &first);
  return first;
}

template <class Json>
bool Unsigned(V<Json> v, uint64_t* out) {
  switch (Json::Kind(v)) {
    case JsonKind::kInt:
      if (Json::Int(v) < 0) return false;
      *out = static_cast<uint64_t>(Json::Int(v));
      return true;
    case JsonKind::kUint:
      *out = Json::Uint(v);
      return true;
    default:
      return false;
  }
}

// A string member that must be there: Triton's missing / wrong-type errors (null is
// there, of the wrong type, as in Triton).
template <class Json>
Status RequiredText(V<Json> obj, const char* key, std::string_view* out) {
  V<Json> value{};
  if (!Json::Find(obj, key, &value)) return JsonMissingMember(key);
  if (Json::Kind(value) != JsonKind::kString) return JsonWrongType(key, kNotString);
  return Json::Text(value, out);
}

// Triton's reading of `shared_memory_region`, `shared_memory_offset` (default 0)
// and `shared_memory_byte_size` (default 0; the registry judges the range). Triton
// reads (and type-checks) them for every tensor that is not binary data, with a
// region or without one.
template <class Json>
Status DecodeShm(V<Json> params, ShmReference* ref) {
  V<Json> name{};
  if (Json::Find(params, "shared_memory_region", &name)) {
    if (Json::Kind(name) != JsonKind::kString) {
      return JsonWrongType("shared_memory_region", kNotString);
    }
    std::string_view region;
    Status status = Json::Text(name, &region);
    if (!status.ok()) return status;
    ref->region = std::string(region);
  }
  for (auto [key, out] :
       {std::pair<const char*, uint64_t*>{"shared_memory_offset", &ref->offset},
        {"shared_memory_byte_size", &ref->byte_size}}) {
    V<Json> value{};
    if (!Json::Find(params, key, &value)) continue;
    if (!Unsigned<Json>(value, out)) return JsonWrongType(key, kNotUnsigned);
  }
  return Status::Ok();
}

template <class Json>
Status DecodeShape(V<Json> shape, const std::string& input, Shape* out) {
  out->reserve(Json::Size(shape));
  return Json::Elements(shape, [&](V<Json> dim) {
    uint64_t d = 0;
    if (Unsigned<Json>(dim, &d)) {
      if (d > static_cast<uint64_t>(INT64_MAX)) return DimTooLarge(d, input);
      out->push_back(static_cast<int64_t>(d));
      return Status::Ok();
    }
    // An integer past uint64, which RapidJSON reads as a double.
    if (Json::Kind(dim) == JsonKind::kDouble) {
      const double d = Json::Double(dim);
      if (d >= 1.8446744073709552e19 && std::floor(d) == d) {
        return JsonNotUnsigned("shape");
      }
    }
    return JsonWrongType("shape", kNotUnsigned);
  });
}

template <class Json>
Status DecodeInput(V<Json> item, const InferBodyLayout& layout,
                   const std::string& model, size_t* offset, InferJsonSink* sink) {
  // Triton looks for the data members first; an element that is no object has
  // none of them.
  if (Json::Kind(item) != JsonKind::kObject) return CheckOneSource(false, false, false);
  V<Json> iparams{};
  const bool params_obj = Json::Find(item, "parameters", &iparams) &&
                          Json::Kind(iparams) == JsonKind::kObject;
  V<Json> unused{};
  const bool has_data = Json::Find(item, "data", &unused);
  const bool has_binary =
      params_obj && Json::Find(iparams, "binary_data_size", &unused);
  const bool has_shm =
      params_obj && Json::Find(iparams, "shared_memory_region", &unused);
  Status status = CheckOneSource(has_data, has_binary, has_shm);
  if (!status.ok()) return status;
  std::string_view name, datatype;
  status = RequiredText<Json>(item, "name", &name);
  if (!status.ok()) return status;
  // The datatype stays a view into the document, which outlives the sink's call.
  status = RequiredText<Json>(item, "datatype", &datatype);
  if (!status.ok()) return status;
  V<Json> shape{};
  if (!Json::Find(item, "shape", &shape)) return JsonMissingMember("shape");
  if (Json::Kind(shape) != JsonKind::kArray) return JsonWrongType("shape", kNotArray);

  InputDescription input;
  input.name = std::string(name);
  input.datatype = datatype;
  status = DecodeShape<Json>(shape, input.name, &input.shape);
  if (!status.ok()) return status;
  size_t binary_offset = 0;
  if (has_shm) {
    input.source = InputDescription::Source::kSharedMemory;
    status = DecodeShm<Json>(iparams, &input.shm);
  } else if (has_binary) {
    V<Json> size{};
    Json::Find(iparams, "binary_data_size", &size);
    uint64_t bytes = 0;
    if (!Unsigned<Json>(size, &bytes)) {
      return JsonWrongType("binary_data_size", kNotUnsigned);
    }
    status = CheckBinarySize(bytes, input.name, layout, *offset, model);
    if (!status.ok()) return status;
    input.source = InputDescription::Source::kBytes;
    input.byte_size = bytes;
    binary_offset = *offset;
    *offset += bytes;
  } else {
    ShmReference unused_shm;
    if (params_obj) status = DecodeShm<Json>(iparams, &unused_shm);
    if (!status.ok()) return status;
    V<Json> data{};
    Json::Find(item, "data", &data);
    status = Json::DataLeaves(data, &input);
  }
  if (!status.ok()) return status;
  return sink->AddInput(std::move(input), binary_offset);
}

// Triton's order for a requested output: the conflicts of a shared memory region
// with `classification` and `binary_data` (before the name), the name, the class
// count, the shared memory members, then `binary_data`.
template <class Json>
Status DecodeOutput(V<Json> item, InferJsonSink* sink) {
  V<Json> oparams{};
  const bool params_obj = Json::Kind(item) == JsonKind::kObject &&
                          Json::Find(item, "parameters", &oparams) &&
                          Json::Kind(oparams) == JsonKind::kObject;
  V<Json> value{};
  const bool to_shm = params_obj && Json::Find(oparams, "shared_memory_region", &value);
  if (to_shm) {
    if (Json::Find(oparams, "classification", &value)) return OutputShmAndClasses();
    if (Json::Find(oparams, "binary_data", &value)) {
      if (Json::Kind(value) != JsonKind::kBool) return NotBoolBinaryData();
      if (Json::Bool(value)) return OutputShmAndBinary();
    }
  }
  if (Json::Kind(item) != JsonKind::kObject) return JsonMissingMember("name");
  std::string_view name;
  Status status = RequiredText<Json>(item, "name", &name);
  if (!status.ok()) return status;
  OutputDescription output;
  output.name = std::string(name);
  int binary = -1;
  if (params_obj) {
    if (Json::Find(oparams, "classification", &value)) {
      // Triton reads it as a JSON unsigned integer; 0 asks for no classification.
      uint64_t classes = 0;
      if (!Unsigned<Json>(value, &classes)) return NotUnsignedClassification();
      output.class_count =
          static_cast<uint32_t>(std::min<uint64_t>(classes, UINT32_MAX));
    }
    output.to_shm = to_shm;
    status = DecodeShm<Json>(oparams, &output.shm);
    if (!status.ok()) return status;
    if (Json::Find(oparams, "binary_data", &value)) {
      if (Json::Kind(value) != JsonKind::kBool) {
        return JsonWrongType("binary_data", kNotBool);
      }
      binary = Json::Bool(value) ? 1 : 0;
    }
  }
  return sink->AddOutput(std::move(output), binary);
}

}  // namespace infer_json

// Walks an infer request document. Returns the first error in request order; on
// success `*params` holds the request parameters (but `binary_data_output`, which
// went to the sink) for RequestBuilder::SetParameters.
template <class Json>
Status DecodeInferJson(typename Json::Value doc, const InferBodyLayout& layout,
                       const std::string& model, InferJsonSink* sink,
                       Parameters* params) {
  using namespace infer_json;
  if (Json::Kind(doc) != JsonKind::kObject) return JsonMissingMember("inputs");
  V<Json> value{};
  // A member that is JSON null is there, of the wrong type, as in Triton (its
  // TritonJson finds it), here and in every member below.
  if (Json::Find(doc, "id", &value)) {
    if (Json::Kind(value) != JsonKind::kString) return JsonWrongType("id", kNotString);
    std::string_view id;
    Status status = Json::Text(value, &id);
    if (!status.ok()) return status;
    sink->SetId(id);
  }
  // Request parameters: null is not "absent" here, as in Triton (not an object).
  if (Json::Find(doc, "parameters", &value)) {
    if (Json::Kind(value) != JsonKind::kObject) return NotRequestParameters();
    Status status = Json::Members(value, [&](std::string_view key, V<Json> own) {
      const V<Json> v = FirstOfName<Json>(value, std::string(key), own);
      if (key == "binary_data_output") {
        if (Json::Kind(v) != JsonKind::kBool) return JsonWrongType(key, kNotBool);
        sink->SetDefaultBinary(Json::Bool(v));
        return Status::Ok();
      }
      ParameterValue converted;
      std::string name(key);
      Status s = ReservedParameter(name, WireProtocol::kHttp);  // before its value
      if (!s.ok()) return s;
      s = DecodeRequestParameter<Json>(name, v, &converted);
      if (s.ok()) params->emplace_back(std::move(name), std::move(converted));
      return s;
    });
    if (!status.ok()) return status;
    // Triton refuses request parameters (a reserved name, a bad value) before it
    // reads `inputs`; they are applied once the request is built.
    status = CheckRequestParameters(*params, WireProtocol::kHttp);
    if (!status.ok()) return status;
  }
  if (!Json::Find(doc, "inputs", &value)) return JsonMissingMember("inputs");
  if (Json::Kind(value) != JsonKind::kArray) return JsonWrongType("inputs", kNotArray);
  Status status = CheckCount(Json::Size(value), "inputs");
  if (!status.ok()) return status;
  size_t offset = layout.has_header_length ? layout.header_length : layout.body_size;
  status = Json::Elements(value, [&](V<Json> item) {
    return DecodeInput<Json>(item, layout, model, &offset, sink);
  });
  if (!status.ok()) return status;
  if (layout.has_header_length && offset != layout.body_size) {
    return ExtraBinaryData(model);
  }
  if (!Json::Find(doc, "outputs", &value)) return Status::Ok();
  if (Json::Kind(value) != JsonKind::kArray) return JsonWrongType("outputs", kNotArray);
  status = CheckCount(Json::Size(value), "outputs");
  if (!status.ok()) return status;
  return Json::Elements(value,
                        [&](V<Json> item) { return DecodeOutput<Json>(item, sink); });
}

}  // namespace tritonx
