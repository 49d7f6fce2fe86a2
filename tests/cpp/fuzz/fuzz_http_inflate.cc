// Fuzz target: a gzip or deflate request body inflated under a size limit, and the
// output compressed back (the response path).
//
// Input: byte 0 picks gzip (bit 0 clear) or deflate; the rest is the body.
#include <cstdint>
#include <string>

#include "http_compression.h"

using namespace tritonx::httpfe;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const Encoding encoding = (data[0] & 1) == 0 ? Encoding::kGzip : Encoding::kDeflate;
  // Small, so that bombs hit the limit quickly.
  const size_t limit = 1 << 16;
  std::string out;
  std::string error;
  bool too_large = false;
  const bool ok = Inflate(encoding, reinterpret_cast<const char*>(data) + 1, size - 1,
                          limit, &out, &too_large, &error);
  if (ok && out.size() > limit) __builtin_trap();
  if (ok) {
    Span part{out.data(), out.size()};
    (void)Deflate(encoding, &part, 1);
  }
  return 0;
}
