#include "received_request.h"

#include <grpcpp/support/proto_buffer_reader.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <string>
#include <system_error>
#include <thread>

namespace tritonx {
namespace grpcfe {
namespace {

// Hands freed heap memory back to the OS (glibc only).
void TrimHeap() {
#ifdef __GLIBC__
  malloc_trim(0);
#endif
}

void TrimIfLarge(size_t length) {
  if (length >= kTrimAfterReceivedBytes) TrimHeap();
}

std::atomic<bool> background_trim_running{false};

}  // namespace

void TrimHeapInBackground() {
  if (background_trim_running.exchange(true)) return;  // one is on its way
  auto trim = [] {
    // Some of the memory is freed later than the call's end: a Python model's output
    // arrays are let go under the GIL by the bindings' release pump, which runs at
    // least once a second (tritonx._native); trimming before that would miss them.
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    TrimHeap();
    background_trim_running.store(false);
  };
  try {
    std::thread(trim).detach();
  } catch (const std::system_error&) {
    trim();  // no thread can start (a pids limit): on this one
  }
}

namespace {

// Reads through a message's slices in order. With `release`, each slice is
// dropped as soon as the cursor has passed it, and for a large message the freed
// memory is handed back to the OS every kTrimStep bytes: the slices are small heap
// blocks, which glibc keeps mapped once freed, so without it the copy would
// still hold the message twice at its end. Not thread-safe.
class SliceCursor {
 public:
  static constexpr size_t kTrimStep = size_t{16} << 20;

  SliceCursor(std::vector<grpc::Slice>* slices, size_t length, bool release)
      : slices_(slices),
        remaining_(length),
        release_(release),
        trims_(release && length >= kTrimAfterReceivedBytes) {}

  size_t remaining() const { return remaining_; }

  bool ReadVarint(uint64_t* value) {
    *value = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      uint8_t byte;
      if (remaining_ == 0) return false;
      Take(reinterpret_cast<char*>(&byte), 1);
      *value |= static_cast<uint64_t>(byte & 0x7f) << shift;
      if ((byte & 0x80) == 0) return true;
    }
    return false;  // longer than ten bytes
  }

  // Copies the next `n` bytes into `dst` (null: skips them); false past the end.
  bool Take(char* dst, size_t n) {
    if (n > remaining_) return false;
    remaining_ -= n;
    while (n > 0) {
      grpc::Slice& slice = (*slices_)[index_];
      const size_t step = std::min(n, slice.size() - offset_);
      if (dst != nullptr) {
        std::memcpy(dst, slice.begin() + offset_, step);
        dst += step;
      }
      n -= step;
      offset_ += step;
      if (offset_ == slice.size()) {
        if (release_) {
          released_ += slice.size();
          slice = grpc::Slice();
          if (trims_ && released_ >= kTrimStep) {
            TrimHeap();
            released_ = 0;
          }
        }
        ++index_;
        offset_ = 0;
      }
    }
    return true;
  }

 private:
  std::vector<grpc::Slice>* slices_;
  size_t index_ = 0;   // the slice being read
  size_t offset_ = 0;  // within it
  size_t remaining_;
  const bool release_;
  const bool trims_;
  size_t released_ = 0;  // since the last trim
};

// A run of the message's bytes: kept for protobuf, a raw entry, or dropped (a raw
// entry's tag and length).
struct Segment {
  enum class Kind { kRest, kRaw, kDrop } kind;
  size_t length;
};

// Splits the message into segments; false for anything but plain fields (a
// group, a malformed tag or length), which protobuf's own parse then judges.
bool Scan(std::vector<grpc::Slice>* slices, size_t length,
          std::vector<Segment>* segments, size_t* raw_total) {
  constexpr uint64_t kRawField =
      inference::ModelInferRequest::kRawInputContentsFieldNumber;
  SliceCursor cursor(slices, length, /*release=*/false);
  auto add = [segments](Segment::Kind kind, size_t n) {
    if (!segments->empty() && kind == Segment::Kind::kRest &&
        segments->back().kind == kind) {
      segments->back().length += n;
    } else {
      segments->push_back({kind, n});
    }
  };
  *raw_total = 0;
  while (cursor.remaining() > 0) {
    const size_t start = cursor.remaining();
    uint64_t tag = 0;
    if (!cursor.ReadVarint(&tag) || (tag >> 3) == 0 || tag > UINT32_MAX) return false;
    uint64_t size = 0;
    switch (tag & 7) {
      case 0:  // varint
        if (!cursor.ReadVarint(&size)) return false;
        break;
      case 1:  // fixed64
        if (!cursor.Take(nullptr, 8)) return false;
        break;
      case 5:  // fixed32
        if (!cursor.Take(nullptr, 4)) return false;
        break;
      case 2:  // length-delimited
        if (!cursor.ReadVarint(&size) || size > cursor.remaining() || size > INT32_MAX)
          return false;
        if ((tag >> 3) == kRawField) {
          add(Segment::Kind::kDrop, start - cursor.remaining());
          add(Segment::Kind::kRaw, size);
          *raw_total += size;
          cursor.Take(nullptr, size);
          continue;
        }
        cursor.Take(nullptr, size);
        break;
      default:  // groups, and wire types protobuf refuses
        return false;
    }
    add(Segment::Kind::kRest, start - cursor.remaining());
  }
  return true;
}

}  // namespace

bool ParseReceived(grpc::ByteBuffer* received, google::protobuf::Message* msg) {
  bool parsed = true;  // an empty message: every field at its default
  if (received->Valid()) {
    grpc::ProtoBufferReader reader(received);
    parsed = msg->ParseFromZeroCopyStream(&reader);
  }
  const size_t length = received->Length();
  received->Clear();
  TrimIfLarge(length);
  return parsed;
}

bool ParseReceivedInferRequest(grpc::ByteBuffer* received, ReceivedInferRequest* out,
                               size_t split_from) {
  const size_t length = received->Valid() ? received->Length() : 0;
  std::vector<grpc::Slice> slices;
  std::vector<Segment> segments;
  size_t raw_total = 0;
  if (length < split_from || !received->Dump(&slices).ok() ||
      !Scan(&slices, length, &segments, &raw_total)) {
    slices.clear();
    if (!ParseReceived(received, &out->message)) return false;
    for (const std::string& raw : out->message.raw_input_contents())
      out->raw_inputs.emplace_back(raw);
    return true;
  }
  // `slices` now hold the only references: the copy below releases them behind it.
  received->Clear();
  out->raw_bytes.reset(new char[raw_total > 0 ? raw_total : 1]);
  std::string rest;
  char* raw = out->raw_bytes.get();
  SliceCursor cursor(&slices, length, /*release=*/true);
  for (const Segment& segment : segments) {
    switch (segment.kind) {
      case Segment::Kind::kRest: {
        const size_t at = rest.size();
        rest.resize(at + segment.length);
        cursor.Take(rest.data() + at, segment.length);
        break;
      }
      case Segment::Kind::kRaw:
        cursor.Take(raw, segment.length);
        out->raw_inputs.emplace_back(raw, segment.length);
        raw += segment.length;
        break;
      case Segment::Kind::kDrop:
        cursor.Take(nullptr, segment.length);
        break;
    }
  }
  TrimIfLarge(length);
  return out->message.ParseFromString(rest);
}

}  // namespace grpcfe
}  // namespace tritonx
