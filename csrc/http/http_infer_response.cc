// KServe v2 infer responses over HTTP: the JSON header (RapidJSON) and which
// outputs follow it in binary; error bodies. See http_infer_codec.h.
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <algorithm>
#include <cstring>
#include <type_traits>

#include "http_infer_codec.h"

namespace tritonx {
namespace httpfe {
namespace {

// --- response rendering ------------------------------------------------------------

using Writer =
    rapidjson::Writer<rapidjson::StringBuffer, rapidjson::UTF8<>, rapidjson::UTF8<>,
                      rapidjson::CrtAllocator, rapidjson::kWriteNanAndInfFlag>;

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

template <typename T, typename Fn>
void WriteNumbers(const Tensor& t, Fn fn) {
  const size_t n = t.byte_size / sizeof(T);
  for (size_t i = 0; i < n; ++i) {
    T v;
    std::memcpy(&v, t.data + i * sizeof(T), sizeof(T));
    fn(v);
  }
}

Status WriteData(const Tensor& t, Writer* w) {
  w->StartArray();
  switch (t.dtype) {
    case DataType::kBool:
      WriteNumbers<uint8_t>(t, [w](uint8_t v) { w->Bool(v != 0); });
      break;
    case DataType::kUint8:
      WriteNumbers<uint8_t>(t, [w](uint8_t v) { w->Uint(v); });
      break;
    case DataType::kUint16:
      WriteNumbers<uint16_t>(t, [w](uint16_t v) { w->Uint(v); });
      break;
    case DataType::kUint32:
      WriteNumbers<uint32_t>(t, [w](uint32_t v) { w->Uint(v); });
      break;
    case DataType::kUint64:
      WriteNumbers<uint64_t>(t, [w](uint64_t v) { w->Uint64(v); });
      break;
    case DataType::kInt8:
      WriteNumbers<int8_t>(t, [w](int8_t v) { w->Int(v); });
      break;
    case DataType::kInt16:
      WriteNumbers<int16_t>(t, [w](int16_t v) { w->Int(v); });
      break;
    case DataType::kInt32:
      WriteNumbers<int32_t>(t, [w](int32_t v) { w->Int(v); });
      break;
    case DataType::kInt64:
      WriteNumbers<int64_t>(t, [w](int64_t v) { w->Int64(v); });
      break;
    case DataType::kFp32:
      // Rendered as the double it widens to, like Triton (0.1f -> 0.10000000149011612).
      WriteNumbers<float>(t, [w](float v) { w->Double(static_cast<double>(v)); });
      break;
    case DataType::kFp64:
      WriteNumbers<double>(t, [w](double v) { w->Double(v); });
      break;
    case DataType::kBytes: {
      const int64_t count = ElementCount(t.shape);
      size_t offset = 0;
      for (int64_t i = 0; i < count && offset + 4 <= t.byte_size; ++i) {
        uint32_t len;
        std::memcpy(&len, t.data + offset, 4);
        offset += 4;
        len = static_cast<uint32_t>(std::min<size_t>(len, t.byte_size - offset));
        w->String(t.data + offset, len);
        offset += len;
      }
      break;
    }
    default:
      return Status(
          StatusCode::kInvalidArg,
          "sending " + std::string(DataTypeName(t.dtype)) +
              " data via JSON is not supported. Please use the binary data format "
              "for output");
  }
  w->EndArray();
  return Status::Ok();
}

}  // namespace

std::string ErrorBody(const std::string& message) {
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> writer(buffer);
  writer.String(message.data(), static_cast<rapidjson::SizeType>(message.size()));
  return std::string("{\"error\": ") + buffer.GetString() + "}";
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
    if (encoding.Binary(t.name)) {
      w.Key("parameters");
      w.StartObject();
      w.Key("binary_data_size");
      w.Uint64(t.byte_size);
      w.EndObject();
      binaries->push_back(i);
    } else {
      w.Key("data");
      Status status = WriteData(t, &w);
      if (!status.ok()) return status;
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
