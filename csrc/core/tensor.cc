#include "tensor.h"

#include <cstring>
#include <limits>

namespace tritonx {

int64_t ElementCount(const Shape& shape) {
  int64_t count = 1;
  for (int64_t dim : shape) count *= dim;
  return count;
}

ShapeCount CheckedElementCount(const Shape& shape, int64_t* count) {
  int64_t total = 1;
  for (int64_t dim : shape) {
    if (dim < 0) return ShapeCount::kInvalidDim;
    // Once the count is 0 it stays 0, whatever follows.
    if (dim != 0 && total > std::numeric_limits<int64_t>::max() / dim) {
      return ShapeCount::kOverflow;
    }
    total *= dim;
  }
  *count = total;
  return ShapeCount::kOk;
}

std::string ShapeToString(const Shape& shape) {
  std::string out = "[";
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i > 0) out += ",";
    out += std::to_string(shape[i]);
  }
  out += "]";
  return out;
}

void AppendBytesElement(std::string* out, const char* data, size_t size) {
  const uint32_t length = static_cast<uint32_t>(size);
  char prefix[4];
  std::memcpy(prefix, &length, 4);  // little-endian hosts only, as the wire form
  out->append(prefix, 4);
  out->append(data, size);
}

const char* MemoryTypeName(MemoryType type) {
  switch (type) {
    case MemoryType::kCpu:
      return "CPU";
    case MemoryType::kCpuPinned:
      return "CPU_PINNED";
    case MemoryType::kGpu:
      return "GPU";
  }
  return "CPU";
}

int64_t CountBytesElements(const char* data, size_t byte_size) {
  return ForEachBytesElement(data, byte_size, [](const char*, size_t) {});
}

}  // namespace tritonx
