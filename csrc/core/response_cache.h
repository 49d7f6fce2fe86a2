// ResponseCache: the server's response cache (`--cache-config`), shared by every
// model whose config sets `response_cache.enable`. Two kinds: LocalResponseCache
// below (`local`: an LRU in this process) and RemoteResponseCache
// (remote_response_cache.h: encoded entries in an external store such as Redis,
// shared by every replica that uses the same store).
//
// A request's key hashes its model name and version and its inputs in name order:
// each input's name, datatype, shape and bytes. Triton hashes names and bytes only;
// tritonx adds datatype and shape so that the same bytes under another shape never
// return a response of the wrong shape. Like Triton it leaves out request
// parameters and requested outputs: a hit returns the cached outputs, filtered to
// what the request asks for (the cache keeps every output the model produced).
// The key is 64 bits, as in Triton, and a collision returns the other request's
// response (Triton's documented limitation).
//
// Thread safety: every method of every implementation is thread safe. Ownership:
// one per ServerContext, shared with the models.
#pragma once

#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "infer_request.h"

namespace tritonx {

struct ResponseCacheStats {
  uint64_t entries = 0;
  uint64_t bytes = 0;  // in use, of `capacity`
  uint64_t capacity = 0;
  uint64_t lookups = 0;
  uint64_t hits = 0;
  uint64_t misses = 0;
  uint64_t insertions = 0;
  uint64_t evictions = 0;
};

using CacheLookupDone = std::function<void(std::unique_ptr<InferenceResponse>)>;

class ResponseCache {
 public:
  ResponseCache() = default;
  virtual ~ResponseCache() = default;
  ResponseCache(const ResponseCache&) = delete;
  ResponseCache& operator=(const ResponseCache&) = delete;

  // The key of a validated request (model name and version already stamped).
  static uint64_t Key(const InferenceRequest& request);

  // Lookups wait on a network store. Model::Enqueue then uses LookupAsync, so that
  // no frontend thread (an HTTP event loop, a gRPC callback) waits for the store.
  virtual bool remote() const { return false; }

  // The cached response for `key` (outputs pointing into the entry), or null.
  virtual std::unique_ptr<InferenceResponse> Lookup(uint64_t key) = 0;

  // Looks `key` up and calls `done` exactly once with the hit or null, from a
  // thread of the cache's own (remote caches) or inline (the default).
  virtual void LookupAsync(uint64_t key, CacheLookupDone done) { done(Lookup(key)); }

  // Caches a copy of a successful response's outputs under `key`. OK also when the
  // key is present already, or a remote store is behind and the insert is dropped;
  // an error when the entry cannot be cached at all (larger than the whole cache,
  // an output that cannot be copied to host), which callers log (LogFailedInsert).
  virtual Status Insert(uint64_t key, const InferenceResponse& response) = 0;

  virtual ResponseCacheStats Stats() const = 0;
};

// Triton's error line for an insert that failed (no line for OK): "Failed to insert
// key [<key>] into response cache: <why>". Callers log rather than the caches, as
// Triton's schedulers do.
void LogFailedInsert(uint64_t key, const Status& status);

// LocalResponseCache (`--cache-config local,size=N`): entries own copies of the
// output bytes (the model's buffers are not kept). The cache holds at most
// `capacity` bytes, counted as the output bytes plus a small per-tensor overhead;
// inserting evicts least recently used entries, and an entry larger than the whole
// cache is not inserted. A response handed out on a hit keeps its entry's bytes
// alive even if the entry is evicted meanwhile. One mutex; copying into an entry
// happens outside it.
class LocalResponseCache final : public ResponseCache {
 public:
  explicit LocalResponseCache(uint64_t capacity_bytes) : capacity_(capacity_bytes) {}

  std::unique_ptr<InferenceResponse> Lookup(uint64_t key) override;
  Status Insert(uint64_t key, const InferenceResponse& response) override;
  ResponseCacheStats Stats() const override;

 private:
  struct Entry;
  using EntryPtr = std::shared_ptr<const Entry>;

  const uint64_t capacity_;
  mutable std::mutex mu_;
  std::list<std::pair<uint64_t, EntryPtr>> lru_;  // most recently used first
  std::unordered_map<uint64_t, std::list<std::pair<uint64_t, EntryPtr>>::iterator>
      index_;
  ResponseCacheStats stats_;
};

}  // namespace tritonx
