// Fuzz target: a generate / generate_stream body (flat JSON of inputs and
// parameters) parsed for a model, checked, and its response rendered.
//
// Input: byte 0 picks the model (bits 0-1); the rest is the body.
#include <cstdint>
#include <string>

#include "fuzz_models.h"
#include "http_generate.h"

using namespace tritonx;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const ModelSpec& spec = fuzz::SpecFor(data[0]);
  const std::string body(reinterpret_cast<const char*>(data) + 1, size - 1);
  InferenceRequest request;
  const Status parsed =
      httpfe::ParseGenerateBody(body.data(), body.size(), spec, &request);
  fuzz::Trace("parse", parsed);
  if (!parsed.ok()) return 0;
  fuzz::RunAsServer(spec, &request, [&](const InferenceResponse& response) {
    std::string json;
    fuzz::Trace("render", httpfe::RenderGenerateResponse(response, request.id, &json));
  });
  return 0;
}
