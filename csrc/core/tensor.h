// Tensor: a named, typed, shaped view over bytes that someone else owns.
//
// The bytes are never copied on the way in: a tensor built from an HTTP body, a gRPC
// message or a numpy array points into that object and holds `owner` to keep it
// alive. BYTES tensors carry their wire form (uint32 LE length + bytes per element).
#pragma once

#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "data_type.h"

namespace tritonx {

using Shape = std::vector<int64_t>;

// Number of elements of a fully specified shape (1 for a scalar, 0 if any dim is 0).
// The shape must already be validated (no negative dims, no overflow); request
// shapes from the wire go through CheckedElementCount first.
int64_t ElementCount(const Shape& shape);

// Outcome of counting the elements of an untrusted shape.
enum class ShapeCount {
  kOk,
  kInvalidDim,  // a negative dim
  kOverflow,    // the count does not fit in int64
};

// Element count of a shape from a client, without ever wrapping. Dims are
// visited in order, as Triton does, so whichever problem comes first is the
// one reported. `*count` is set only on kOk.
ShapeCount CheckedElementCount(const Shape& shape, int64_t* count);

// "[1,16]" in Triton's spelling for error messages.
std::string ShapeToString(const Shape& shape);

// BYTES wire form (the one implementation; Python reaches it through
// tritonx._native.serialize_bytes / deserialize_bytes): each element is a uint32
// little-endian length followed by that many bytes, with no padding.
void AppendBytesElement(std::string* out, const char* data, size_t size);

// Calls fn(data, size) for each element of a BYTES buffer, in order, at most `limit`
// of them (-1: every one). Returns the number visited, or -1 when the buffer is
// malformed (an element's length runs past the end) before `limit` was reached.
template <typename Fn>
int64_t ForEachBytesElement(const char* data, size_t byte_size, Fn&& fn,
                            int64_t limit = -1) {
  int64_t count = 0;
  size_t offset = 0;
  while (offset < byte_size && count != limit) {
    if (byte_size - offset < 4) return -1;
    uint32_t length;
    std::memcpy(&length, data + offset, 4);
    offset += 4;
    if (length > byte_size - offset) return -1;
    fn(data + offset, static_cast<size_t>(length));
    offset += length;
    ++count;
  }
  return count;
}

// Number of length-prefixed elements in a BYTES buffer, or -1 if the buffer is
// malformed (an element's length runs past the end).
int64_t CountBytesElements(const char* data, size_t byte_size);

// Where a tensor's bytes live. Host memory (pageable or page-locked) may be read
// by the CPU directly; GPU memory may not: code that needs host bytes of a tensor
// gets them through tensor_memory.h (HostTensor / CopyTensorBytes), the one place
// that copies device->host, never by reading `data`.
enum class MemoryType : uint8_t { kCpu, kCpuPinned, kGpu };

// "CPU", "CPU_PINNED", "GPU" (Triton's TRITONSERVER_MEMORY_* spellings).
const char* MemoryTypeName(MemoryType type);

struct Tensor {
  std::string name;
  DataType dtype = DataType::kInvalid;
  Shape shape;
  const char* data = nullptr;
  size_t byte_size = 0;
  // Keeps `data` valid for as long as any copy of this tensor lives. May be null when
  // the caller guarantees the lifetime some other way (tests, arena-owned batches).
  std::shared_ptr<const void> owner;
  // Host memory unless a producer says otherwise (a GPU DLPack tensor); device_id
  // is the CUDA device for kGpu (and for kCpuPinned, the device it was pinned for).
  MemoryType memory_type = MemoryType::kCpu;
  // The bytes belong to a producer that did not let them be written (a read-only
  // numpy array, a DLPack 1.x capsule flagged read-only): host views handed to
  // Python (as_numpy) are read-only and DLPack exports carry the flag. A copy of
  // the bytes (HostTensor, compaction) is the core's own and writable.
  bool read_only = false;
  // Others read these bytes too: a client's shared memory region, an ensemble
  // tensor (other steps, the response), a BLS caller's array, a response cache
  // entry. C++ consumers read them in place; a Python model's as_numpy() /
  // to_dlpack() of such a tensor is a private copy (pb_utils), as Triton's python
  // backend gives every model, so an in-place `x -= mean` cannot change what the
  // others see.
  bool aliased = false;
  int device_id = 0;

  bool on_host() const { return memory_type != MemoryType::kGpu; }
};

}  // namespace tritonx
