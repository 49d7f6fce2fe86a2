// Tensor element types. Values equal model_config.proto's DataType enum so a config's
// data_type converts with a cast; the wire names ("FP32", "BYTES") are the KServe ones.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace tritonx {

enum class DataType : int32_t {
  kInvalid = 0,
  kBool = 1,
  kUint8 = 2,
  kUint16 = 3,
  kUint32 = 4,
  kUint64 = 5,
  kInt8 = 6,
  kInt16 = 7,
  kInt32 = 8,
  kInt64 = 9,
  kFp16 = 10,
  kFp32 = 11,
  kFp64 = 12,
  kBytes = 13,  // TYPE_STRING in configs; each element is a uint32 LE length + bytes
  kBf16 = 14,
};

// Size of one element in bytes; 0 for BYTES (variable size) and kInvalid.
size_t DataTypeByteSize(DataType dtype);

// "FP32", "BYTES", ...; "INVALID" for kInvalid.
std::string_view DataTypeName(DataType dtype);

// Inverse of DataTypeName; kInvalid when the name is unknown.
DataType DataTypeFromName(std::string_view name);

}  // namespace tritonx
