// StubStream: a decoupled model's responses, from its stub process to the server.
//
// A decoupled model sends responses from any of its threads, during execute or long
// after it, so they cannot use the execute ring's single reply slot. Each response
// is one datagram on the stub's control socket (which orders them and wakes the
// server's reader), and its tensor bytes go through a stream region: a memfd the
// stub creates at init and the server maps. The stub writes the bytes at the
// region's head (circularly), then sends a message naming them; the server copies
// them out into arena buffers, then publishes how far it has read (`consumed`, the
// only word the server writes). A response that does not fit in the free space
// takes the caller's fallback (a one-off region), so a slow reader never blocks a
// sender. Messages start with kStreamTag, which no pickled control message does.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string_view>

#include "infer_request.h"
#include "status.h"
#include "stub_ring.h"

namespace tritonx::stub {

constexpr char kStreamTag = 'R';

// The stub's end. Thread safe: senders on any thread are serialized by a mutex held
// from placing the bytes to sending the message, so messages leave in the order of
// their bytes (what `consumed` relies on). Owns its region; not the socket.
class StreamWriter {
 public:
  // A region with `bytes` of data space; messages go to `socket_fd`.
  static std::unique_ptr<StreamWriter> Create(size_t bytes, int socket_fd);
  int fd() const { return region_->fd(); }
  // Sends `response` (null: a bare FINAL) for the server's request `key`. *sent is
  // false when its bytes do not fit now (nothing was sent). Errors: an output whose
  // bytes cannot be read, or a socket that is gone.
  Status Send(uint64_t key, const InferenceResponse* response, bool final, bool* sent);

 private:
  StreamWriter(std::unique_ptr<SharedRegion> region, int socket_fd)
      : region_(std::move(region)), socket_fd_(socket_fd) {}
  std::mutex mu_;
  std::unique_ptr<SharedRegion> region_;
  const int socket_fd_;
  uint64_t head_ = 0;      // stream bytes ever placed (guarded by mu_)
  MessageWriter message_;  // guarded by mu_ (reused)
};

// The server's end. Thread-compatible: the stub's socket reader only.
class StreamReader {
 public:
  // The stub's region, received as `fd` (taken over); nullptr when it cannot be mapped.
  static std::unique_ptr<StreamReader> Adopt(int fd);
  // Decodes one stream message: its request key, FINAL flag and response (null for a
  // bare FINAL), with outputs copied out of the region; then marks them read.
  Status Read(std::string_view message, uint64_t* key, bool* final,
              std::unique_ptr<InferenceResponse>* response);

 private:
  explicit StreamReader(std::unique_ptr<SharedRegion> region)
      : region_(std::move(region)) {}
  std::unique_ptr<SharedRegion> region_;
};

}  // namespace tritonx::stub
