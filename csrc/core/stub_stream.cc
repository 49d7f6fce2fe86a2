#include "stub_stream.h"

#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "data_type.h"
#include "stub_wire.h"
#include "tensor_arena.h"
#include "tensor_memory.h"

namespace tritonx::stub {
namespace {

// The region's first bytes: how far the server has read (stream offsets).
struct StreamHeader {
  std::atomic<uint64_t> consumed;
};
constexpr size_t kHeaderBytes = kTensorAlign;
static_assert(sizeof(StreamHeader) <= kHeaderBytes);

StreamHeader* HeaderOf(const SharedRegion& region) {
  return reinterpret_cast<StreamHeader*>(region.data());
}

}  // namespace

std::unique_ptr<StreamWriter> StreamWriter::Create(size_t bytes, int socket_fd) {
  auto region = SharedRegion::Create(kHeaderBytes + Padded(std::max<size_t>(bytes, 1)),
                                     "tritonx-stream");
  if (!region) return nullptr;
  new (region->data()) StreamHeader{};
  return std::unique_ptr<StreamWriter>(new StreamWriter(std::move(region), socket_fd));
}

Status StreamWriter::Send(uint64_t key, const InferenceResponse* response, bool final,
                          bool* sent) {
  std::lock_guard<std::mutex> lock(mu_);
  *sent = false;
  const bool ok = response != nullptr && response->status.ok();
  size_t total = 0;
  if (ok) {
    for (const Tensor& out : response->outputs) total += Padded(out.byte_size);
  }
  const uint64_t capacity = region_->size() - kHeaderBytes;
  const uint64_t consumed =
      HeaderOf(*region_)->consumed.load(std::memory_order_acquire);
  uint64_t start = head_;
  if (total > 0 && start % capacity + total > capacity)
    start += capacity - start % capacity;
  if (start + total - consumed > capacity) return Status::Ok();  // no room now
  char* data = region_->data() + kHeaderBytes;
  std::vector<WireTensor> outputs;
  std::vector<std::string_view> names;
  uint64_t offset = start % capacity;
  if (ok) {
    for (const Tensor& out : response->outputs) {
      Status copied = CopyTensorBytes(out, data + offset);
      if (!copied.ok()) return copied;
      WireTensor w;
      w.name = out.name;
      w.datatype = DataTypeName(out.dtype);
      w.shape = out.shape;
      w.offset = offset;
      w.bytes = out.byte_size;
      outputs.push_back(std::move(w));
      offset += Padded(out.byte_size);
    }
  }
  const uint64_t end = total > 0 ? start + total : head_;
  message_.Clear();
  message_.U8(static_cast<uint8_t>(kStreamTag));
  message_.U64(key);
  message_.U8(final ? 1 : 0);
  message_.U64(end);
  message_.U8(response != nullptr ? 1 : 0);
  if (response != nullptr) {
    if (ok) {
      WriteOutputs(message_, outputs, response->parameters);
    } else {
      WriteError(message_, response->status);
    }
  }
  const std::string& bytes = message_.bytes();
  ssize_t n;
  do {
    n = ::send(socket_fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n != static_cast<ssize_t>(bytes.size())) {
    return Status(StatusCode::kUnavailable,
                  std::string("the server's socket is gone: ") + std::strerror(errno));
  }
  head_ = end;
  *sent = true;
  return Status::Ok();
}

std::unique_ptr<StreamReader> StreamReader::Adopt(int fd) {
  auto region = SharedRegion::Adopt(fd);
  if (!region || region->size() <= kHeaderBytes) return nullptr;
  return std::unique_ptr<StreamReader>(new StreamReader(std::move(region)));
}

Status StreamReader::Read(std::string_view message, uint64_t* key, bool* final,
                          std::unique_ptr<InferenceResponse>* response) {
  const Status malformed(StatusCode::kInternal,
                         "malformed response from a stub process");
  MessageReader r(message);
  if (r.U8() != static_cast<uint8_t>(kStreamTag)) return malformed;
  *key = r.U64();
  *final = r.U8() != 0;
  const uint64_t end = r.U64();
  const bool has_response = r.U8() != 0;
  response->reset();
  if (has_response) {
    WireResponse wire;
    if (!ReadResponse(r, &wire)) return malformed;
    auto built = std::make_unique<InferenceResponse>();
    built->status = std::move(wire.status);
    built->parameters = std::move(wire.parameters);
    const char* data = region_->data() + kHeaderBytes;
    const uint64_t capacity = region_->size() - kHeaderBytes;
    for (const WireTensor& out : wire.outputs) {
      Tensor tensor;
      tensor.name = std::string(out.name);
      tensor.dtype = DataTypeFromName(out.datatype);
      tensor.shape = out.shape;
      if (tensor.dtype == DataType::kInvalid || out.offset > capacity ||
          out.bytes > capacity - out.offset) {
        return malformed;
      }
      ArenaBuffer buffer =
          TensorArena::Global()->Allocate(std::max<size_t>(out.bytes, 1));
      if (!buffer) return Status(StatusCode::kInternal, "out of memory");
      if (out.bytes > 0) std::memcpy(buffer->data(), data + out.offset, out.bytes);
      tensor.byte_size = out.bytes;
      tensor.data = buffer->data();
      tensor.owner = std::move(buffer);
      built->outputs.push_back(std::move(tensor));
    }
    *response = std::move(built);
  } else if (!r.ok()) {
    return malformed;
  }
  // The bytes are copied out: the stub may write over them.
  HeaderOf(*region_)->consumed.store(end, std::memory_order_release);
  return Status::Ok();
}

}  // namespace tritonx::stub
