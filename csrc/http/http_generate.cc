#include "http_generate.h"

#include <rapidjson/document.h>

#include <algorithm>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "http_json_tensor.h"

namespace tritonx {
namespace httpfe {
namespace {

using rapidjson::Value;

// The shape `count` elements take for `input`, or false when none fits, as Triton
// pads a generate value (a scalar or a 1-D array) to the input's shape: working
// from the innermost dim, fixed dims divide the count; then the innermost variable
// dim takes what is left and every other variable dim (the batch dim among them)
// is 1, so a batching model sees one request of `count` elements, never a batch
// of `count`.
bool ShapeFor(const TensorSpec& input, bool batched, int64_t count, Shape* shape) {
  shape->clear();
  if (batched) shape->push_back(-1);
  shape->insert(shape->end(), input.dims.begin(), input.dims.end());
  int64_t left = count;
  for (auto d = shape->rbegin(); d != shape->rend(); ++d) {
    if (*d < 0) continue;
    if (*d == 0) {  // no elements at all; Triton divides by it
      if (left != 0) return false;
      left = 1;
      continue;
    }
    if (left % *d != 0) return false;
    left /= *d;
  }
  for (auto d = shape->rbegin(); d != shape->rend(); ++d) {
    if (*d >= 0) continue;
    *d = left;
    left = 1;
  }
  return left == 1;
}

Status ParseInput(const ModelSpec& spec, const TensorSpec& input, bool batched,
                  const Value& given, rapidjson::Document::AllocatorType& allocator,
                  InferenceRequest* out) {
  Value wrapped;
  const Value* data = &given;
  if (!given.IsArray()) {
    wrapped.SetArray();
    wrapped.PushBack(Value(given, allocator), allocator);
    data = &wrapped;
  }
  InputDescription desc;
  desc.name = input.name;
  desc.datatype = DataTypeName(input.dtype);
  if (!ShapeFor(input, batched, static_cast<int64_t>(data->Size()), &desc.shape)) {
    return InvalidArgError("The schema can not convert input '" + input.name +
                           "' to tensor with proper shape");
  }
  JsonDataToInput(*data, &desc);
  RequestBuilder builder(out, WireProtocol::kHttp, spec.name, nullptr);
  Status status = builder.AddInput(std::move(desc));
  if (!status.ok()) {
    static const char kBytesData[] =
        "Unable to parse 'data': attempt to access JSON non-string as string";
    if (input.dtype == DataType::kBytes && status.message() == kBytesData) {
      return InternalError(
          "Unable to parse JSON bytes array: attempt to access JSON non-string as "
          "string");
    }
    return status;
  }
  return Status::Ok();
}

}  // namespace

Status ParseGenerateBody(const char* body, size_t size, const ModelSpec& spec,
                         InferenceRequest* out) {
  rapidjson::Document doc;
  Status status = ParseRequestJson(body, size, &doc);
  if (!status.ok()) return status;
  if (!doc.IsObject()) return InternalError("attempt to get members for non-object");
  const bool batched = spec.max_batch_size > 0;
  // Triton reads the id before any other member: its type error comes first.
  const auto id = doc.FindMember("id");
  if (id != doc.MemberEnd() && !id->value.IsString()) {
    return InternalError(
        "Unable to parse 'id': attempt to access JSON non-string as string");
  }
  for (const auto& member : doc.GetObject()) {
    const std::string key(member.name.GetString(), member.name.GetStringLength());
    const Value& value = member.value;
    if (key == "parameters") {
      if (!value.IsObject()) {
        return InternalError(
            "Expected JSON object for keyword: 'parameters': attempt to access JSON "
            "non-object as object");
      }
      for (const auto& p : value.GetObject()) {
        std::string name(p.name.GetString(), p.name.GetStringLength());
        ParameterValue converted;
        status = ConvertCustomParameter(name, p.value, &converted);
        if (!status.ok()) {
          return InvalidArgError("Converting keyword: 'parameters': " +
                                 status.message());
        }
        out->parameters.emplace_back(std::move(name), std::move(converted));
      }
      continue;
    }
    if (const TensorSpec* input = spec.FindInput(key)) {
      status = ParseInput(spec, *input, batched, value, doc.GetAllocator(), out);
      if (!status.ok()) return status;
      continue;
    }
    // (A repeated "id" of another type, after the checked first, is a parameter.)
    if (key == "id" && value.IsString()) {
      out->id.assign(value.GetString(), value.GetStringLength());
    }
    ParameterValue converted;
    status = ConvertCustomParameter(key, value, &converted);
    if (!status.ok()) return status;
    out->parameters.emplace_back(key, std::move(converted));
  }
  return Status::Ok();
}

Status RenderGenerateResponse(const InferenceResponse& response,
                              const std::string& request_id, std::string* json) {
  const std::string& id = response.id.empty() ? request_id : response.id;
  const std::string version = std::to_string(response.model_version);
  // Each key with the string, response parameter or output it names. As Triton's
  // (a std::map filled by emplace), the first entry of a key wins: the reserved
  // keys, then the parameters, then the outputs; the keys come out sorted.
  struct Entry {
    const std::string* key;
    const std::string* text;
    const ParameterValue* parameter;
    const Tensor* tensor;
  };
  static const std::string kId = "id", kName = "model_name", kVersion = "model_version";
  std::vector<Entry> entries;
  entries.reserve(response.outputs.size() + response.parameters.size() + 3);
  if (!id.empty()) entries.push_back({&kId, &id, nullptr, nullptr});
  entries.push_back({&kName, &response.model_name, nullptr, nullptr});
  entries.push_back({&kVersion, &version, nullptr, nullptr});
  for (const auto& [name, value] : response.parameters)
    entries.push_back({&name, nullptr, &value, nullptr});
  for (const Tensor& t : response.outputs)
    entries.push_back({&t.name, nullptr, nullptr, &t});
  std::stable_sort(entries.begin(), entries.end(),
                   [](const Entry& a, const Entry& b) { return *a.key < *b.key; });
  entries.erase(
      std::unique(entries.begin(), entries.end(),
                  [](const Entry& a, const Entry& b) { return *a.key == *b.key; }),
      entries.end());

  rapidjson::StringBuffer buffer;
  JsonWriter w(buffer);
  w.StartObject();
  for (const Entry& e : entries) {
    w.Key(e.key->data(), static_cast<rapidjson::SizeType>(e.key->size()));
    if (e.text != nullptr) {
      w.String(e.text->data(), static_cast<rapidjson::SizeType>(e.text->size()));
      continue;
    }
    if (e.parameter != nullptr) {
      // Triton's parameter types: bool, int (64-bit signed), double, string.
      std::visit(
          [&w](const auto& v) {
            using T = std::decay_t<decltype(v)>;
            if constexpr (std::is_same_v<T, bool>) {
              w.Bool(v);
            } else if constexpr (std::is_same_v<T, std::string>) {
              w.String(v.data(), static_cast<rapidjson::SizeType>(v.size()));
            } else if constexpr (std::is_same_v<T, double>) {
              w.Double(v);
            } else {
              w.Int64(static_cast<int64_t>(v));
            }
          },
          *e.parameter);
      continue;
    }
    const bool scalar = ElementCount(e.tensor->shape) == 1;
    if (!scalar) w.StartArray();
    Status status = WriteTensorElements(*e.tensor, &w);
    if (!status.ok()) return status;
    if (!scalar) w.EndArray();
  }
  w.EndObject();
  json->assign(buffer.GetString(), buffer.GetSize());
  return Status::Ok();
}

}  // namespace httpfe
}  // namespace tritonx
