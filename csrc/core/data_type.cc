#include "data_type.h"

#include <array>

namespace tritonx {
namespace {

struct TypeInfo {
  DataType dtype;
  std::string_view name;
  size_t byte_size;
};

constexpr std::array<TypeInfo, 15> kTypes = {{
    {DataType::kInvalid, "INVALID", 0},
    {DataType::kBool, "BOOL", 1},
    {DataType::kUint8, "UINT8", 1},
    {DataType::kUint16, "UINT16", 2},
    {DataType::kUint32, "UINT32", 4},
    {DataType::kUint64, "UINT64", 8},
    {DataType::kInt8, "INT8", 1},
    {DataType::kInt16, "INT16", 2},
    {DataType::kInt32, "INT32", 4},
    {DataType::kInt64, "INT64", 8},
    {DataType::kFp16, "FP16", 2},
    {DataType::kFp32, "FP32", 4},
    {DataType::kFp64, "FP64", 8},
    {DataType::kBytes, "BYTES", 0},
    {DataType::kBf16, "BF16", 2},
}};

const TypeInfo& Info(DataType dtype) {
  auto index = static_cast<size_t>(dtype);
  return index < kTypes.size() ? kTypes[index] : kTypes[0];
}

}  // namespace

size_t DataTypeByteSize(DataType dtype) { return Info(dtype).byte_size; }

std::string_view DataTypeName(DataType dtype) { return Info(dtype).name; }

DataType DataTypeFromName(std::string_view name) {
  for (const auto& info : kTypes) {
    if (info.name == name && info.dtype != DataType::kInvalid) return info.dtype;
  }
  return DataType::kInvalid;
}

}  // namespace tritonx
