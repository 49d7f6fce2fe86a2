// StubRing: the execute request/reply channel between the server and one Python stub
// process (EXECUTION_MODE "process"), in shared memory with futex wake-ups, so that an
// execute costs two process wake-ups (server -> stub, stub -> server) and no socket,
// pickle or Python on the server side.
//
// Layout. Two memfd regions, each written by one side only:
// - the server's region: a control page (RingControl: sequence words, sizes, offsets)
//   followed by the data area holding the request (input bytes, then the encoded
//   request message);
// - the stub's region: replies (output bytes, then the encoded reply message), each
//   at a base offset the stub picks (`reply_base`; offsets in a reply are relative to
//   it). Responses read their outputs in place there (no copy on the server side):
//   each reply is a *lease* that the responses hold until their bytes are sent, and
//   before every request the server says which bytes of the region leases still pin
//   (`reply_low`, `reply_high`), so the stub writes its next reply around them.
// One request is in flight at a time (an instance runs one batch at a time), so the
// "ring" has a single slot per direction: the server bumps `request_seq` after writing
// a request; the stub sets `reply_seq` to that value after writing its reply. A region
// that is too small grows in place (ftruncate of the same memfd); the other side maps
// it anew when the control page says it is bigger, so no descriptor has to travel.
//
// Waits are FUTEX_WAIT on the sequence words (shared, not private: two processes).
// A `*_waiting` flag lets the writer skip FUTEX_WAKE when nobody sleeps. The server
// waits in slices and checks the stub's pidfd between them, so a stub that dies never
// leaves a worker waiting; the stub has PR_SET_PDEATHSIG and a parent watch instead.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace tritonx::stub {

// One mmap of a memfd. Shared so that arrays viewing an old mapping keep it alive
// after the region was mapped anew (it grew). Immutable; thread safe.
class Mapping {
 public:
  Mapping(char* data, size_t size) : data_(data), size_(size) {}
  ~Mapping();
  Mapping(const Mapping&) = delete;
  Mapping& operator=(const Mapping&) = delete;
  char* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  char* data_;
  size_t size_;
};

// A memfd and its current mapping. Owns the descriptor. Not thread safe: the owner of
// the ring serializes use.
class SharedRegion {
 public:
  // A new anonymous region of `size` bytes (nullptr when the system refuses).
  static std::unique_ptr<SharedRegion> Create(size_t size, const char* name);
  // The peer's region, received as `fd` (taken over), mapped at its current size.
  static std::unique_ptr<SharedRegion> Adopt(int fd);
  ~SharedRegion();
  SharedRegion(const SharedRegion&) = delete;
  SharedRegion& operator=(const SharedRegion&) = delete;

  int fd() const { return fd_; }
  char* data() const { return map_->data(); }
  size_t size() const { return map_->size(); }
  const std::shared_ptr<Mapping>& mapping() const { return map_; }
  // Owner: makes the file at least `size` bytes (growing by at least `growth`) and
  // maps it anew. False when the system refuses (the region is unchanged).
  bool Grow(size_t size, size_t growth);
  // Peer: maps anew when the owner reports `size` bytes and the mapping is smaller.
  bool Follow(size_t size);

 private:
  SharedRegion(int fd, std::shared_ptr<Mapping> map) : fd_(fd), map_(std::move(map)) {}
  bool Remap(size_t size);
  int fd_;
  std::shared_ptr<Mapping> map_;
};

// The server region's first page.
struct RingControl {
  uint32_t magic;
  uint32_t request_kind;
  std::atomic<uint32_t> request_seq;
  std::atomic<uint32_t> reply_seq;
  std::atomic<uint32_t> stub_waiting;
  std::atomic<uint32_t> server_waiting;
  uint64_t server_size;  // bytes of the server's region (the stub follows)
  uint64_t request_offset;
  uint64_t request_bytes;
  uint64_t stub_size;     // bytes of the stub's region (the server follows)
  uint64_t reply_base;    // where the stub put its reply; what follows is relative
  uint64_t reply_offset;  // the reply message, from reply_base
  uint64_t reply_bytes;
  // Written by the server with each request: the stub's region below `reply_low`
  // and from `reply_high` on is free for the reply (held leases lie in between;
  // none: low is UINT64_MAX, high 0).
  uint64_t reply_low;
  uint64_t reply_high;
};
static_assert(std::atomic<uint32_t>::is_always_lock_free);

constexpr size_t kControlBytes = 4096;       // the data area starts here
constexpr uint32_t kRingMagic = 0x54585231;  // "TXR1"
constexpr size_t kTensorAlign = 64;
inline size_t Padded(size_t n) {
  return (n + kTensorAlign - 1) / kTensorAlign * kTensorAlign;
}

enum class RequestKind : uint32_t { kExecute = 1, kFinalize = 2 };
enum class WaitResult { kReady, kTimeout, kPeerGone };

// The server's end. Thread-compatible: one thread at a time (StubExecutor's lock).
class RingServer {
 public:
  // A new ring with `data_bytes` of request space (grown as needed by `growth`).
  static std::unique_ptr<RingServer> Create(size_t data_bytes, size_t growth);
  ~RingServer();
  RingServer(const RingServer&) = delete;
  RingServer& operator=(const RingServer&) = delete;

  int fd() const { return region_->fd(); }  // to hand to the stub
  // The stub is up: its region (taken over) and its pid (watched through a pidfd).
  bool AttachStub(int stub_fd, int pid);
  // The request area, at least `bytes` long (null when it cannot grow).
  char* Reserve(size_t bytes);
  // Publishes a request whose message is at data offset `offset`, `bytes` long.
  void Post(RequestKind kind, size_t offset, size_t bytes);
  // Waits for the reply to the last Post: kTimeout after `timeout_ns` (< 0: none),
  // kPeerGone as soon as the stub process has ended or `*abandon` turns true (both
  // checked every `slice_ns`; `abandon` covers systems without pidfds). `spin`:
  // whether to spin first (see spin_ns_) before sleeping on the futex; `busy`, when
  // given: spin only while it is at most 1 (the server's requests in flight: with
  // another one on its way the core is needed by the threads serving it).
  WaitResult WaitReply(int64_t timeout_ns, const std::atomic<bool>* abandon = nullptr,
                       bool spin = true, const std::atomic<int64_t>* busy = nullptr,
                       int64_t slice_ns = 20'000'000);
  // The reply message and the stub's region (bounds already checked against it).
  std::string_view Reply() const;
  const SharedRegion* stub_region() const { return stub_.get(); }
  // Where the last reply starts in the stub's region (its offsets are relative).
  uint64_t reply_base() const { return reply_base_; }
  // Lends the last reply's bytes to the responses built from it: while the returned
  // owner (or a copy) lives, the stub writes no later reply over them, and their
  // mapping stays. Null when kMaxLeases replies are lent already (copy instead), so
  // responses held for long (a Python caller's arrays) cannot grow the region
  // without bound. Thread safe to release from any thread.
  std::shared_ptr<const void> LeaseReply();
  static constexpr size_t kMaxLeases = 8;
  bool PeerAlive() const;
  // SIGKILL through the pidfd; returns once the process has ended (up to `wait_ms`),
  // so that no caller sees the killed stub still running.
  void KillPeer(int wait_ms = 5000);

 private:
  RingServer(std::unique_ptr<SharedRegion> region, size_t growth)
      : region_(std::move(region)), growth_(growth) {}
  RingControl* control() const {
    return reinterpret_cast<RingControl*>(region_->data());
  }
  std::unique_ptr<SharedRegion> region_;
  size_t growth_;
  std::unique_ptr<SharedRegion> stub_;
  int pidfd_ = -1;
  int pid_ = 0;
  // How long WaitReply spins (yielding) before sleeping (TRITONX_STUB_SPIN_US,
  // default 200 µs): the waiting core thread has nothing else to do, and a cheap
  // model's reply often comes sooner than a futex sleep and wake-up would take
  // (measured: 50 µs of plain spinning cost throughput at c4). The spin ends early
  // once the core turns out to have other work (see WaitSlice).
  int64_t spin_ns_ = 200'000;
  std::string_view reply_;
  uint64_t reply_base_ = 0;
  uint64_t reply_end_ = 0;  // reply_base_ + the reply's extent
  // Replies lent to responses: [begin, end) of the stub's region, pinned while the
  // owner lives (checked, and forgotten once expired, at each Post).
  struct Lease {
    std::weak_ptr<const void> owner;
    uint64_t begin;
    uint64_t end;
  };
  std::vector<Lease> leases_;
};

// The stub's end. Thread-compatible: the stub's main loop only.
class RingClient {
 public:
  // Maps the server's region (`server_fd`, taken over) and creates this stub's own
  // output region of `out_bytes` (grown by `growth`). Null on failure.
  static std::unique_ptr<RingClient> Open(int server_fd, size_t out_bytes,
                                          size_t growth);
  int out_fd() const { return out_->fd(); }
  // Blocks until the next request; then its message (in the server's mapping).
  RequestKind Wait(std::string_view* message);
  const std::shared_ptr<Mapping>& server_mapping() const { return server_->mapping(); }
  // Data offsets in requests are relative to this.
  const char* server_data() const { return server_->data() + kControlBytes; }
  size_t server_data_size() const { return server_->size() - kControlBytes; }
  // Room for a reply of `bytes` outside the server's leases (null when the region
  // cannot grow); offsets in the reply are relative to the returned pointer.
  char* Reserve(size_t bytes);
  // Publishes the reply whose message is `offset` bytes into the reserved room,
  // `bytes` long.
  void Reply(size_t offset, size_t bytes);

 private:
  RingClient() = default;
  RingControl* control() const {
    return reinterpret_cast<RingControl*>(server_->data());
  }
  std::unique_ptr<SharedRegion> server_;
  std::unique_ptr<SharedRegion> out_;
  size_t growth_ = 0;
  uint32_t seen_ = 0;
  uint64_t base_ = 0;  // where the last Reserve put the reply
  // The stub's spin before sleeping (TRITONX_STUB_CLIENT_SPIN_US, default none: an
  // idle model's stub should not burn a core), used only while the last request came
  // within that long of the reply before it.
  int64_t spin_ns_ = 0;
  int64_t replied_at_ns_ = 0;
  int64_t last_gap_ns_ = INT64_MAX;
};

// Encoding of the messages (little-endian, native layout; both ends run this code).
class MessageWriter {
 public:
  void Clear() { buf_.clear(); }
  void U8(uint8_t v) { Raw(&v, 1); }
  void U32(uint32_t v) { Raw(&v, 4); }
  void U64(uint64_t v) { Raw(&v, 8); }
  void I64(int64_t v) { Raw(&v, 8); }
  void F64(double v) { Raw(&v, 8); }
  void Str(std::string_view s) {
    U32(static_cast<uint32_t>(s.size()));
    Raw(s.data(), s.size());
  }
  const std::string& bytes() const { return buf_; }

 private:
  void Raw(const void* p, size_t n) { buf_.append(static_cast<const char*>(p), n); }
  std::string buf_;
};

// Bounds-checked reading: past the end, every read yields zero/empty and ok() turns
// false, so a corrupt message from a misbehaving peer is an error, never a crash.
class MessageReader {
 public:
  explicit MessageReader(std::string_view data) : data_(data) {}
  uint8_t U8() { return Get<uint8_t>(); }
  uint32_t U32() { return Get<uint32_t>(); }
  uint64_t U64() { return Get<uint64_t>(); }
  int64_t I64() { return Get<int64_t>(); }
  double F64() { return Get<double>(); }
  std::string_view Str();
  bool ok() const { return ok_; }

 private:
  template <typename T>
  T Get() {
    T v{};
    if (!ok_ || data_.size() - pos_ < sizeof(T)) {
      ok_ = false;
      return v;
    }
    std::memcpy(&v, data_.data() + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }
  std::string_view data_;
  size_t pos_ = 0;
  bool ok_ = true;
};

}  // namespace tritonx::stub
