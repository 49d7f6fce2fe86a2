// Tensor: a named, typed, shaped view over bytes that someone else owns.
//
// The bytes are never copied on the way in: a tensor built from an HTTP body, a gRPC
// message or a numpy array points into that object and holds `owner` to keep it
// alive. BYTES tensors carry their wire form (uint32 LE length + bytes per element).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "data_type.h"

namespace tritonx {

using Shape = std::vector<int64_t>;

// Number of elements of a fully specified shape (1 for a scalar, 0 if any dim is 0).
int64_t ElementCount(const Shape& shape);

// "[1,16]" in Triton's spelling for error messages.
std::string ShapeToString(const Shape& shape);

// Number of length-prefixed elements in a BYTES buffer, or -1 if the buffer is
// malformed (an element's length runs past the end).
int64_t CountBytesElements(const char* data, size_t byte_size);

struct Tensor {
  std::string name;
  DataType dtype = DataType::kInvalid;
  Shape shape;
  const char* data = nullptr;
  size_t byte_size = 0;
  // Keeps `data` valid for as long as any copy of this tensor lives. May be null when
  // the caller guarantees the lifetime some other way (tests, arena-owned batches).
  std::shared_ptr<const void> owner;
};

}  // namespace tritonx
