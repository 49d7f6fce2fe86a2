// Fuzz target: a ModelInferRequest's wire bytes as gRPC hands them over (in
// slices), parsed with the raw input contents split off, which must give exactly
// what protobuf parses from the same bytes; then built into a request (shared
// memory region "r" may be named), checked by the model and answered.
//
// Input: byte 0 picks the model (bits 0-1) and whether shared memory is allowed
// (bit 2); byte 1 is the slice size; the rest is the message.
#include <google/protobuf/stubs/logging.h>
#include <google/protobuf/util/field_comparator.h>
#include <google/protobuf/util/message_differencer.h>
#include <grpcpp/support/byte_buffer.h>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "fuzz_models.h"
#include "infer_codec.h"
#include "received_request.h"

using namespace tritonx;

namespace {

grpc::ByteBuffer Sliced(const uint8_t* data, size_t size, size_t piece) {
  std::vector<grpc::Slice> slices;
  for (size_t at = 0; at < size; at += piece) {
    slices.emplace_back(data + at, std::min(piece, size - at));
  }
  return grpc::ByteBuffer(slices.data(), slices.size());
}

// Both parses of the same bytes, field for field; NaNs (typed FP32/FP64 contents)
// compare equal to NaNs.
bool SameMessage(const inference::ModelInferRequest& a,
                 const inference::ModelInferRequest& b) {
  google::protobuf::util::DefaultFieldComparator comparator;
  comparator.set_treat_nan_as_equal(true);
  google::protobuf::util::MessageDifferencer differencer;
  differencer.set_field_comparator(&comparator);
  return differencer.Compare(a, b);
}

// protobuf logs every string field that is not UTF-8; the fuzzer makes many.
const bool kQuietProtobuf = [] {
  google::protobuf::SetLogHandler(nullptr);
  return true;
}();

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const ModelSpec& spec = fuzz::SpecFor(data[0]);
  const SharedMemoryRegistry* shm = (data[0] & 4) != 0 ? &fuzz::Registry() : nullptr;
  const size_t piece = size_t{data[1]} + 1;
  const uint8_t* wire = data + 2;
  const size_t wire_size = size - 2;

  inference::ModelInferRequest reference;
  const bool reference_ok = reference.ParseFromArray(wire, static_cast<int>(wire_size));
  grpc::ByteBuffer received = Sliced(wire, wire_size, piece);
  auto parsed = std::make_shared<grpcfe::ReceivedInferRequest>();
  const bool ok = grpcfe::ParseReceivedInferRequest(&received, parsed.get(), 0);
  // The split parse is for memory only: it must agree with protobuf.
  if (ok != reference_ok) __builtin_trap();
  if (!ok) return 0;
  if (static_cast<int>(parsed->raw_inputs.size()) !=
      reference.raw_input_contents_size()) {
    __builtin_trap();
  }
  for (size_t i = 0; i < parsed->raw_inputs.size(); ++i) {
    if (parsed->raw_inputs[i] != reference.raw_input_contents(static_cast<int>(i))) {
      __builtin_trap();
    }
  }
  reference.clear_raw_input_contents();
  parsed->message.clear_raw_input_contents();
  if (!SameMessage(parsed->message, reference)) {
    __builtin_trap();
  }

  InferenceRequest request;
  ShmOutputs shm_outputs;
  const Status built = grpcfe::BuildInferenceRequest(
      parsed->message, parsed->raw_inputs, parsed, &spec, &request, shm, &shm_outputs);
  fuzz::Trace("build", built);
  if (!built.ok()) return 0;
  fuzz::RunAsServer(spec, &request, [&](const InferenceResponse& response) {
    inference::ModelInferResponse msg;
    fuzz::Trace("render",
                grpcfe::BuildInferResponse(response, request.id, &msg, &shm_outputs));
  });
  return 0;
}
