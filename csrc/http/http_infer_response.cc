// KServe v2 infer responses over HTTP: the JSON header (RapidJSON) and which
// outputs follow it in binary; error bodies. See http_infer_codec.h.
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <type_traits>

#include "http_infer_codec.h"
#include "http_json_tensor.h"

namespace tritonx {
namespace httpfe {
namespace {

// --- response rendering ------------------------------------------------------------

using Writer = JsonWriter;

void WriteParameter(const ParameterValue& value, Writer* w) {
  std::visit(
      [w](const auto& v) {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, bool>) {
          w->Bool(v);
        } else if constexpr (std::is_same_v<T, int64_t>) {
          w->Int64(v);
        } else if constexpr (std::is_same_v<T, uint64_t>) {
          w->Uint64(v);
        } else if constexpr (std::is_same_v<T, double>) {
          w->Double(v);
        } else {
          w->String(v.data(), static_cast<rapidjson::SizeType>(v.size()));
        }
      },
      value);
}

}  // namespace

std::string ErrorBody(const std::string& message) {
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> writer(buffer);
  writer.String(message.data(), static_cast<rapidjson::SizeType>(message.size()));
  // Triton's bytes: compact, no space after the colon.
  return std::string("{\"error\":") + buffer.GetString() + "}";
}

bool OutputEncoding::Binary(const std::string& name) const {
  for (const auto& [output, flag] : explicit_binary) {
    if (output == name) return flag;
  }
  return default_binary;
}

Status RenderInferResponse(const InferenceResponse& response,
                           const std::string& request_id,
                           const OutputEncoding& encoding, std::string* json,
                           std::vector<size_t>* binaries) {
  rapidjson::StringBuffer buffer;
  Writer w(buffer);
  w.StartObject();
  const std::string& id = response.id.empty() ? request_id : response.id;
  if (!id.empty()) {
    w.Key("id");
    w.String(id.data(), static_cast<rapidjson::SizeType>(id.size()));
  }
  w.Key("model_name");
  w.String(response.model_name.data(),
           static_cast<rapidjson::SizeType>(response.model_name.size()));
  w.Key("model_version");
  w.String(std::to_string(response.model_version).c_str());
  if (!response.parameters.empty()) {
    w.Key("parameters");
    w.StartObject();
    for (const auto& [key, value] : response.parameters) {
      w.Key(key.data(), static_cast<rapidjson::SizeType>(key.size()));
      WriteParameter(value, &w);
    }
    w.EndObject();
  }
  w.Key("outputs");
  w.StartArray();
  for (size_t i = 0; i < response.outputs.size(); ++i) {
    const Tensor& t = response.outputs[i];
    w.StartObject();
    w.Key("name");
    w.String(t.name.data(), static_cast<rapidjson::SizeType>(t.name.size()));
    w.Key("datatype");
    const std::string_view dtype = DataTypeName(t.dtype);
    w.String(dtype.data(), static_cast<rapidjson::SizeType>(dtype.size()));
    w.Key("shape");
    w.StartArray();
    for (int64_t d : t.shape) w.Int64(d);
    w.EndArray();
    if (const ShmOutput* target = FindShmOutput(encoding.shm_outputs, t.name)) {
      Status status = WriteShmOutput(*target, t);
      if (!status.ok()) return status;
    } else if (encoding.Binary(t.name)) {
      w.Key("parameters");
      w.StartObject();
      w.Key("binary_data_size");
      w.Uint64(t.byte_size);
      w.EndObject();
      // Zero bytes add nothing after the JSON: with no other binary output the
      // answer is plain JSON, without binary framing, as Triton's is.
      if (t.byte_size > 0) binaries->push_back(i);
    } else {
      w.Key("data");
      w.StartArray();
      Status status = WriteTensorElements(t, &w);
      if (!status.ok()) return status;
      w.EndArray();
    }
    w.EndObject();
  }
  w.EndArray();
  w.EndObject();
  json->assign(buffer.GetString(), buffer.GetSize());
  return Status::Ok();
}

}  // namespace httpfe
}  // namespace tritonx
