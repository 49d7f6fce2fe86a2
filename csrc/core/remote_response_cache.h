// RemoteResponseCache: a response cache whose entries live in an external store
// (`--cache-config redis,...`; the store itself is Python, tritonx/caches/), so that
// every replica pointed at the same store shares one cache and a restarted server
// starts warm.
//
// Entries are encoded (EncodeEntry) into one byte string per key: outputs (name,
// datatype, shape, bytes) and response parameters, behind a magic and a format
// version. Store keys are "tritonx:rc1:<16 hex digits of the 64-bit key>". The store
// decides lifetime and eviction (Redis: its maxmemory policy), as with Triton's
// redis cache, which has no size of its own. Whatever comes back from the store is
// checked before it is used (DecodeEntry): a value that is not a well-formed entry,
// or whose shapes and byte sizes disagree, is a miss, never an out-of-bounds read.
//
// Stores answer over the network, so no caller waits for them: LookupAsync and
// Insert queue the work for the cache's own worker threads, which take everything
// queued at once and hand it to the store as one batch (a store pipelines a batch
// into one round trip). A failed or unreachable store makes lookups misses and
// drops inserts; requests are answered by the model either way. Inserts queued
// beyond `max_pending_insert_bytes` are dropped (it is a cache).
//
// Thread safety: every public method is thread safe. Ownership: the cache owns its
// workers and shares the store; Close() (also run by the destructor) answers
// every queued lookup as a miss, drops queued inserts and joins the workers. A
// store that needs a lock the caller holds (Python's GIL) must not be closed
// while holding it.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "response_cache.h"

namespace tritonx {

// Where a RemoteResponseCache keeps its entries. Called only from the cache's
// worker threads (several at once when the cache has several workers), one batch
// at a time; may block for as long as a round trip takes. Never throws: a failure
// is a miss (GetMany) or a dropped insert (PutMany, which returns how many it stored).
class ResponseStore {
 public:
  virtual ~ResponseStore() = default;
  // One value per key, in order; nullopt for a key that is absent or failed.
  virtual std::vector<std::optional<std::string>> GetMany(
      const std::vector<std::string>& keys) = 0;
  virtual size_t PutMany(
      const std::vector<std::pair<std::string, std::string>>& entries) = 0;
};

// One entry's bytes for `response`'s outputs and parameters; nullopt when an
// output's bytes cannot be read on the host (a failed device copy).
std::optional<std::string> EncodeEntry(const InferenceResponse& response);
// The response an encoded entry holds (outputs pointing into `bytes`, which the
// response keeps alive), or null when `bytes` is not a well-formed entry.
std::unique_ptr<InferenceResponse> DecodeEntry(
    std::shared_ptr<const std::string> bytes);

class RemoteResponseCache final : public ResponseCache {
 public:
  RemoteResponseCache(std::shared_ptr<ResponseStore> store, size_t workers,
                      uint64_t max_pending_insert_bytes = 64ull << 20);
  ~RemoteResponseCache() override;  // Close()

  static std::string StoreKey(uint64_t key);

  bool remote() const override { return true; }
  // Blocks the caller for the round trip (tests, tools); Model::Enqueue uses
  // LookupAsync.
  std::unique_ptr<InferenceResponse> Lookup(uint64_t key) override;
  void LookupAsync(uint64_t key, CacheLookupDone done) override;
  // Encodes the entry on the caller's thread (the response's buffers are not kept)
  // and queues the store write.
  Status Insert(uint64_t key, const InferenceResponse& response) override;
  // entries/bytes/capacity/evictions are the store's business and stay 0.
  ResponseCacheStats Stats() const override;

  // Stops the workers (see the class comment). Idempotent.
  void Close();

 private:
  struct PendingLookup {
    uint64_t key;
    CacheLookupDone done;
  };

  void Work();
  // Counts the outcome and decodes a value from the store.
  std::unique_ptr<InferenceResponse> Answer(const std::optional<std::string>& value);

  const std::shared_ptr<ResponseStore> store_;
  const uint64_t max_pending_insert_bytes_;
  std::mutex mu_;
  std::condition_variable work_ready_;
  bool closed_ = false;
  std::deque<PendingLookup> lookups_;
  std::vector<std::pair<std::string, std::string>> inserts_;
  uint64_t pending_insert_bytes_ = 0;
  std::vector<std::thread> workers_;

  std::atomic<uint64_t> lookups_count_{0};
  std::atomic<uint64_t> hits_{0};
  std::atomic<uint64_t> misses_{0};
  std::atomic<uint64_t> insertions_{0};
};

}  // namespace tritonx
