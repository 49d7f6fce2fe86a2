#include "http_json_tensor.h"

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

namespace tritonx {
namespace httpfe {
namespace {

using rapidjson::Value;

Status Internal(std::string message) {
  return Status(StatusCode::kInternal, std::move(message));
}
Status Invalid(std::string message) {
  return Status(StatusCode::kInvalidArg, std::move(message));
}

enum class Kind { kBool, kFloat, kInt, kUint, kBytes };

Kind KindOf(DataType dtype) {
  switch (dtype) {
    case DataType::kBool:
      return Kind::kBool;
    case DataType::kFp32:
    case DataType::kFp64:
      return Kind::kFloat;
    case DataType::kInt8:
    case DataType::kInt16:
    case DataType::kInt32:
    case DataType::kInt64:
      return Kind::kInt;
    case DataType::kBytes:
      return Kind::kBytes;
    default:
      return Kind::kUint;
  }
}

const char* AccessMessage(Kind kind) {
  switch (kind) {
    case Kind::kBool:
      return "JSON non-boolean as boolean";
    case Kind::kFloat:
      return "JSON non-number as double";
    case Kind::kInt:
      return "JSON non-signed-integer as signed-integer";
    case Kind::kUint:
      return "JSON non-unsigned-integer as unsigned-integer";
    default:
      return "JSON non-string as string";
  }
}

// Leaves of a (possibly ragged) nested array; depth is bounded by the parse.
void Flatten(const Value& array, std::vector<const Value*>* out) {
  for (const Value& item : array.GetArray()) {
    if (item.IsArray()) {
      Flatten(item, out);
    } else {
      out->push_back(&item);
    }
  }
}

bool Accepts(Kind kind, const Value& v) {
  switch (kind) {
    case Kind::kBool:
      return v.IsBool();
    case Kind::kFloat:
      return v.IsNumber();
    case Kind::kInt:
    case Kind::kUint:
      return v.IsInt64() || v.IsUint64();
    default:
      return v.IsString();
  }
}

template <typename T>
void Pack(const std::vector<const Value*>& leaves, std::string* out) {
  out->resize(leaves.size() * sizeof(T));
  char* dst = out->data();
  for (const Value* v : leaves) {
    T elem;
    if constexpr (std::is_floating_point_v<T>) {
      elem = static_cast<T>(v->GetDouble());
    } else if (v->IsUint64()) {
      // A C-style cast like Triton's: integers wrap.
      elem = static_cast<T>(v->GetUint64());
    } else {
      elem = static_cast<T>(v->GetInt64());
    }
    std::memcpy(dst, &elem, sizeof(T));
    dst += sizeof(T);
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

Status JsonToWire(const std::string& name, DataType dtype, int64_t expected,
                  const Value& data, std::string* out) {
  if (dtype == DataType::kFp16 || dtype == DataType::kBf16) {
    return Invalid("receiving " + std::string(DataTypeName(dtype)) +
                   " data via JSON is not supported. Please use the binary data format "
                   "for input " +
                   name);
  }
  if (!data.IsArray()) {
    return Internal(
        "Unable to parse 'data': attempt to access JSON non-array as array");
  }
  const Kind kind = KindOf(dtype);
  std::vector<const Value*> leaves;
  Flatten(data, &leaves);
  for (const Value* v : leaves) {
    if (!Accepts(kind, *v)) {
      return Internal(std::string("Unable to parse 'data': attempt to access ") +
                      AccessMessage(kind));
    }
  }
  if (expected < 0 || static_cast<uint64_t>(expected) != leaves.size()) {
    return Internal(
        "Unable to parse 'data': Shape does not match true shape of 'data' field");
  }
  if (kind == Kind::kUint) {
    for (const Value* v : leaves) {
      if (!v->IsUint64()) {
        return Internal(std::string("Unable to parse 'data': attempt to access ") +
                        AccessMessage(kind));
      }
    }
  }
  switch (dtype) {
    case DataType::kBool: {
      out->resize(leaves.size());
      for (size_t i = 0; i < leaves.size(); ++i)
        (*out)[i] = leaves[i]->GetBool() ? 1 : 0;
      return Status::Ok();
    }
    case DataType::kBytes: {
      size_t total = 0;
      for (const Value* v : leaves) total += 4 + v->GetStringLength();
      out->reserve(total);
      for (const Value* v : leaves) {
        const uint32_t len = v->GetStringLength();
        out->append(reinterpret_cast<const char*>(&len), 4);
        out->append(v->GetString(), len);
      }
      return Status::Ok();
    }
    case DataType::kInt8:
      Pack<int8_t>(leaves, out);
      break;
    case DataType::kInt16:
      Pack<int16_t>(leaves, out);
      break;
    case DataType::kInt32:
      Pack<int32_t>(leaves, out);
      break;
    case DataType::kInt64:
      Pack<int64_t>(leaves, out);
      break;
    case DataType::kUint8:
      Pack<uint8_t>(leaves, out);
      break;
    case DataType::kUint16:
      Pack<uint16_t>(leaves, out);
      break;
    case DataType::kUint32:
      Pack<uint32_t>(leaves, out);
      break;
    case DataType::kUint64:
      Pack<uint64_t>(leaves, out);
      break;
    case DataType::kFp32:
      Pack<float>(leaves, out);
      break;
    case DataType::kFp64:
      Pack<double>(leaves, out);
      break;
    default:
      break;
  }
  return Status::Ok();
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
  return Status::Ok();
}

}  // namespace httpfe
}  // namespace tritonx
