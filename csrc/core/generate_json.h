// Triton's generate extension (POST .../generate and .../generate_stream): the
// request JSON walked once for both HTTP engines, like the infer body
// (infer_json.h, whose JSON reader interface and sink this uses). The native engine
// instantiates it over RapidJSON (csrc/http/http_generate.cc), the Python engine
// over what Python's json module made (`_native.decode_generate_json`,
// bind_infer_json.cpp). The rules and messages are Triton 2.51's, as observed on
// the reference server:
//
// * The body is one JSON object, read member by member in document order, each
//   member name with the value of its first member (infer_json::FirstOfName). A key
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
//
// Stateless functions; safe from any thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

#include "infer_json.h"
#include "model_spec.h"
#include "request_builder.h"

namespace tritonx {

// What Triton's generate answers when a model did not produce exactly one response.
inline constexpr char kGenerateOneResponse[] =
    "generate expects model to produce exactly 1 response, use generate stream for "
    "model that generates various number of responses";

namespace generate_json {  // the walk's pieces that need no JSON reader

// The shape `count` elements take for `input` (see above), or false when none fits.
bool ShapeFor(const TensorSpec& input, bool batched, int64_t count, Shape* shape);

Status NotAnObject();            // the body
Status ParametersNotAnObject();  // the `parameters` member
Status BadParameter(const Status& cause);
Status NoShapeFits(const std::string& input);
// A BYTES input given a non-string element: Triton's generate words it its own way.
Status Reworded(const TensorSpec& input, const Status& status);

// One scalar value as the builder's leaf (strings point into the document).
template <class Json>
Status ScalarLeaf(typename Json::Value v, JsonScalar* leaf) {
  switch (Json::Kind(v)) {
    case JsonKind::kBool:
      leaf->type = JsonScalar::Type::kBool;
      leaf->b = Json::Bool(v);
      return Status::Ok();
    case JsonKind::kInt:
      leaf->type = JsonScalar::Type::kInt;
      leaf->i = Json::Int(v);
      return Status::Ok();
    case JsonKind::kUint:
      leaf->type = JsonScalar::Type::kUint;
      leaf->u = Json::Uint(v);
      return Status::Ok();
    case JsonKind::kDouble:
      leaf->type = JsonScalar::Type::kDouble;
      leaf->d = Json::Double(v);
      return Status::Ok();
    case JsonKind::kString:
      leaf->type = JsonScalar::Type::kString;
      return Json::Text(v, &leaf->text);
    default:
      return Status::Ok();  // kOther: the builder refuses it for the datatype
  }
}

template <class Json>
Status DecodeInput(const TensorSpec& spec, bool batched, typename Json::Value value,
                   InferJsonSink* sink) {
  InputDescription input;
  input.name = spec.name;
  input.datatype = DataTypeName(spec.dtype);
  const bool array = Json::Kind(value) == JsonKind::kArray;
  const auto count = static_cast<int64_t>(array ? Json::Size(value) : 1);
  if (!ShapeFor(spec, batched, count, &input.shape)) return NoShapeFits(spec.name);
  Status status;
  if (array) {
    status = Json::DataLeaves(value, &input);
  } else {  // a scalar is the one element of a list
    input.source = InputDescription::Source::kJson;
    input.json_is_array = true;
    input.json.emplace_back();
    status = ScalarLeaf<Json>(value, &input.json.back());
  }
  if (status.ok()) status = sink->AddInput(std::move(input), 0);
  return status.ok() ? status : Reworded(spec, status);
}

// Feeds the request builder as the walk decodes. One request, one thread.
class BuilderSink final : public InferJsonSink {
 public:
  BuilderSink(RequestBuilder* builder, InferenceRequest* request)
      : builder_(builder), request_(request) {}
  void SetId(std::string_view id) override { request_->id = std::string(id); }
  void SetDefaultBinary(bool) override {}
  Status AddInput(InputDescription input, size_t) override {
    return builder_->AddInput(std::move(input));
  }
  Status AddOutput(OutputDescription, int) override { return Status::Ok(); }

 private:
  RequestBuilder* builder_;
  InferenceRequest* request_;
};

}  // namespace generate_json

// Decodes a generate body for the model `spec`: the id and the inputs go to `sink`
// (AddInput, never AddOutput: a generate request asks for every output), the
// parameters to `params`, uninterpreted.
template <class Json>
Status DecodeGenerateJson(typename Json::Value doc, const ModelSpec& spec,
                          InferJsonSink* sink, Parameters* params) {
  using namespace generate_json;
  if (Json::Kind(doc) != JsonKind::kObject) return NotAnObject();
  const bool batched = spec.max_batch_size > 0;
  // Triton reads the id before any other member: its type error comes first.
  typename Json::Value id{};
  if (Json::Find(doc, "id", &id) && Json::Kind(id) != JsonKind::kString) {
    return JsonWrongType("id", infer_json::kNotString);
  }
  return Json::Members(doc, [&](std::string_view name, typename Json::Value own) {
    std::string key(name);
    const typename Json::Value value = infer_json::FirstOfName<Json>(doc, key, own);
    if (key == "parameters") {
      if (Json::Kind(value) != JsonKind::kObject) return ParametersNotAnObject();
      return Json::Members(value, [&](std::string_view p, typename Json::Value v_own) {
        std::string parameter(p);
        const typename Json::Value v =
            infer_json::FirstOfName<Json>(value, parameter, v_own);
        ParameterValue converted;
        Status status = DecodeCustomParameter<Json>(parameter, v, &converted);
        if (!status.ok()) return BadParameter(status);
        params->emplace_back(std::move(parameter), std::move(converted));
        return Status::Ok();
      });
    }
    if (const TensorSpec* input = spec.FindInput(key)) {
      return DecodeInput<Json>(*input, batched, value, sink);
    }
    if (key == "id") {  // a string: checked above
      std::string_view text;
      Status status = Json::Text(value, &text);
      if (!status.ok()) return status;
      sink->SetId(text);
    }
    ParameterValue converted;
    Status status = DecodeCustomParameter<Json>(key, value, &converted);
    if (!status.ok()) return status;
    params->emplace_back(std::move(key), std::move(converted));
    return Status::Ok();
  });
}

// A generate body for the model `spec` as the request `out` (inputs with their own
// copies of the data, id, parameters as given).
template <class Json>
Status BuildGenerateRequest(typename Json::Value doc, const ModelSpec& spec,
                            InferenceRequest* out) {
  RequestBuilder builder(out, WireProtocol::kHttp, spec.name, nullptr);
  generate_json::BuilderSink sink(&builder, out);
  return DecodeGenerateJson<Json>(doc, spec, &sink, &out->parameters);
}

}  // namespace tritonx
