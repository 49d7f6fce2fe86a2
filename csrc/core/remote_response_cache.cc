#include "remote_response_cache.h"

#include <cstdio>
#include <cstring>
#include <limits>
#include <type_traits>

#include "logging.h"
#include "tensor_memory.h"

namespace tritonx {
namespace {

// "TXRC" then the format version. A new layout takes a new version (and a new
// store key prefix), so replicas of different versions never misread each other.
constexpr char kMagic[4] = {'T', 'X', 'R', 'C'};
constexpr uint8_t kFormatVersion = 1;
// Lookups one worker takes from the queue at a time (one store round trip).
constexpr size_t kMaxLookupBatch = 256;

enum class ParameterTag : uint8_t { kBool, kInt64, kUint64, kDouble, kString };

// Fixed-size fields are written in the host's byte order: every platform tritonx
// builds for is little-endian, and the magic/version check rejects anything else.
template <typename T>
void Put(std::string* out, T value) {
  static_assert(std::is_trivially_copyable_v<T>);
  out->append(reinterpret_cast<const char*>(&value), sizeof(T));
}

void PutString(std::string* out, std::string_view text) {
  Put<uint32_t>(out, static_cast<uint32_t>(text.size()));
  out->append(text.data(), text.size());
}

// Reads an entry front to back; every read checks what is left first.
class EntryReader {
 public:
  explicit EntryReader(const std::string& bytes)
      : data_(bytes.data()), left_(bytes.size()) {}

  template <typename T>
  bool Get(T* value) {
    if (left_ < sizeof(T)) return false;
    std::memcpy(value, data_, sizeof(T));
    Skip(sizeof(T));
    return true;
  }
  bool GetString(std::string* text) {
    uint32_t size;
    if (!Get(&size) || left_ < size) return false;
    text->assign(data_, size);
    Skip(size);
    return true;
  }
  // A view of the next `size` bytes.
  bool GetSpan(size_t size, const char** span) {
    if (left_ < size) return false;
    *span = data_;
    Skip(size);
    return true;
  }
  bool done() const { return left_ == 0; }

 private:
  void Skip(size_t size) {
    data_ += size;
    left_ -= size;
  }
  const char* data_;
  size_t left_;
};

void PutParameter(std::string* out, const ParameterValue& value) {
  if (const auto* b = std::get_if<bool>(&value)) {
    Put(out, ParameterTag::kBool);
    Put<uint8_t>(out, *b ? 1 : 0);
  } else if (const auto* i = std::get_if<int64_t>(&value)) {
    Put(out, ParameterTag::kInt64);
    Put(out, *i);
  } else if (const auto* u = std::get_if<uint64_t>(&value)) {
    Put(out, ParameterTag::kUint64);
    Put(out, *u);
  } else if (const auto* d = std::get_if<double>(&value)) {
    Put(out, ParameterTag::kDouble);
    Put(out, *d);
  } else {
    Put(out, ParameterTag::kString);
    PutString(out, std::get<std::string>(value));
  }
}

bool GetParameter(EntryReader* in, ParameterValue* value) {
  ParameterTag tag;
  if (!in->Get(&tag)) return false;
  switch (tag) {
    case ParameterTag::kBool: {
      uint8_t b;
      if (!in->Get(&b)) return false;
      *value = b != 0;
      return true;
    }
    case ParameterTag::kInt64: {
      int64_t i;
      if (!in->Get(&i)) return false;
      *value = i;
      return true;
    }
    case ParameterTag::kUint64: {
      uint64_t u;
      if (!in->Get(&u)) return false;
      *value = u;
      return true;
    }
    case ParameterTag::kDouble: {
      double d;
      if (!in->Get(&d)) return false;
      *value = d;
      return true;
    }
    case ParameterTag::kString: {
      std::string s;
      if (!in->GetString(&s)) return false;
      *value = std::move(s);
      return true;
    }
  }
  return false;
}

// The shape and bytes of a decoded output agree the way a model's output must:
// element count times element size, or a well-formed BYTES buffer with one
// element per shape element.
bool ConsistentOutput(const Tensor& tensor) {
  int64_t elements;
  if (CheckedElementCount(tensor.shape, &elements) != ShapeCount::kOk) return false;
  if (tensor.dtype == DataType::kBytes) {
    return CountBytesElements(tensor.data, tensor.byte_size) == elements;
  }
  const size_t element_size = DataTypeByteSize(tensor.dtype);
  if (element_size == 0) return false;
  const uint64_t limit = std::numeric_limits<uint64_t>::max() / element_size;
  return static_cast<uint64_t>(elements) <= limit &&
         static_cast<uint64_t>(elements) * element_size == tensor.byte_size;
}

}  // namespace

std::optional<std::string> EncodeEntry(const InferenceResponse& response) {
  size_t total = 64;
  for (const Tensor& tensor : response.outputs) {
    total += tensor.byte_size + tensor.name.size() + 16 + 8 * tensor.shape.size() + 32;
  }
  std::string out;
  out.reserve(total);
  out.append(kMagic, sizeof(kMagic));
  Put(&out, kFormatVersion);
  Put<uint32_t>(&out, static_cast<uint32_t>(response.outputs.size()));
  for (const Tensor& tensor : response.outputs) {
    PutString(&out, tensor.name);
    PutString(&out, DataTypeName(tensor.dtype));
    Put<uint32_t>(&out, static_cast<uint32_t>(tensor.shape.size()));
    for (int64_t dim : tensor.shape) Put(&out, dim);
    Put<uint64_t>(&out, tensor.byte_size);
    const size_t offset = out.size();
    out.resize(offset + tensor.byte_size);
    // A GPU output is copied device->host here; one that cannot be is not cached.
    if (!CopyTensorBytes(tensor, out.data() + offset).ok()) return std::nullopt;
  }
  Put<uint32_t>(&out, static_cast<uint32_t>(response.parameters.size()));
  for (const auto& [name, value] : response.parameters) {
    PutString(&out, name);
    PutParameter(&out, value);
  }
  return out;
}

std::unique_ptr<InferenceResponse> DecodeEntry(
    std::shared_ptr<const std::string> bytes) {
  EntryReader in(*bytes);
  const char* magic;
  uint8_t version;
  if (!in.GetSpan(sizeof(kMagic), &magic) ||
      std::memcmp(magic, kMagic, sizeof(kMagic)) != 0 || !in.Get(&version) ||
      version != kFormatVersion) {
    return nullptr;
  }
  auto response = std::make_unique<InferenceResponse>();
  uint32_t output_count;
  if (!in.Get(&output_count)) return nullptr;
  for (uint32_t i = 0; i < output_count; ++i) {
    Tensor tensor;
    std::string dtype_name;
    uint32_t rank;
    uint64_t byte_size;
    if (!in.GetString(&tensor.name) || !in.GetString(&dtype_name) || !in.Get(&rank)) {
      return nullptr;
    }
    tensor.dtype = DataTypeFromName(dtype_name);
    if (tensor.dtype == DataType::kInvalid) return nullptr;
    for (uint32_t d = 0; d < rank; ++d) {
      int64_t dim;
      if (!in.Get(&dim)) return nullptr;
      tensor.shape.push_back(dim);
    }
    if (!in.Get(&byte_size) || !in.GetSpan(byte_size, &tensor.data)) return nullptr;
    tensor.byte_size = byte_size;
    if (!ConsistentOutput(tensor)) return nullptr;
    tensor.owner = bytes;   // the outputs read the entry in place
    tensor.aliased = true;  // as with local hits: a BLS caller may not write them
    response->outputs.push_back(std::move(tensor));
  }
  uint32_t parameter_count;
  if (!in.Get(&parameter_count)) return nullptr;
  for (uint32_t i = 0; i < parameter_count; ++i) {
    std::string name;
    ParameterValue value;
    if (!in.GetString(&name) || !GetParameter(&in, &value)) return nullptr;
    response->parameters.emplace_back(std::move(name), std::move(value));
  }
  if (!in.done()) return nullptr;
  return response;
}

RemoteResponseCache::RemoteResponseCache(std::shared_ptr<ResponseStore> store,
                                         size_t workers,
                                         uint64_t max_pending_insert_bytes)
    : store_(std::move(store)), max_pending_insert_bytes_(max_pending_insert_bytes) {
  if (workers == 0) workers = 1;
  workers_.reserve(workers);
  for (size_t i = 0; i < workers; ++i) workers_.emplace_back([this] { Work(); });
}

RemoteResponseCache::~RemoteResponseCache() { Close(); }

std::string RemoteResponseCache::StoreKey(uint64_t key) {
  char hex[17];
  std::snprintf(hex, sizeof(hex), "%016llx", static_cast<unsigned long long>(key));
  return std::string("tritonx:rc1:") + hex;
}

std::unique_ptr<InferenceResponse> RemoteResponseCache::Answer(
    const std::optional<std::string>& value) {
  lookups_count_.fetch_add(1, std::memory_order_relaxed);
  std::unique_ptr<InferenceResponse> hit;
  if (value) {
    hit = DecodeEntry(std::make_shared<const std::string>(*value));
    if (!hit) Log(LogLevel::kWarning, "response cache: ignoring a malformed entry");
  }
  (hit ? hits_ : misses_).fetch_add(1, std::memory_order_relaxed);
  return hit;
}

std::unique_ptr<InferenceResponse> RemoteResponseCache::Lookup(uint64_t key) {
  std::vector<std::optional<std::string>> values = store_->GetMany({StoreKey(key)});
  return Answer(values.empty() ? std::nullopt : std::move(values.front()));
}

void RemoteResponseCache::LookupAsync(uint64_t key, CacheLookupDone done) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!closed_) {
      lookups_.push_back({key, std::move(done)});
      work_ready_.notify_one();
      return;
    }
  }
  done(nullptr);  // closed: a miss, answered by the model
}

Status RemoteResponseCache::Insert(uint64_t key, const InferenceResponse& response) {
  if (!response.status.ok()) return Status::Ok();
  std::optional<std::string> entry = EncodeEntry(response);
  if (!entry) return InternalError("an output could not be copied to host memory");
  std::lock_guard<std::mutex> lock(mu_);
  if (closed_ || pending_insert_bytes_ + entry->size() > max_pending_insert_bytes_) {
    // The store is behind: dropping an insert only costs a later miss (and the
    // store's own failures are logged by the workers, at most every few seconds).
    return Status::Ok();
  }
  pending_insert_bytes_ += entry->size();
  inserts_.emplace_back(StoreKey(key), std::move(*entry));
  work_ready_.notify_one();
  return Status::Ok();
}

ResponseCacheStats RemoteResponseCache::Stats() const {
  ResponseCacheStats stats;
  stats.lookups = lookups_count_.load(std::memory_order_relaxed);
  stats.hits = hits_.load(std::memory_order_relaxed);
  stats.misses = misses_.load(std::memory_order_relaxed);
  stats.insertions = insertions_.load(std::memory_order_relaxed);
  return stats;
}

void RemoteResponseCache::Close() {
  std::vector<std::thread> workers;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (closed_) return;
    closed_ = true;
    workers.swap(workers_);
  }
  work_ready_.notify_all();
  for (std::thread& worker : workers) worker.join();
}

void RemoteResponseCache::Work() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    work_ready_.wait(
        lock, [this] { return closed_ || !lookups_.empty() || !inserts_.empty(); });
    if (closed_) {
      // Lookups still queued are answered as misses (their models run them); queued
      // inserts are dropped.
      std::deque<PendingLookup> orphans;
      orphans.swap(lookups_);
      inserts_.clear();
      lock.unlock();
      for (PendingLookup& lookup : orphans) lookup.done(nullptr);
      return;
    }
    if (!lookups_.empty()) {
      // Lookups first: a client waits on each of them.
      std::vector<PendingLookup> batch;
      while (!lookups_.empty() && batch.size() < kMaxLookupBatch) {
        batch.push_back(std::move(lookups_.front()));
        lookups_.pop_front();
      }
      lock.unlock();
      std::vector<std::string> keys;
      keys.reserve(batch.size());
      for (const PendingLookup& lookup : batch) keys.push_back(StoreKey(lookup.key));
      std::vector<std::optional<std::string>> values = store_->GetMany(keys);
      for (size_t i = 0; i < batch.size(); ++i) {
        batch[i].done(Answer(i < values.size() ? values[i] : std::nullopt));
      }
      lock.lock();
      continue;
    }
    std::vector<std::pair<std::string, std::string>> batch;
    batch.swap(inserts_);
    pending_insert_bytes_ = 0;
    lock.unlock();
    insertions_.fetch_add(store_->PutMany(batch), std::memory_order_relaxed);
    batch.clear();  // the entries' bytes are freed outside the lock
    lock.lock();
  }
}

}  // namespace tritonx
