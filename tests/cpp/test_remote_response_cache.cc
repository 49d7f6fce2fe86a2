// RemoteResponseCache: the entry encoding (round trip, and every malformed value a
// store could hand back is a miss) and the worker queue (batched lookups, inserts
// off the caller's thread, Close answering what is queued). The store here is an
// in-memory map; tests/server/test_response_cache_redis.py runs the cache against a
// real Redis through the server.
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <future>
#include <map>
#include <mutex>

#include "core/remote_response_cache.h"
#include "core/response_cache.h"

namespace tritonx {
namespace {

Tensor HostTensor(const std::string& name, DataType dtype, Shape shape,
                  const std::string& bytes) {
  auto owner = std::make_shared<std::string>(bytes);
  Tensor tensor;
  tensor.name = name;
  tensor.dtype = dtype;
  tensor.shape = std::move(shape);
  tensor.data = owner->data();
  tensor.byte_size = owner->size();
  tensor.owner = owner;
  return tensor;
}

InferenceResponse SampleResponse() {
  InferenceResponse response;
  const float values[3] = {1.5f, -2.0f, 3.25f};
  response.outputs.push_back(
      HostTensor("OUT_FP32", DataType::kFp32, {1, 3},
                 std::string(reinterpret_cast<const char*>(values), sizeof(values))));
  std::string words;
  AppendBytesElement(&words, "hello", 5);
  AppendBytesElement(&words, "", 0);
  response.outputs.push_back(HostTensor("OUT_BYTES", DataType::kBytes, {2}, words));
  response.parameters.emplace_back("flag", true);
  response.parameters.emplace_back("signed", int64_t{-7});
  response.parameters.emplace_back("unsigned", uint64_t{1} << 63);
  response.parameters.emplace_back("ratio", 0.25);
  response.parameters.emplace_back("note", std::string("cached"));
  return response;
}

std::string Bytes(const Tensor& tensor) {
  return std::string(tensor.data, tensor.byte_size);
}

TEST(ResponseCacheEntry, RoundTrip) {
  const InferenceResponse original = SampleResponse();
  std::optional<std::string> encoded = EncodeEntry(original);
  ASSERT_TRUE(encoded);
  auto decoded = DecodeEntry(std::make_shared<const std::string>(*encoded));
  ASSERT_NE(decoded, nullptr);
  ASSERT_EQ(decoded->outputs.size(), 2u);
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(decoded->outputs[i].name, original.outputs[i].name);
    EXPECT_EQ(decoded->outputs[i].dtype, original.outputs[i].dtype);
    EXPECT_EQ(decoded->outputs[i].shape, original.outputs[i].shape);
    EXPECT_EQ(Bytes(decoded->outputs[i]), Bytes(original.outputs[i]));
    EXPECT_TRUE(decoded->outputs[i].aliased);
  }
  EXPECT_EQ(decoded->parameters, original.parameters);
}

TEST(ResponseCacheEntry, EveryTruncationIsRejected) {
  std::string encoded = *EncodeEntry(SampleResponse());
  for (size_t size = 0; size < encoded.size(); ++size) {
    auto prefix = std::make_shared<const std::string>(encoded.substr(0, size));
    EXPECT_EQ(DecodeEntry(prefix), nullptr) << "prefix of " << size << " bytes";
  }
  EXPECT_EQ(DecodeEntry(std::make_shared<const std::string>(encoded + "x")), nullptr);
}

TEST(ResponseCacheEntry, InconsistentValuesAreRejected) {
  const std::string good = *EncodeEntry(SampleResponse());
  auto decodes = [](std::string bytes) {
    return DecodeEntry(std::make_shared<const std::string>(std::move(bytes))) !=
           nullptr;
  };
  ASSERT_TRUE(decodes(good));

  std::string magic = good;
  magic[0] = 'X';
  EXPECT_FALSE(decodes(magic));
  std::string version = good;
  version[4] = 9;
  EXPECT_FALSE(decodes(version));

  // A shape that claims more elements than the bytes hold.
  InferenceResponse wide = SampleResponse();
  wide.outputs[0].shape = {1, 4};
  EXPECT_FALSE(decodes(*EncodeEntry(wide)));
  // A negative dim, and a dim whose element count overflows.
  wide.outputs[0].shape = {-1, 3};
  EXPECT_FALSE(decodes(*EncodeEntry(wide)));
  wide.outputs[0].shape = {int64_t{1} << 62, 4};
  EXPECT_FALSE(decodes(*EncodeEntry(wide)));
  // BYTES whose element lengths run past the end, or count differently.
  InferenceResponse words = SampleResponse();
  words.outputs[1] =
      HostTensor("OUT_BYTES", DataType::kBytes, {1}, std::string("\x09\0\0\0ab", 6));
  EXPECT_FALSE(decodes(*EncodeEntry(words)));
  words.outputs[1].shape = {3};
  words.outputs[1] =
      HostTensor("OUT_BYTES", DataType::kBytes, {3}, std::string("\x01\0\0\0a", 5));
  EXPECT_FALSE(decodes(*EncodeEntry(words)));
  // An unknown datatype name.
  InferenceResponse invalid = SampleResponse();
  invalid.outputs[0].dtype = DataType::kInvalid;
  EXPECT_FALSE(decodes(*EncodeEntry(invalid)));
}

// An in-memory store that records the batches it is given and can hold lookups
// until released.
class MapStore final : public ResponseStore {
 public:
  std::vector<std::optional<std::string>> GetMany(
      const std::vector<std::string>& keys) override {
    std::unique_lock<std::mutex> lock(mu_);
    lookup_batches.push_back(keys.size());
    entered_.notify_all();
    released_.wait(lock, [this] { return !hold_; });
    std::vector<std::optional<std::string>> values;
    for (const std::string& key : keys) {
      auto it = entries.find(key);
      values.push_back(it == entries.end() ? std::nullopt
                                           : std::optional<std::string>(it->second));
    }
    return values;
  }
  size_t PutMany(
      const std::vector<std::pair<std::string, std::string>>& batch) override {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& [key, value] : batch) entries[key] = value;
    put_cv_.notify_all();
    return batch.size();
  }
  void Hold() {
    std::lock_guard<std::mutex> lock(mu_);
    hold_ = true;
  }
  void Release() {
    std::lock_guard<std::mutex> lock(mu_);
    hold_ = false;
    released_.notify_all();
  }
  void WaitForLookup() {
    std::unique_lock<std::mutex> lock(mu_);
    entered_.wait(lock, [this] { return !lookup_batches.empty(); });
  }
  void WaitForEntries(size_t count) {
    std::unique_lock<std::mutex> lock(mu_);
    put_cv_.wait(lock, [&] { return entries.size() >= count; });
  }

  std::map<std::string, std::string> entries;
  std::vector<size_t> lookup_batches;

 private:
  std::mutex mu_;
  std::condition_variable entered_, released_, put_cv_;
  bool hold_ = false;
};

TEST(LocalResponseCache, AnEntryLargerThanTheCacheIsRefusedWithTritonsReason) {
  const InferenceResponse response = SampleResponse();
  LocalResponseCache tiny(16);
  Status refused = tiny.Insert(7, response);
  EXPECT_EQ(refused.code(), StatusCode::kInvalidArg);
  EXPECT_EQ(refused.message().rfind("Requested byte_size: ", 0), 0u)
      << refused.message();
  EXPECT_NE(refused.message().find(" is greater than total cache size: 16"),
            std::string::npos);
  EXPECT_EQ(tiny.Lookup(7), nullptr);
  LocalResponseCache roomy(1 << 20);
  EXPECT_TRUE(roomy.Insert(7, response).ok());
  EXPECT_TRUE(roomy.Insert(7, response).ok());  // present already: nothing to do
  EXPECT_NE(roomy.Lookup(7), nullptr);
}

TEST(RemoteResponseCache, InsertThenHitThroughTheStore) {
  auto store = std::make_shared<MapStore>();
  RemoteResponseCache cache(store, 1);
  EXPECT_TRUE(cache.remote());
  EXPECT_EQ(cache.Lookup(7), nullptr);
  EXPECT_TRUE(cache.Insert(7, SampleResponse()).ok());
  store->WaitForEntries(1);
  EXPECT_EQ(store->entries.count(RemoteResponseCache::StoreKey(7)), 1u);
  EXPECT_EQ(RemoteResponseCache::StoreKey(7), "tritonx:rc1:0000000000000007");

  std::promise<std::unique_ptr<InferenceResponse>> answered;
  cache.LookupAsync(7, [&](std::unique_ptr<InferenceResponse> hit) {
    answered.set_value(std::move(hit));
  });
  auto hit = answered.get_future().get();
  ASSERT_NE(hit, nullptr);
  EXPECT_EQ(Bytes(hit->outputs[1]), Bytes(SampleResponse().outputs[1]));
  ResponseCacheStats stats = cache.Stats();
  EXPECT_EQ(stats.lookups, 2u);
  EXPECT_EQ(stats.hits, 1u);
  EXPECT_EQ(stats.misses, 1u);
  EXPECT_EQ(stats.insertions, 1u);

  // A malformed value in the store is a miss.
  store->entries[RemoteResponseCache::StoreKey(8)] = "TXRC garbage";
  EXPECT_EQ(cache.Lookup(8), nullptr);
}

TEST(RemoteResponseCache, QueuedLookupsGoToTheStoreTogether) {
  auto store = std::make_shared<MapStore>();
  RemoteResponseCache cache(store, 1);
  store->Hold();
  std::atomic<int> answered{0};
  cache.LookupAsync(1, [&](std::unique_ptr<InferenceResponse>) { ++answered; });
  store->WaitForLookup();  // the worker is inside the store with the first key
  for (uint64_t key = 2; key <= 6; ++key) {
    cache.LookupAsync(key, [&](std::unique_ptr<InferenceResponse>) { ++answered; });
  }
  store->Release();
  while (answered.load() < 6) std::this_thread::yield();
  cache.Close();
  // The five that queued behind the first went to the store as one batch.
  EXPECT_EQ(store->lookup_batches, (std::vector<size_t>{1, 5}));
}

TEST(RemoteResponseCache, CloseAnswersQueuedLookupsAsMisses) {
  auto store = std::make_shared<MapStore>();
  auto cache = std::make_unique<RemoteResponseCache>(store, 1);
  store->Hold();
  std::atomic<int> misses{0};
  auto count_miss = [&](std::unique_ptr<InferenceResponse> hit) {
    if (!hit) ++misses;
  };
  cache->LookupAsync(1, count_miss);
  store->WaitForLookup();
  cache->LookupAsync(2, count_miss);
  cache->LookupAsync(3, count_miss);
  std::thread closer([&] { cache->Close(); });
  store->Release();
  closer.join();
  EXPECT_EQ(misses.load(), 3);
  cache->LookupAsync(4, count_miss);  // after Close: answered inline
  EXPECT_EQ(misses.load(), 4);
}

}  // namespace
}  // namespace tritonx
