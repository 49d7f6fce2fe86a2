// StubStream: a decoupled model's responses, from its stub process to the server.
//
// A decoupled model sends responses from any of its threads, during execute or long
// after it, so they cannot use the execute ring's single reply slot. They travel on
// a socket pair of their own (one datagram per response, which orders them and wakes
// the server), read on the server by a C++ thread (StreamReceiver): no Python and no
// GIL on the server side of a response. The tensor bytes go through a stream region,
// a memfd the stub creates at init and the server maps: the stub writes them at the
// region's head (circularly) and sends a message naming them; the server copies them
// out into arena buffers, then publishes how far it has read (`consumed`, the only
// word the server writes). A response that does not fit the free space (bigger than
// the region, or the server behind) is written into a one-off memfd that rides with
// its message (SCM_RIGHTS), so a sender never waits for the reader.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string_view>
#include <thread>

#include "infer_request.h"
#include "status.h"
#include "stub_ring.h"

namespace tritonx::stub {

// The largest stream message (the response's parameters and tensor names; its
// bytes are in a region).
constexpr size_t kMaxStreamMessage = 1 << 18;

// The stub's end. Thread safe: senders on any thread are serialized by a mutex held
// from placing the bytes to sending the message, so messages leave in the order of
// their bytes (what `consumed` relies on). Owns its region; not the socket.
class StreamWriter {
 public:
  // A region with `bytes` of data space; messages go to `socket_fd`.
  static std::unique_ptr<StreamWriter> Create(size_t bytes, int socket_fd);
  int fd() const { return region_->fd(); }
  // Sends `response` (null: a bare FINAL) for the server's request `key`. Errors: an
  // output whose bytes cannot be read, no memory for a one-off region, a message
  // past kMaxStreamMessage, or a socket that is gone.
  Status Send(uint64_t key, const InferenceResponse* response, bool final);
  // Stream bytes placed so far and responses that took a one-off region (tests).
  uint64_t head() const;
  uint64_t one_off_count() const;

 private:
  StreamWriter(std::unique_ptr<SharedRegion> region, int socket_fd)
      : region_(std::move(region)), socket_fd_(socket_fd) {}
  mutable std::mutex mu_;
  std::unique_ptr<SharedRegion> region_;
  const int socket_fd_;
  uint64_t head_ = 0;      // stream bytes ever placed (guarded by mu_)
  uint64_t one_offs_ = 0;  // guarded by mu_
  MessageWriter message_;  // guarded by mu_ (reused)
};

// The server's end of the region. Thread-compatible: one reader (StreamReceiver).
class StreamReader {
 public:
  // The stub's region, received as `fd` (taken over); nullptr when it cannot be mapped.
  static std::unique_ptr<StreamReader> Adopt(int fd);
  // Decodes one message (with `attached_fd`, taken over, or -1): its request key,
  // FINAL flag and response (null for a bare FINAL), outputs copied out of the
  // region; then marks the stream bytes read.
  Status Read(std::string_view message, int attached_fd, uint64_t* key, bool* final,
              std::unique_ptr<InferenceResponse>* response);

 private:
  explicit StreamReader(std::unique_ptr<SharedRegion> region)
      : region_(std::move(region)) {}
  std::unique_ptr<SharedRegion> region_;
};

// Reads the server's end of the stream socket on its own thread until end of file
// (the stub ended or closed it) or destruction, handing each decoded response to
// `deliver`. A message that cannot be decoded is logged and dropped. Owns the
// socket, the reader and the thread; the destructor shuts the socket down and joins.
class StreamReceiver {
 public:
  using Deliver =
      std::function<void(uint64_t key, bool final, std::unique_ptr<InferenceResponse>)>;
  StreamReceiver(int socket_fd, std::unique_ptr<StreamReader> reader, Deliver deliver);
  ~StreamReceiver();
  StreamReceiver(const StreamReceiver&) = delete;
  StreamReceiver& operator=(const StreamReceiver&) = delete;

  // Waits up to `limit` for the thread to reach the socket's end (everything the
  // stub sent before it closed its end is delivered by then); false on timeout.
  bool WaitForEnd(std::chrono::milliseconds limit);

 private:
  void Loop();
  const int socket_fd_;
  std::mutex end_mu_;
  std::condition_variable end_cv_;
  bool ended_ = false;                    // guarded by end_mu_
  std::unique_ptr<StreamReader> reader_;  // used by the thread only
  Deliver deliver_;
  std::thread thread_;
};

}  // namespace tritonx::stub
