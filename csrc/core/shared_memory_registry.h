// SharedMemoryRegistry: the shared memory regions clients registered (Triton's
// system_shared_memory and cuda_shared_memory extensions), one per server, shared
// by the HTTP and gRPC frontends through the ServerContext. System and CUDA regions
// share one name space, as in Triton.
//
// A system region is a POSIX shared memory object (shm_open) mapped into this
// process when it is registered. Tensors read from it point straight into the
// mapping (no copy); outputs are copied into it when the response is built.
// A CUDA region is a peer's device allocation opened through its cudaIpcMemHandle
// (CUDA builds with a usable GPU only). The backends take host tensors, so an
// input read from it is copied to host memory once when the request is parsed,
// and an output is copied to the device when the response is built.
//
// Thread safety: every method is thread safe (one mutex around the name map).
// Ownership: the map holds each region's mapping through a shared_ptr, and so does
// every tensor or output target resolved from it. Unregistering only removes the
// name; the mapping is unmapped when the last request using it lets go, so a
// region unregistered while a request reads or writes it never faults.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "status.h"
#include "tensor.h"

namespace tritonx {

enum class ShmKind { kSystem, kCuda };

// What the status call reports for one region (Triton's JSON/proto fields: key
// and offset for system regions, device_id for CUDA ones).
struct ShmRegionStatus {
  std::string name;
  std::string key;
  uint64_t offset = 0;
  uint64_t byte_size = 0;
  int64_t device_id = 0;
};

// A range of a registered region: `data` stays valid while `owner` lives. `data`
// is host memory, or device memory on `device` when that is >= 0 (a CUDA region
// resolved for writing).
struct ShmSpan {
  char* data = nullptr;
  size_t byte_size = 0;
  std::shared_ptr<const void> owner;
  int device = -1;
};

// What a range is resolved for: an input's bytes are read (a CUDA region's are
// copied to host memory), an output is written into the region itself.
enum class ShmUse { kRead, kWrite };

// An output a request asked to receive in a region: resolved (and bounds-checked)
// when the request is parsed, written when its response is built.
struct ShmOutput {
  std::string name;    // the output tensor
  std::string region;  // as the client named it
  uint64_t offset = 0;
  ShmSpan span;
};
using ShmOutputs = std::vector<ShmOutput>;

class SharedMemoryRegistry {
 public:
  SharedMemoryRegistry() = default;
  SharedMemoryRegistry(const SharedMemoryRegistry&) = delete;
  SharedMemoryRegistry& operator=(const SharedMemoryRegistry&) = delete;

  // Opens `key`, checks [offset, offset + byte_size) lies within it and maps that
  // range. UNSUPPORTED while clients may not use shared memory (ShmDisallowed);
  // ALREADY_EXISTS for a taken name, INTERNAL when the object cannot be opened,
  // INVALID_ARG for a range past its end or an empty one (Triton 2.51's codes and
  // messages). Unlike Triton, an offset need not be page aligned.
  Status Register(const std::string& name, const std::string& key, uint64_t offset,
                  uint64_t byte_size);
  // Opens a peer's CUDA allocation from its 64-byte cudaIpcMemHandle_t on
  // `device_id`. ALREADY_EXISTS for a taken name; INVALID_ARG with Triton's
  // messages when the handle cannot be opened or `byte_size` exceeds the
  // allocation, or when this build or machine has no usable GPU.
  Status RegisterCuda(const std::string& name, const std::string& raw_handle,
                      int64_t device_id, uint64_t byte_size);
  // Removes one region of `kind`; an unknown name, or one of the other kind, is not
  // an error (as in Triton). Unlike Triton 2.51, a region a request still holds is
  // removed too (its mapping stays until the request lets go).
  Status Unregister(const std::string& name, ShmKind kind = ShmKind::kSystem);
  void UnregisterAll(ShmKind kind = ShmKind::kSystem);
  // Every region of `kind` (`name` empty) or the one named; NOT_FOUND when it is
  // unknown or of the other kind, with Triton's messages.
  Status GetStatus(const std::string& name, std::vector<ShmRegionStatus>* out,
                   ShmKind kind = ShmKind::kSystem) const;
  bool Contains(const std::string& name) const;

  // [offset, offset + byte_size) of a region for a tensor, with Triton's errors:
  // NOT_FOUND for an unknown region, INVALID_ARG when the range leaves it.
  Status Resolve(const std::string& name, uint64_t offset, uint64_t byte_size,
                 ShmSpan* out, ShmUse use = ShmUse::kRead) const;

  // Whether clients may use shared memory at all (--allow-client-shm). Checked by
  // Register and by the request builder (request_builder.h) for every tensor.
  void set_allowed(bool allowed) { allowed_.store(allowed); }
  bool allowed() const { return allowed_.load(std::memory_order_relaxed); }

 private:
  struct Region;

  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<Region>> regions_;
  std::atomic<bool> allowed_{true};
};

// The message and code when shared memory is used while --allow-client-shm=false.
Status ShmDisallowed();

// Copies `tensor` into its target region (host or device); INTERNAL with Triton's
// message when it does not fit or the device copy fails.
Status WriteShmOutput(const ShmOutput& target, const Tensor& tensor);

// The target for output `name`, or null.
const ShmOutput* FindShmOutput(const ShmOutputs& outputs, const std::string& name);

}  // namespace tritonx
