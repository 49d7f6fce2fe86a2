// Fuzz target: an HTTP infer body (JSON, or JSON then binary tensors, or a raw
// body) through what the C++ HTTP frontend does with it: Inference-Header-Content-
// Length checked, the body parsed (shared memory region "r" may be named), the
// model's checks, and the response rendered as JSON plus binary outputs.
//
// Input: byte 0 picks the model (bits 0-1), whether a header length is sent (bit
// 2), whether shared memory is allowed (bit 3); bytes 1-2 are the header length
// (little endian); the rest is the body.
#include <cstdint>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "core/infer_json.h"
#include "core/request_builder.h"
#include "fuzz_models.h"
#include "http_infer_codec.h"

using namespace tritonx;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 3) return 0;
  const uint8_t flags = data[0];
  const size_t declared = data[1] | (size_t{data[2]} << 8);
  // The body lives in memory of its own size, as an evbuffer made contiguous.
  auto body = std::make_shared<std::vector<char>>(data + 3, data + size);
  const ModelSpec& spec = fuzz::SpecFor(flags);
  const bool has_header_length = (flags & 4) != 0;
  const SharedMemoryRegistry* shm = (flags & 8) != 0 ? &fuzz::Registry() : nullptr;

  size_t header_length = 0;
  if (has_header_length &&
      !ParseHeaderLength(std::to_string(declared), body->size(), &header_length).ok()) {
    return 0;
  }
  InferenceRequest request;
  httpfe::OutputEncoding encoding;
  Status status;
  if ((has_header_length ? header_length : body->size()) == 0) {
    status = DeduceRawInput(spec, body->data(), body->size(), body, &request);
    encoding.default_binary = true;
  } else {
    status = httpfe::ParseInferBody(body->data(), body->size(), body, has_header_length,
                                    header_length, spec.name, &request, &encoding, shm);
  }
  fuzz::Trace("parse", status);
  if (!status.ok()) {
    (void)httpfe::ErrorBody(status.message());
    return 0;
  }
  fuzz::RunAsServer(spec, &request, [&](const InferenceResponse& response) {
    std::string json;
    std::vector<size_t> binaries;
    fuzz::Trace("render", httpfe::RenderInferResponse(response, request.id, encoding,
                                                      &json, &binaries));
  });
  return 0;
}
