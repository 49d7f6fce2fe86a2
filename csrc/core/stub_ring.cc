#include "stub_ring.h"

#include <linux/futex.h>
#include <poll.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <ctime>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif

namespace tritonx::stub {
namespace {

// Shared (not FUTEX_PRIVATE): the word lives in a mapping of two processes.
int FutexWait(std::atomic<uint32_t>* word, uint32_t expected, int64_t timeout_ns) {
  timespec ts{};
  timespec* tsp = nullptr;
  if (timeout_ns >= 0) {
    ts.tv_sec = static_cast<time_t>(timeout_ns / 1'000'000'000);
    ts.tv_nsec = static_cast<long>(timeout_ns % 1'000'000'000);
    tsp = &ts;
  }
  return static_cast<int>(syscall(SYS_futex, reinterpret_cast<uint32_t*>(word),
                                  FUTEX_WAIT, expected, tsp, nullptr, 0));
}

void FutexWake(std::atomic<uint32_t>* word) {
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAKE, 1, nullptr, nullptr,
          0);
}

// Sets `*word` and wakes its waiter if one announced itself. The waiter stores its
// flag before re-reading the word, the writer stores the word before reading the
// flag (both sequentially consistent), so at least one of them sees the other.
void Publish(std::atomic<uint32_t>* word, std::atomic<uint32_t>* waiting,
             uint32_t value) {
  word->store(value, std::memory_order_seq_cst);
  if (waiting->load(std::memory_order_seq_cst) != 0) FutexWake(word);
}

// One wait of at most `slice_ns` (< 0: unbounded) for `*word` to differ from `old`.
// True when it did.
int64_t MonotonicNs();

bool WaitSlice(std::atomic<uint32_t>* word, std::atomic<uint32_t>* waiting,
               uint32_t old, int64_t slice_ns, int64_t spin_ns,
               const std::atomic<int64_t>* busy = nullptr) {
  // A spin first: a cheap model answers within microseconds, sooner than a futex
  // sleep and wake-up on a busy machine. It yields between checks, and it stops as
  // soon as a check comes late (a yield that let another thread run, or a
  // preemption): then the core has other work (the frontend's, the client's, the
  // stub's own), which the spin would only slow down (measured at 4 concurrent
  // HTTP clients on 2 cores: spinning regardless cost 10-20 % of throughput).
  // It also stops once `*busy` (the server's requests in flight) says another
  // request is on its way: a core is then better left to the threads serving it.
  constexpr int64_t kLateCheckNs = 10'000;
  auto others = [busy] {
    return busy != nullptr && busy->load(std::memory_order_relaxed) > 1;
  };
  if (others()) spin_ns = 0;
  int64_t checked = spin_ns > 0 ? MonotonicNs() : 0;
  const int64_t spin_end = checked + spin_ns;
  for (int i = 0;; ++i) {
    if (word->load(std::memory_order_acquire) != old) return true;
#if defined(__x86_64__)
    __builtin_ia32_pause();
#endif
    if (i >= 64 && (i & 63) == 0) {
      const int64_t now = MonotonicNs();
      if (now >= spin_end || now - checked > kLateCheckNs || others()) break;
      checked = now;
      sched_yield();
    }
  }
  waiting->store(1, std::memory_order_seq_cst);
  if (word->load(std::memory_order_seq_cst) == old) FutexWait(word, old, slice_ns);
  waiting->store(0, std::memory_order_relaxed);
  return word->load(std::memory_order_acquire) != old;
}

int64_t MonotonicNs() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

std::shared_ptr<Mapping> Map(int fd, size_t size) {
  void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) return nullptr;
  return std::make_shared<Mapping>(static_cast<char*>(p), size);
}

}  // namespace

Mapping::~Mapping() { munmap(data_, size_); }

std::unique_ptr<SharedRegion> SharedRegion::Create(size_t size, const char* name) {
  int fd = static_cast<int>(syscall(SYS_memfd_create, name, MFD_CLOEXEC));
  if (fd < 0) return nullptr;
  size = std::max<size_t>(size, 4096);
  if (ftruncate(fd, static_cast<off_t>(size)) != 0) {
    close(fd);
    return nullptr;
  }
  auto map = Map(fd, size);
  if (!map) {
    close(fd);
    return nullptr;
  }
  return std::unique_ptr<SharedRegion>(new SharedRegion(fd, std::move(map)));
}

std::unique_ptr<SharedRegion> SharedRegion::Adopt(int fd) {
  struct stat st {};
  if (fstat(fd, &st) != 0 || st.st_size <= 0) {
    close(fd);
    return nullptr;
  }
  auto map = Map(fd, static_cast<size_t>(st.st_size));
  if (!map) {
    close(fd);
    return nullptr;
  }
  return std::unique_ptr<SharedRegion>(new SharedRegion(fd, std::move(map)));
}

SharedRegion::~SharedRegion() { close(fd_); }

bool SharedRegion::Remap(size_t size) {
  auto map = Map(fd_, size);
  if (!map) return false;
  map_ = std::move(map);  // the old mapping lives on while views hold it
  return true;
}

bool SharedRegion::Grow(size_t size, size_t growth) {
  if (size <= this->size()) return true;
  size_t grown = this->size();
  while (grown < size) grown += std::max({growth, grown, size_t{4096}});
  if (ftruncate(fd_, static_cast<off_t>(grown)) != 0) return false;
  return Remap(grown);
}

bool SharedRegion::Follow(size_t size) {
  if (size <= this->size()) return true;
  struct stat st {};
  // The owner grew the file before saying so; never map past its end.
  if (fstat(fd_, &st) != 0 || static_cast<size_t>(st.st_size) < size) return false;
  return Remap(size);
}

// --- server ------------------------------------------------------------------------

std::unique_ptr<RingServer> RingServer::Create(size_t data_bytes, size_t growth) {
  auto region = SharedRegion::Create(kControlBytes + data_bytes, "tritonx-stub-ring");
  if (!region) return nullptr;
  auto* ctl = new (region->data()) RingControl{};
  ctl->magic = kRingMagic;
  ctl->server_size = region->size();
  auto server = std::unique_ptr<RingServer>(new RingServer(std::move(region), growth));
  const char* spin = std::getenv("TRITONX_STUB_SPIN_US");
  if (spin != nullptr) server->spin_ns_ = std::atoll(spin) * 1000;
  return server;
}

RingServer::~RingServer() {
  if (pidfd_ >= 0) close(pidfd_);
}

bool RingServer::AttachStub(int stub_fd, int pid) {
  stub_ = SharedRegion::Adopt(stub_fd);
  if (pidfd_ >= 0) close(pidfd_);
  pid_ = pid;
  pidfd_ = pid > 0 ? static_cast<int>(syscall(SYS_pidfd_open, pid, 0)) : -1;
  return stub_ != nullptr;
}

char* RingServer::Reserve(size_t bytes) {
  if (!region_->Grow(kControlBytes + bytes, growth_)) return nullptr;
  control()->server_size = region_->size();
  return region_->data() + kControlBytes;
}

void RingServer::Post(RequestKind kind, size_t offset, size_t bytes) {
  RingControl* ctl = control();
  ctl->request_kind = static_cast<uint32_t>(kind);
  ctl->request_offset = offset;
  ctl->request_bytes = bytes;
  // Where the leases lent so far still pin the stub's region. An expired owner was
  // released with acq_rel by its last holder; the fence orders that holder's reads
  // of the bytes before the stub's next write over them (published below).
  uint64_t low = UINT64_MAX, high = 0;
  leases_.erase(std::remove_if(leases_.begin(), leases_.end(),
                               [](const Lease& l) { return l.owner.expired(); }),
                leases_.end());
  std::atomic_thread_fence(std::memory_order_acquire);
  for (const Lease& l : leases_) {
    low = std::min(low, l.begin);
    high = std::max(high, l.end);
  }
  ctl->reply_low = low;
  ctl->reply_high = high;
  reply_ = {};
  Publish(&ctl->request_seq, &ctl->stub_waiting,
          ctl->request_seq.load(std::memory_order_relaxed) + 1);
}

WaitResult RingServer::WaitReply(int64_t timeout_ns, const std::atomic<bool>* abandon,
                                 bool spin, const std::atomic<int64_t>* busy,
                                 int64_t slice_ns) {
  RingControl* ctl = control();
  const uint32_t want = ctl->request_seq.load(std::memory_order_relaxed);
  const int64_t deadline = timeout_ns < 0 ? -1 : MonotonicNs() + timeout_ns;
  while (ctl->reply_seq.load(std::memory_order_acquire) != want) {
    int64_t slice = slice_ns;
    if (deadline >= 0) {
      const int64_t left = deadline - MonotonicNs();
      if (left <= 0) return WaitResult::kTimeout;
      slice = std::min(slice, left);
    }
    const uint32_t seen = ctl->reply_seq.load(std::memory_order_acquire);
    if (seen == want) break;
    if (!WaitSlice(&ctl->reply_seq, &ctl->server_waiting, seen, slice,
                   spin ? spin_ns_ : 0, busy) &&
        (!PeerAlive() || (abandon != nullptr && abandon->load()))) {
      // It may have answered just before it ended.
      if (ctl->reply_seq.load(std::memory_order_acquire) == want) break;
      return WaitResult::kPeerGone;
    }
  }
  // The stub's region may have grown for this reply; its words are untrusted.
  const uint64_t size = ctl->stub_size;
  if (!stub_ || !stub_->Follow(size)) return WaitResult::kPeerGone;
  const uint64_t base = ctl->reply_base, off = ctl->reply_offset, n = ctl->reply_bytes;
  const uint64_t have = stub_->size();
  if (base > have || off > have - base || n > have - base - off) {
    return WaitResult::kPeerGone;
  }
  reply_base_ = base;
  reply_end_ = base + off + n;
  reply_ = std::string_view(stub_->data() + base + off, n);
  return WaitResult::kReady;
}

std::string_view RingServer::Reply() const { return reply_; }

std::shared_ptr<const void> RingServer::LeaseReply() {
  size_t live = 0;
  for (const Lease& l : leases_) live += l.owner.expired() ? 0 : 1;
  if (live >= kMaxLeases || !stub_) return nullptr;
  // The owner keeps the mapping the responses point into (the region may be mapped
  // anew when it grows, or the ring replaced when the stub restarts).
  auto owner = std::make_shared<std::shared_ptr<Mapping>>(stub_->mapping());
  leases_.push_back({owner, reply_base_, reply_end_});
  return owner;
}

bool RingServer::PeerAlive() const {
  if (pidfd_ < 0) {
    // No pidfd (kernels before 5.3): the stub's parent reaps it, so a gone pid is a
    // dead stub (the zygote's children never linger as zombies for long).
    return stub_ != nullptr && (pid_ <= 0 || kill(pid_, 0) == 0 || errno != ESRCH);
  }
  pollfd p{pidfd_, POLLIN, 0};
  return poll(&p, 1, 0) == 0;  // readable: the process has ended
}

void RingServer::KillPeer(int wait_ms) {
  if (pidfd_ < 0) {
    if (pid_ > 0) kill(pid_, SIGKILL);
    return;
  }
  syscall(SYS_pidfd_send_signal, pidfd_, SIGKILL, nullptr, 0);
  pollfd p{pidfd_, POLLIN, 0};
  poll(&p, 1, wait_ms);
}

// --- stub ----------------------------------------------------------------------------

std::unique_ptr<RingClient> RingClient::Open(int server_fd, size_t out_bytes,
                                             size_t growth) {
  std::unique_ptr<RingClient> client(new RingClient());
  client->server_ = SharedRegion::Adopt(server_fd);
  if (!client->server_ || client->server_->size() < kControlBytes ||
      client->control()->magic != kRingMagic) {
    return nullptr;
  }
  client->out_ = SharedRegion::Create(out_bytes, "tritonx-stub-out");
  if (!client->out_) return nullptr;
  client->growth_ = growth;
  const char* spin = std::getenv("TRITONX_STUB_CLIENT_SPIN_US");
  if (spin != nullptr) client->spin_ns_ = std::atoll(spin) * 1000;
  client->seen_ = client->control()->request_seq.load(std::memory_order_acquire);
  client->control()->stub_size = client->out_->size();
  return client;
}

RequestKind RingClient::Wait(std::string_view* message) {
  RingControl* ctl = control();
  // Spin only while requests follow replies closely (a queue behind the instance):
  // an idle or lightly loaded model's stub sleeps at once instead of burning a core.
  const int64_t spin = last_gap_ns_ <= spin_ns_ ? spin_ns_ : 0;
  while (!WaitSlice(&ctl->request_seq, &ctl->stub_waiting, seen_, -1, spin)) {
  }
  if (replied_at_ns_ != 0) last_gap_ns_ = MonotonicNs() - replied_at_ns_;
  seen_ = ctl->request_seq.load(std::memory_order_acquire);
  server_->Follow(ctl->server_size);
  ctl = control();  // the old mapping may be gone
  const uint64_t off = ctl->request_offset, n = ctl->request_bytes;
  const size_t avail = server_data_size();
  *message = off <= avail && n <= avail - off ? std::string_view(server_data() + off, n)
                                              : std::string_view();
  return static_cast<RequestKind>(ctl->request_kind);
}

char* RingClient::Reserve(size_t bytes) {
  // Below the server's leases when the reply fits there (always when none is held),
  // else past them. The words come from the server, which this process trusts.
  const RingControl* ctl = control();
  base_ = bytes <= ctl->reply_low ? 0 : Padded(ctl->reply_high);
  if (!out_->Grow(base_ + bytes, growth_)) return nullptr;
  return out_->data() + base_;
}

void RingClient::Reply(size_t offset, size_t bytes) {
  RingControl* ctl = control();
  ctl->stub_size = out_->size();
  ctl->reply_base = base_;
  ctl->reply_offset = offset;
  ctl->reply_bytes = bytes;
  Publish(&ctl->reply_seq, &ctl->server_waiting, seen_);
  if (spin_ns_ > 0) replied_at_ns_ = MonotonicNs();
}

// --- messages
// --------------------------------------------------------------------------

std::string_view MessageReader::Str() {
  const uint32_t n = U32();
  if (!ok_ || data_.size() - pos_ < n) {
    ok_ = false;
    return {};
  }
  std::string_view s(data_.data() + pos_, n);
  pos_ += n;
  return s;
}

}  // namespace tritonx::stub
