#include "response_cache.h"

#include <algorithm>
#include <cstring>
#include <functional>
#include <string_view>

#include "logging.h"
#include "tensor_memory.h"

namespace tritonx {
namespace {

// What a cached tensor costs besides its bytes (name, shape, bookkeeping).
constexpr uint64_t kTensorOverhead = 64;

void Combine(uint64_t* seed, uint64_t value) {
  // boost::hash_combine's mixing, widened to 64 bits.
  *seed ^= value + 0x9e3779b97f4a7c15ULL + (*seed << 12) + (*seed >> 4);
}

uint64_t HashBytes(const char* data, size_t size) {
  return std::hash<std::string_view>()(std::string_view(data, size));
}

}  // namespace

struct LocalResponseCache::Entry {
  std::string bytes;  // every output's data, back to back
  struct Output {
    std::string name;
    DataType dtype;
    Shape shape;
    size_t offset;
    size_t size;
  };
  std::vector<Output> outputs;
  Parameters parameters;
  uint64_t cost = 0;
};

uint64_t ResponseCache::Key(const InferenceRequest& request) {
  uint64_t seed = 0;
  Combine(&seed, HashBytes(request.model_name.data(), request.model_name.size()));
  Combine(&seed, static_cast<uint64_t>(request.model_version));
  std::vector<const Tensor*> inputs;
  inputs.reserve(request.inputs.size());
  for (const Tensor& input : request.inputs) inputs.push_back(&input);
  std::sort(inputs.begin(), inputs.end(),
            [](const Tensor* a, const Tensor* b) { return a->name < b->name; });
  for (const Tensor* input : inputs) {
    Combine(&seed, HashBytes(input->name.data(), input->name.size()));
    Combine(&seed, static_cast<uint64_t>(input->dtype));
    Combine(&seed, input->shape.size());
    for (int64_t dim : input->shape) Combine(&seed, static_cast<uint64_t>(dim));
    Combine(&seed, input->byte_size);
    Combine(&seed, HashBytes(input->data, input->byte_size));
  }
  return seed;
}

std::unique_ptr<InferenceResponse> LocalResponseCache::Lookup(uint64_t key) {
  EntryPtr entry;
  {
    std::lock_guard<std::mutex> lock(mu_);
    ++stats_.lookups;
    auto it = index_.find(key);
    if (it == index_.end()) {
      ++stats_.misses;
      return nullptr;
    }
    ++stats_.hits;
    lru_.splice(lru_.begin(), lru_, it->second);
    entry = it->second->second;
  }
  auto response = std::make_unique<InferenceResponse>();
  response->parameters = entry->parameters;
  response->outputs.reserve(entry->outputs.size());
  for (const auto& output : entry->outputs) {
    Tensor tensor;
    tensor.name = output.name;
    tensor.dtype = output.dtype;
    tensor.shape = output.shape;
    tensor.data = entry->bytes.data() + output.offset;
    tensor.byte_size = output.size;
    tensor.owner = entry;   // the bytes outlive an eviction
    tensor.aliased = true;  // every hit reads them (a BLS caller may not write)
    response->outputs.push_back(std::move(tensor));
  }
  return response;
}

void LogFailedInsert(uint64_t key, const Status& status) {
  if (status.ok()) return;
  Log(LogLevel::kError, "Failed to insert key [" + std::to_string(key) +
                            "] into response cache: " + status.message());
}

Status LocalResponseCache::Insert(uint64_t key, const InferenceResponse& response) {
  if (!response.status.ok()) return Status::Ok();
  uint64_t cost = 0;
  size_t total = 0;
  for (const Tensor& tensor : response.outputs) {
    total += tensor.byte_size;
    cost += tensor.byte_size + kTensorOverhead;
  }
  if (cost > capacity_) {  // would evict everything and still not fit
    return InvalidArgError(
        "Requested byte_size: " + std::to_string(cost) +
        " is greater than total cache size: " + std::to_string(capacity_));
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (index_.count(key) != 0) return Status::Ok();
  }
  // Copy outside the lock: large outputs must not stall other lookups.
  auto entry = std::make_shared<Entry>();
  entry->bytes.resize(total);
  size_t offset = 0;
  for (const Tensor& tensor : response.outputs) {
    // Entries hold host bytes (hits are answered from them); a GPU output is
    // copied device->host here, and a response that cannot be copied is not cached.
    Status copied = CopyTensorBytes(tensor, &entry->bytes[offset]);
    if (!copied.ok()) return copied;
    entry->outputs.push_back(
        {tensor.name, tensor.dtype, tensor.shape, offset, tensor.byte_size});
    offset += tensor.byte_size;
  }
  entry->parameters = response.parameters;
  entry->cost = cost;

  std::vector<EntryPtr> evicted;  // freed outside the lock
  std::lock_guard<std::mutex> lock(mu_);
  if (index_.count(key) != 0) return Status::Ok();  // another miss of the key won
  while (!lru_.empty() && stats_.bytes + cost > capacity_) {
    auto& victim = lru_.back();
    stats_.bytes -= victim.second->cost;
    index_.erase(victim.first);
    evicted.push_back(std::move(victim.second));
    lru_.pop_back();
    ++stats_.evictions;
  }
  lru_.emplace_front(key, std::move(entry));
  index_[key] = lru_.begin();
  stats_.bytes += cost;
  ++stats_.insertions;
  return Status::Ok();
}

ResponseCacheStats LocalResponseCache::Stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  ResponseCacheStats stats = stats_;
  stats.entries = index_.size();
  stats.capacity = capacity_;
  return stats;
}

}  // namespace tritonx
