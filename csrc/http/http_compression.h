// gzip/deflate for HTTP bodies (zlib), and Triton's pick from Accept-Encoding.
// Stateless functions; safe from any thread.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace tritonx {
namespace httpfe {

enum class Encoding { kIdentity, kGzip, kDeflate, kUnsupported };

// Content-Encoding of a request body (case-insensitive, surrounding spaces ignored).
Encoding RequestEncoding(std::string_view header);

// The response encoding for an Accept-Encoding value (tritonx::HttpAcceptEncoding,
// the pick both HTTP engines share).
Encoding ResponseEncoding(std::string_view accept);

// Inflates `in` into `*out`, stopping once more than `limit` bytes came out.
// Returns false with `*error` set (zlib's message) on corrupt data; `*too_large`
// is set when the output would exceed `limit`.
bool Inflate(Encoding encoding, const char* data, size_t size, size_t limit,
             std::string* out, bool* too_large, std::string* error);

// Compresses the concatenation of `parts` (gzip or zlib-wrapped deflate).
struct Span {
  const char* data;
  size_t size;
};
std::string Deflate(Encoding encoding, const Span* parts, size_t count);

}  // namespace httpfe
}  // namespace tritonx
