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

int64_t CountBytesElements(const char* data, size_t byte_size) {
  int64_t count = 0;
  size_t offset = 0;
  while (offset < byte_size) {
    if (byte_size - offset < sizeof(uint32_t)) return -1;
    uint32_t length;
    std::memcpy(&length, data + offset, sizeof(length));
    offset += sizeof(length);
    if (length > byte_size - offset) return -1;
    offset += length;
    ++count;
  }
  return count;
}

}  // namespace tritonx
