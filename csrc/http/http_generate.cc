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

Status ParseGenerateBody(const char* body, size_t size, const ModelSpec& spec,
                         InferenceRequest* out) {
  rapidjson::Document doc;
  Status status = ParseRequestJson(body, size, &doc);
  if (!status.ok()) return status;
  return BuildGenerateRequest<RapidJsonReader>(&doc, spec, out);
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
