#include "stub_stream.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "data_type.h"
#include "logging.h"
#include "stub_wire.h"
#include "tensor_arena.h"

namespace tritonx::stub {
namespace {

constexpr char kStreamTag = 'R';

// The region's first bytes: how far the server has read (stream offsets).
struct StreamHeader {
  std::atomic<uint64_t> consumed;
};
constexpr size_t kHeaderBytes = kTensorAlign;
static_assert(sizeof(StreamHeader) <= kHeaderBytes);

StreamHeader* HeaderOf(const SharedRegion& region) {
  return reinterpret_cast<StreamHeader*>(region.data());
}

// One datagram, with `fd` attached when >= 0.
bool SendDatagram(int socket_fd, const std::string& bytes, int fd) {
  iovec iov{const_cast<char*>(bytes.data()), bytes.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  if (fd >= 0) {
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(cmsg), &fd, sizeof(int));
  }
  ssize_t n;
  do {
    n = ::sendmsg(socket_fd, &msg, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  return n == static_cast<ssize_t>(bytes.size());
}

}  // namespace

std::unique_ptr<StreamWriter> StreamWriter::Create(size_t bytes, int socket_fd) {
  auto region = SharedRegion::Create(kHeaderBytes + Padded(std::max<size_t>(bytes, 1)),
                                     "tritonx-stream");
  if (!region) return nullptr;
  new (region->data()) StreamHeader{};
  return std::unique_ptr<StreamWriter>(new StreamWriter(std::move(region), socket_fd));
}

uint64_t StreamWriter::head() const {
  std::lock_guard<std::mutex> lock(mu_);
  return head_;
}

uint64_t StreamWriter::one_off_count() const {
  std::lock_guard<std::mutex> lock(mu_);
  return one_offs_;
}

Status StreamWriter::Send(uint64_t key, const InferenceResponse* response, bool final) {
  std::lock_guard<std::mutex> lock(mu_);
  const bool ok = response != nullptr && response->status.ok();
  size_t total = 0;
  if (ok) {
    for (const Tensor& out : response->outputs) total += Padded(out.byte_size);
  }
  // Where the bytes go: at the stream's head when they fit beside the unread ones
  // (from the start again when they would cross the end), else a one-off region.
  const uint64_t capacity = region_->size() - kHeaderBytes;
  const uint64_t consumed =
      HeaderOf(*region_)->consumed.load(std::memory_order_acquire);
  uint64_t start = head_;
  if (total > 0 && start % capacity + total > capacity) {
    start += capacity - start % capacity;
  }
  const bool in_stream = start + total - consumed <= capacity;
  std::unique_ptr<SharedRegion> one_off;
  std::vector<WireTensor> outputs;
  if (ok && total > 0) {
    char* base = region_->data() + kHeaderBytes;
    uint64_t first = start % capacity;
    if (!in_stream) {
      one_off = SharedRegion::Create(total, "tritonx-response");
      if (!one_off) {
        return Status(StatusCode::kInternal,
                      "Failed to allocate " + std::to_string(total) +
                          " bytes of shared memory for a response");
      }
      base = one_off->data();
      first = 0;
    }
    DescribeOutputs(*response, first, &outputs);
    Status copied = CopyOutputs(*response, base, &first);
    if (!copied.ok()) return copied;
  } else if (ok) {
    DescribeOutputs(*response, 0, &outputs);  // all empty: no bytes to place
  }
  const uint64_t end = in_stream && total > 0 ? start + total : head_;
  message_.Clear();
  message_.U8(static_cast<uint8_t>(kStreamTag));
  message_.U64(key);
  message_.U8(final ? 1 : 0);
  message_.U64(end);
  message_.U8(one_off ? 1 : 0);
  message_.U8(response != nullptr ? 1 : 0);
  if (response != nullptr) {
    if (ok) {
      WriteOutputs(message_, outputs, response->parameters);
    } else {
      WriteError(message_, response->status);
    }
  }
  if (message_.bytes().size() > kMaxStreamMessage) {
    return Status(StatusCode::kInvalidArg,
                  "response of " + std::to_string(message_.bytes().size()) +
                      " bytes of names and parameters is too large to send");
  }
  if (!SendDatagram(socket_fd_, message_.bytes(), one_off ? one_off->fd() : -1)) {
    return Status(StatusCode::kUnavailable,
                  std::string("the server's socket is gone: ") + std::strerror(errno));
  }
  head_ = end;
  if (one_off) ++one_offs_;
  return Status::Ok();
}

std::unique_ptr<StreamReader> StreamReader::Adopt(int fd) {
  auto region = SharedRegion::Adopt(fd);
  if (!region || region->size() <= kHeaderBytes) return nullptr;
  return std::unique_ptr<StreamReader>(new StreamReader(std::move(region)));
}

Status StreamReader::Read(std::string_view message, int attached_fd, uint64_t* key,
                          bool* final, std::unique_ptr<InferenceResponse>* response) {
  // The one-off region, when one came along (closed when this returns).
  std::unique_ptr<SharedRegion> attached =
      attached_fd >= 0 ? SharedRegion::Adopt(attached_fd) : nullptr;
  const Status malformed(StatusCode::kInternal,
                         "malformed response from a stub process");
  MessageReader r(message);
  if (r.U8() != static_cast<uint8_t>(kStreamTag)) return malformed;
  *key = r.U64();
  *final = r.U8() != 0;
  const uint64_t end = r.U64();
  const bool one_off = r.U8() != 0;
  const bool has_response = r.U8() != 0;
  if (!r.ok() || one_off != (attached != nullptr)) return malformed;
  response->reset();
  if (has_response) {
    WireResponse wire;
    if (!ReadResponse(r, &wire)) return malformed;
    auto built = std::make_unique<InferenceResponse>();
    built->status = std::move(wire.status);
    built->parameters = std::move(wire.parameters);
    const char* data = one_off ? attached->data() : region_->data() + kHeaderBytes;
    const uint64_t size = one_off ? attached->size() : region_->size() - kHeaderBytes;
    for (const WireTensor& out : wire.outputs) {
      Tensor tensor;
      if (!TensorFromWire(out, size, &tensor)) return malformed;
      ArenaBuffer buffer =
          TensorArena::Global()->Allocate(std::max<size_t>(out.bytes, 1));
      if (!buffer) return Status(StatusCode::kInternal, "out of memory");
      if (out.bytes > 0) std::memcpy(buffer->data(), data + out.offset, out.bytes);
      tensor.data = buffer->data();
      tensor.owner = std::move(buffer);
      built->outputs.push_back(std::move(tensor));
    }
    *response = std::move(built);
  }
  // The bytes are copied out: the stub may write over them.
  if (!one_off) HeaderOf(*region_)->consumed.store(end, std::memory_order_release);
  return Status::Ok();
}

StreamReceiver::StreamReceiver(int socket_fd, std::unique_ptr<StreamReader> reader,
                               Deliver deliver)
    : socket_fd_(socket_fd), reader_(std::move(reader)), deliver_(std::move(deliver)) {
  thread_ = std::thread([this] {
    Loop();
    std::lock_guard<std::mutex> lock(end_mu_);
    ended_ = true;
    end_cv_.notify_all();
  });
}

bool StreamReceiver::WaitForEnd(std::chrono::milliseconds limit) {
  std::unique_lock<std::mutex> lock(end_mu_);
  return end_cv_.wait_for(lock, limit, [this] { return ended_; });
}

StreamReceiver::~StreamReceiver() {
  ::shutdown(socket_fd_, SHUT_RDWR);  // ends a recvmsg in progress with end of file
  thread_.join();
  ::close(socket_fd_);
}

void StreamReceiver::Loop() {
  std::vector<char> buffer(kMaxStreamMessage);
  while (true) {
    iovec iov{buffer.data(), buffer.size()};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    const ssize_t n = ::recvmsg(socket_fd_, &msg, MSG_CMSG_CLOEXEC);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // end of file: the stub is gone, or shutdown
    int attached = -1;
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
        const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < count; ++i) {
          int fd;
          std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
          if (attached < 0) {
            attached = fd;
          } else {
            ::close(fd);  // one region per message; more is a peer's mistake
          }
        }
      }
    }
    uint64_t key = 0;
    bool final = false;
    std::unique_ptr<InferenceResponse> response;
    Status status = (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) != 0
                        ? Status(StatusCode::kInternal, "truncated stub response")
                        : reader_->Read(std::string_view(buffer.data(), n), attached,
                                        &key, &final, &response);
    if ((msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) != 0 && attached >= 0) {
      ::close(attached);
    }
    if (!status.ok()) {
      Log(LogLevel::kError, "decoupled response dropped: " + status.message());
      continue;
    }
    deliver_(key, final, std::move(response));
  }
}

}  // namespace tritonx::stub
