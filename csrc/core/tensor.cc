#include "tensor.h"

#include <cstring>

namespace tritonx {

int64_t ElementCount(const Shape& shape) {
  int64_t count = 1;
  for (int64_t dim : shape) count *= dim;
  return count;
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
