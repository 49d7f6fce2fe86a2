#include "http_json_tensor.h"

#include <algorithm>
#include <cstring>
#include <vector>

namespace tritonx {
namespace httpfe {
namespace {

using rapidjson::Value;

// The leaves of a (possibly ragged) nested `data` array, typed for the builder;
// depth is bounded by the parse. Strings point into the document.
void FlattenJson(const Value& array, std::vector<JsonScalar>* out) {
  for (const Value& item : array.GetArray()) {
    if (item.IsArray()) {
      FlattenJson(item, out);
      continue;
    }
    JsonScalar leaf;
    if (item.IsBool()) {
      leaf.type = JsonScalar::Type::kBool;
      leaf.b = item.GetBool();
    } else if (item.IsInt64()) {
      leaf.type = JsonScalar::Type::kInt;
      leaf.i = item.GetInt64();
    } else if (item.IsUint64()) {
      leaf.type = JsonScalar::Type::kUint;
      leaf.u = item.GetUint64();
    } else if (item.IsNumber()) {
      leaf.type = JsonScalar::Type::kDouble;
      leaf.d = item.GetDouble();
    } else if (item.IsString()) {
      leaf.type = JsonScalar::Type::kString;
      leaf.text = std::string_view(item.GetString(), item.GetStringLength());
    }
    out->push_back(leaf);
  }
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

}  // namespace

void JsonDataToInput(const Value& data, InputDescription* input) {
  input->source = InputDescription::Source::kJson;
  input->json_is_array = data.IsArray();
  if (input->json_is_array) FlattenJson(data, &input->json);
}

Status WriteTensorElements(const Tensor& t, JsonWriter* w) {
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
    case DataType::kBytes:
      ForEachBytesElement(
          t.data, t.byte_size,
          [w](const char* data, size_t size) {
            w->String(data, static_cast<rapidjson::SizeType>(size));
          },
          ElementCount(t.shape));
      break;
    default:
      return Status(StatusCode::kInvalidArg, HttpOutputNotJson(DataTypeName(t.dtype)));
  }
  return Status::Ok();
}

}  // namespace httpfe
}  // namespace tritonx
