#include "shared_memory_registry.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace tritonx {

// One mapped region. The mapping starts at the page boundary at or below the
// registered offset (mmap needs an aligned offset; Triton refuses unaligned ones,
// tritonx maps a little more instead), `base` is the registered offset itself.
struct SharedMemoryRegistry::Region {
  std::string name;
  std::string key;
  uint64_t offset = 0;
  uint64_t byte_size = 0;
  void* mapping = nullptr;
  size_t mapping_size = 0;
  char* base = nullptr;

  ~Region() {
    if (mapping != nullptr && mapping != MAP_FAILED) munmap(mapping, mapping_size);
  }
};

Status SharedMemoryRegistry::Register(const std::string& name, const std::string& key,
                                      uint64_t offset, uint64_t byte_size) {
  std::lock_guard<std::mutex> lock(mu_);
  if (regions_.count(name) != 0) {
    return Status(StatusCode::kAlreadyExists,
                  "shared memory region '" + name + "' already in manager");
  }
  const int fd = shm_open(key.c_str(), O_RDWR, S_IRUSR | S_IWUSR);
  if (fd == -1) {
    return Status(StatusCode::kInternal,
                  "Unable to open shared memory region: '" + key + "'");
  }
  struct stat info;
  const bool sized = fstat(fd, &info) == 0 && info.st_size >= 0;
  const uint64_t object_size = sized ? static_cast<uint64_t>(info.st_size) : 0;
  if (!sized || offset > object_size || byte_size > object_size - offset) {
    close(fd);
    return Status(StatusCode::kInternal, "Invalid shared memory region: '" + key + "'");
  }
  auto region = std::make_shared<Region>();
  region->name = name;
  region->key = key;
  region->offset = offset;
  region->byte_size = byte_size;
  if (byte_size > 0) {
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
                        "': unable to map it: " + reason);
    }
    region->base = static_cast<char*>(region->mapping) + (offset - start);
  }
  close(fd);  // the mapping stays valid without the descriptor
  regions_.emplace(name, std::move(region));
  return Status::Ok();
}

Status SharedMemoryRegistry::Unregister(const std::string& name) {
  std::shared_ptr<Region> dropped;  // unmapped outside the lock if it was the last
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = regions_.find(name);
    if (it == regions_.end()) return Status::Ok();
    dropped = std::move(it->second);
    regions_.erase(it);
  }
  return Status::Ok();
}

void SharedMemoryRegistry::UnregisterAll() {
  std::map<std::string, std::shared_ptr<Region>> dropped;
  std::lock_guard<std::mutex> lock(mu_);
  dropped.swap(regions_);
}

Status SharedMemoryRegistry::GetStatus(const std::string& name,
                                       std::vector<ShmRegionStatus>* out) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto add = [out](const Region& region) {
    out->push_back({region.name, region.key, region.offset, region.byte_size});
  };
  if (name.empty()) {
    for (const auto& entry : regions_) add(*entry.second);
    return Status::Ok();
  }
  auto it = regions_.find(name);
  if (it == regions_.end()) {
    return Status(StatusCode::kNotFound,
                  "Unable to find system shared memory region: '" + name + "'");
  }
  add(*it->second);
  return Status::Ok();
}

bool SharedMemoryRegistry::Contains(const std::string& name) const {
  std::lock_guard<std::mutex> lock(mu_);
  return regions_.count(name) != 0;
}

Status SharedMemoryRegistry::Resolve(const std::string& name, uint64_t offset,
                                     uint64_t byte_size, ShmSpan* out) const {
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
  // A zero size is refused too, as Triton 2.51 does (its end check underflows).
  if (byte_size == 0 || byte_size > region->byte_size - offset) {
    return Status(
        StatusCode::kInvalidArg,
        "Invalid offset + byte size for shared memory region: '" + name + "'");
  }
  out->data = region->base + offset;
  out->byte_size = static_cast<size_t>(byte_size);
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
  if (tensor.byte_size > 0 && tensor.data != target.span.data) {
    std::memcpy(target.span.data, tensor.data, tensor.byte_size);
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
