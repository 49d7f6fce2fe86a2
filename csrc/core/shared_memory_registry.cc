#include "shared_memory_registry.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "cuda_runtime.h"
#include "logging.h"
#include "tensor_memory.h"

namespace tritonx {

// One registered region. A system region's mapping starts at the page boundary at
// or below the registered offset (mmap needs an aligned offset; Triton refuses
// unaligned ones, tritonx maps a little more instead), `base` is the registered
// offset itself. A CUDA region's `base` is the opened IPC allocation on `device`.
struct SharedMemoryRegistry::Region {
  ShmKind kind = ShmKind::kSystem;
  std::string name;
  std::string key;
  uint64_t offset = 0;
  uint64_t byte_size = 0;
  void* mapping = nullptr;
  size_t mapping_size = 0;
  char* base = nullptr;
  int device = -1;

  ~Region() {
    if (kind == ShmKind::kCuda) {
      CudaIpcClose(base);
    } else if (mapping != nullptr && mapping != MAP_FAILED) {
      munmap(mapping, mapping_size);
    }
  }
};

namespace {

Status AlreadyRegistered(const std::string& name) {
  return Status(StatusCode::kAlreadyExists,
                "shared memory region '" + name + "' already in manager");
}

}  // namespace

Status SharedMemoryRegistry::Register(const std::string& name, const std::string& key,
                                      uint64_t offset, uint64_t byte_size) {
  if (!allowed()) return ShmDisallowed();
  std::lock_guard<std::mutex> lock(mu_);
  if (regions_.count(name) != 0) return AlreadyRegistered(name);
  const int fd = shm_open(key.c_str(), O_RDWR, S_IRUSR | S_IWUSR);
  if (fd == -1) {
    return Status(StatusCode::kInternal,
                  "Unable to open shared memory region: '" + key + "'");
  }
  struct stat info;
  if (fstat(fd, &info) != 0 || info.st_size < 0) {
    close(fd);
    return Status(StatusCode::kInternal, "Invalid shared memory region: '" + key + "'");
  }
  // Triton 2.51's answers: a range past the object's end is "invalid args"; an
  // empty one fails its mmap (EINVAL), worded as Triton words a failed map.
  const uint64_t object_size = static_cast<uint64_t>(info.st_size);
  if (offset > object_size || byte_size > object_size - offset) {
    close(fd);
    return Status(StatusCode::kInvalidArg, "failed to register shared memory region '" +
                                               name + "': invalid args");
  }
  if (byte_size == 0) {
    close(fd);
    return Status(StatusCode::kInvalidArg,
                  "failed to register shared memory region '" + name +
                      "': unable to process address space" + std::strerror(EINVAL));
  }
  auto region = std::make_shared<Region>();
  region->name = name;
  region->key = key;
  region->offset = offset;
  region->byte_size = byte_size;
  const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  const uint64_t start = offset - offset % page;
  region->mapping_size = static_cast<size_t>(offset - start + byte_size);
  region->mapping = mmap(nullptr, region->mapping_size, PROT_READ | PROT_WRITE,
                         MAP_SHARED, fd, static_cast<off_t>(start));
  if (region->mapping == MAP_FAILED) {
    const std::string reason = std::strerror(errno);
    close(fd);
    return Status(StatusCode::kInvalidArg,
                  "failed to register shared memory region '" + name +
                      "': unable to process address space" + reason);
  }
  region->base = static_cast<char*>(region->mapping) + (offset - start);
  close(fd);  // the mapping stays valid without the descriptor
  regions_.emplace(name, std::move(region));
  return Status::Ok();
}

Status SharedMemoryRegistry::RegisterCuda(const std::string& name,
                                          const std::string& raw_handle,
                                          int64_t device_id, uint64_t byte_size) {
  if (!allowed()) return ShmDisallowed();
  if (!CudaUsable()) {
    return Status(StatusCode::kInvalidArg,
                  "failed to register CUDA shared memory region: '" + name +
                      "', GPUs not supported");
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (regions_.count(name) != 0) return AlreadyRegistered(name);
  }
  // Triton answers every failure to open the handle with one generic message and
  // logs the CUDA error; so does this.
  const Status invalid(StatusCode::kInvalidArg,
                       "failed to register shared memory region: invalid args");
  if (raw_handle.size() != kCudaIpcHandleBytes || device_id < 0 ||
      device_id >= CudaDeviceCount()) {
    Log(LogLevel::kError, "failed to open CUDA IPC handle for region '" + name +
                              "': a 64-byte handle on a present device is needed");
    return invalid;
  }
  auto region = std::make_shared<Region>();
  region->kind = ShmKind::kCuda;
  region->name = name;
  region->byte_size = byte_size;
  region->device = static_cast<int>(device_id);
  void* opened = nullptr;
  size_t allocation = 0;
  // Opened outside the lock: the driver call can take a while.
  const std::string error =
      CudaIpcOpen(raw_handle.data(), region->device, &opened, &allocation);
  if (!error.empty()) {
    Log(LogLevel::kError, "failed to open CUDA IPC handle: " + error);
    return invalid;
  }
  region->base = static_cast<char*>(opened);  // closed by ~Region from here on
  if (byte_size > allocation) {
    return Status(StatusCode::kInvalidArg, "failed to register shared memory region '" +
                                               name + "': invalid args");
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (regions_.count(name) != 0) return AlreadyRegistered(name);  // lost a race
  regions_.emplace(name, std::move(region));
  return Status::Ok();
}

Status SharedMemoryRegistry::Unregister(const std::string& name, ShmKind kind) {
  std::shared_ptr<Region> dropped;  // released outside the lock if it was the last
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = regions_.find(name);
    if (it == regions_.end() || it->second->kind != kind) return Status::Ok();
    dropped = std::move(it->second);
    regions_.erase(it);
  }
  return Status::Ok();
}

void SharedMemoryRegistry::UnregisterAll(ShmKind kind) {
  std::vector<std::shared_ptr<Region>> dropped;  // released outside the lock
  std::lock_guard<std::mutex> lock(mu_);
  for (auto it = regions_.begin(); it != regions_.end();) {
    if (it->second->kind == kind) {
      dropped.push_back(std::move(it->second));
      it = regions_.erase(it);
    } else {
      ++it;
    }
  }
}

Status SharedMemoryRegistry::GetStatus(const std::string& name,
                                       std::vector<ShmRegionStatus>* out,
                                       ShmKind kind) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto add = [out](const Region& region) {
    out->push_back(
        {region.name, region.key, region.offset, region.byte_size, region.device});
  };
  const bool cuda = kind == ShmKind::kCuda;
  if (name.empty()) {
    for (const auto& entry : regions_) {
      if (entry.second->kind == kind) add(*entry.second);
    }
    return Status::Ok();
  }
  auto it = regions_.find(name);
  if (it == regions_.end()) {
    return Status(StatusCode::kNotFound, std::string("Unable to find ") +
                                             (cuda ? "cuda" : "system") +
                                             " shared memory region: '" + name + "'");
  }
  if (it->second->kind != kind) {
    return Status(StatusCode::kNotFound,
                  "The region named '" + name + "' is registered as " +
                      (cuda ? "system shared memory, not CUDA shared memory"
                            : "CUDA shared memory, not system shared memory"));
  }
  add(*it->second);
  return Status::Ok();
}

bool SharedMemoryRegistry::Contains(const std::string& name) const {
  std::lock_guard<std::mutex> lock(mu_);
  return regions_.count(name) != 0;
}

Status SharedMemoryRegistry::Resolve(const std::string& name, uint64_t offset,
                                     uint64_t byte_size, ShmSpan* out,
                                     ShmUse use) const {
  std::shared_ptr<Region> region;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = regions_.find(name);
    if (it == regions_.end()) {
      return Status(StatusCode::kNotFound,
                    "Unable to find shared memory region: '" + name + "'");
    }
    region = it->second;
  }
  if (offset >= region->byte_size) {
    return Status(StatusCode::kInvalidArg,
                  "Invalid offset for shared memory region: '" + name + "'");
  }
  // Triton 2.51 checks offset + byte_size - 1 against the region's last byte: a zero
  // size is taken inside the region (the core then judges the tensor's size), but
  // at offset 0 the sum wraps and it is refused.
  if ((byte_size == 0 && offset == 0) || byte_size > region->byte_size - offset) {
    return Status(
        StatusCode::kInvalidArg,
        "Invalid offset + byte size for shared memory region: '" + name + "'");
  }
  out->byte_size = static_cast<size_t>(byte_size);
  if (region->kind == ShmKind::kCuda && use == ShmUse::kRead) {
    // The backends read host memory: one copy, owned by whoever holds the span.
    auto copy = std::make_shared<std::vector<char>>(out->byte_size);
    const std::string error =
        CudaCopyBlocking(copy->data(), region->base + offset, out->byte_size);
    if (!error.empty()) {
      return Status(
          StatusCode::kInternal,
          "failed to read CUDA shared memory region '" + name + "': " + error);
    }
    out->data = copy->data();
    out->owner = std::move(copy);
    out->device = -1;
    return Status::Ok();
  }
  out->data = region->base + offset;
  out->device = region->kind == ShmKind::kCuda ? region->device : -1;
  out->owner = std::move(region);
  return Status::Ok();
}

Status ShmDisallowed() {
  return Status(StatusCode::kUnsupported,
                "client shared memory is disabled on this server "
                "(--allow-client-shm=false)");
}

Status WriteShmOutput(const ShmOutput& target, const Tensor& tensor) {
  if (tensor.byte_size > target.span.byte_size) {
    return Status(StatusCode::kInternal,
                  "shared memory size specified with the request for output '" +
                      tensor.name + "' (" + std::to_string(target.span.byte_size) +
                      " bytes) should be at least " + std::to_string(tensor.byte_size) +
                      " bytes to hold the results");
  }
  if (tensor.byte_size == 0 || tensor.data == target.span.data) return Status::Ok();
  // Host or GPU output into a host or CUDA region: memcpy, or one CUDA copy (a GPU
  // output into a CUDA region goes device->device, never through the host).
  Status status = CopyTensorBytes(tensor, target.span.data, target.span.device);
  if (!status.ok()) {
    return Status(StatusCode::kInternal, "failed to write output '" + tensor.name +
                                             "' into " +
                                             (target.span.device >= 0 ? "CUDA " : "") +
                                             "shared memory region '" + target.region +
                                             "': " + status.message());
  }
  return Status::Ok();
}

const ShmOutput* FindShmOutput(const ShmOutputs& outputs, const std::string& name) {
  for (const auto& target : outputs) {
    if (target.name == name) return &target;
  }
  return nullptr;
}

}  // namespace tritonx
