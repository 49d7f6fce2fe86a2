// Received gRPC messages, parsed from the slices gRPC hands over and then let go.
//
// A large ModelInferRequest is parsed differently: protobuf would copy each
// raw_input_contents entry out of the received bytes while those are still held
// (a 1 GiB input: 2 GiB at the peak). Here the message's other fields go through
// protobuf, and the raw entries are copied into one buffer of their own while the
// received slices are released behind the copy, so a large input is held about
// once. The split is for memory only: what comes out is what protobuf would have
// parsed, and anything the scan does not expect falls back to protobuf's parse.
#pragma once

#include <google/protobuf/message.h>
#include <grpcpp/support/byte_buffer.h>

#include <cstddef>
#include <memory>
#include <string_view>
#include <vector>

#include "grpc_service.pb.h"

namespace tritonx {
namespace grpcfe {

// A ModelInferRequest as received, its raw input contents kept apart. Not
// thread-safe; immutable once parsed, so shareable read-only (tensors borrow
// `raw_inputs`, which point into `message` or `raw_bytes`: keep the whole
// object alive while they are used).
struct ReceivedInferRequest {
  // Without raw_input_contents when they were split off.
  inference::ModelInferRequest message;
  std::unique_ptr<char[]> raw_bytes;  // the split entries, back to back
  // One per raw_input_contents entry, in wire order.
  std::vector<std::string_view> raw_inputs;
};

// Messages this large have their raw input contents split off.
inline constexpr size_t kSplitRawInputsBytes = size_t{1} << 20;
// A message this large also hands the freed memory back to the OS at once (it
// arrived as many small slices, which glibc keeps mapped once freed).
inline constexpr size_t kTrimAfterReceivedBytes = size_t{64} << 20;

// Hands freed heap memory back to the OS (glibc keeps medium blocks mapped once
// freed) on a thread of its own, 1.5 s later (trimming a large heap takes
// milliseconds, and a Python model's arrays are freed up to a second after the call
// that held them); at most one such trim is pending at a time, and one asked for
// meanwhile is folded into it. Thread safe.
void TrimHeapInBackground();

// Parses `received` into `msg` from its slices (no flattening), then lets the bytes
// go: the parsed message holds its own copy, and the received ones would otherwise
// stay until the call ends. False when the bytes do not parse.
bool ParseReceived(grpc::ByteBuffer* received, google::protobuf::Message* msg);

// ParseReceived for a ModelInferRequest, splitting off the raw input contents of
// a message of `split_from` bytes or more. `received` is empty afterwards.
bool ParseReceivedInferRequest(grpc::ByteBuffer* received, ReceivedInferRequest* out,
                               size_t split_from = kSplitRawInputsBytes);

}  // namespace grpcfe
}  // namespace tritonx
