// Fuzz target: a value read back from the remote response cache's store (Redis: any
// client of it can write there), decoded as the server decodes a cache hit and
// answered to an HTTP client as JSON and as binary outputs. An entry that decodes
// must encode again, and that encoding must decode to the same encoding (the codec
// keeps everything it accepts); every output of a hit must be readable in full.
//
// Input: the stored value.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/remote_response_cache.h"
#include "fuzz_models.h"
#include "http_infer_codec.h"

using namespace tritonx;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto stored =
      std::make_shared<const std::string>(reinterpret_cast<const char*>(data), size);
  std::unique_ptr<InferenceResponse> hit = DecodeEntry(stored);
  fuzz::Trace("decode", hit ? Status::Ok() : Status(StatusCode::kInvalidArg, "miss"));
  if (!hit) return 0;

  const std::optional<std::string> encoded = EncodeEntry(*hit);
  if (!encoded) __builtin_trap();  // host outputs always encode
  std::unique_ptr<InferenceResponse> again =
      DecodeEntry(std::make_shared<const std::string>(*encoded));
  if (!again) __builtin_trap();
  const std::optional<std::string> reencoded = EncodeEntry(*again);
  if (!reencoded || *reencoded != *encoded) __builtin_trap();

  for (const bool binary : {false, true}) {
    httpfe::OutputEncoding encoding;
    encoding.default_binary = binary;
    std::string json;
    std::vector<size_t> binaries;
    fuzz::Trace(binary ? "render binary" : "render json",
                httpfe::RenderInferResponse(*hit, "id", encoding, &json, &binaries));
  }
  return 0;
}
