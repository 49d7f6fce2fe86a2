// Fuzz target: the execute messages of a stub ring (core/stub_wire.h) as the other
// end reads them: a stub's reply as the server reads it (every output located in a
// 4 KiB data area and read), or the server's requests as a stub reads them. A
// broken or hostile peer must get a refusal, never a read outside the area.
//
// Input: byte 0 picks the reply (bit 0 clear) or the requests; the rest is the
// message.
#include <cstdint>
#include <memory>
#include <string_view>
#include <vector>

#include "core/stub_wire.h"
#include "core/tensor.h"
#include "fuzz_models.h"

using namespace tritonx;

namespace {

constexpr uint64_t kAreaBytes = 4096;

// Reads every byte of [offset, offset + bytes) of the area, as a response's consumer
// would.
uint8_t ReadArea(const std::vector<uint8_t>& area, const stub::WireTensor& wire) {
  uint8_t sum = 0;
  for (uint64_t i = 0; i < wire.bytes; ++i) sum ^= area[wire.offset + i];
  return sum;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  // A copy of exactly the message's size, so reads past it reach the sanitizers.
  std::vector<char> bytes(data + 1, data + size);
  const std::string_view message(bytes.data(), bytes.size());
  // Heap memory of exactly the area's size, likewise.
  std::vector<uint8_t> area(kAreaBytes, 0x5a);
  volatile uint8_t sink = 0;
  if ((data[0] & 1) == 0) {
    stub::WireReply reply;
    const bool read = stub::ReadReply(message, &reply);
    fuzz::Trace("reply",
                read ? Status::Ok() : Status(StatusCode::kInvalidArg, "refused"));
    if (!read) return 0;
    for (const stub::WireResponse& response : reply.responses) {
      for (const stub::WireTensor& out : response.outputs) {
        Tensor tensor;
        const bool located = stub::TensorFromWire(out, kAreaBytes, &tensor);
        fuzz::Trace("output", located ? Status::Ok()
                                      : Status(StatusCode::kInternal, "bad output"));
        if (located) sink ^= ReadArea(area, out);
      }
    }
  } else {
    std::vector<stub::WireRequest> requests;
    const bool read = stub::ReadRequests(message, &requests);
    fuzz::Trace("requests",
                read ? Status::Ok() : Status(StatusCode::kInvalidArg, "refused"));
    if (!read) return 0;
    for (const stub::WireRequest& request : requests) {
      for (const stub::WireTensor& in : request.inputs) {
        Tensor tensor;
        if (stub::TensorFromWire(in, kAreaBytes, &tensor)) sink ^= ReadArea(area, in);
      }
    }
  }
  (void)sink;
  return 0;
}
