#include "http_compression.h"

#include <zlib.h>

#include <algorithm>
#include <cctype>
#include <vector>

#include "core/http_messages.h"

namespace tritonx {
namespace httpfe {
namespace {

std::string_view Trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front())))
    s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back())))
    s.remove_suffix(1);
  return s;
}

bool EqualsNoCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() &&
         std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

}  // namespace

Encoding RequestEncoding(std::string_view header) {
  header = Trim(header);
  if (header.empty() || EqualsNoCase(header, "identity")) return Encoding::kIdentity;
  if (EqualsNoCase(header, "gzip")) return Encoding::kGzip;
  if (EqualsNoCase(header, "deflate")) return Encoding::kDeflate;
  return Encoding::kUnsupported;
}

Encoding ResponseEncoding(std::string_view accept) {
  const std::string_view pick = HttpAcceptEncoding(accept);
  if (pick == "gzip") return Encoding::kGzip;
  if (pick == "deflate") return Encoding::kDeflate;
  return Encoding::kIdentity;
}

bool Inflate(Encoding encoding, const char* data, size_t size, size_t limit,
             std::string* out, bool* too_large, std::string* error) {
  *too_large = false;
  z_stream zs{};
  // gzip only for gzip; deflate accepts zlib-wrapped (what tritonclient sends) and
  // gzip headers alike (+32), like the Python frontend.
  const int wbits = encoding == Encoding::kGzip ? 16 + MAX_WBITS : 32 + MAX_WBITS;
  if (inflateInit2(&zs, wbits) != Z_OK) {
    *error = "failed to initialize zlib";
    return false;
  }
  out->clear();
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data));
  zs.avail_in = static_cast<uInt>(std::min<size_t>(size, UINT32_MAX));
  size_t remaining_in = size - zs.avail_in;
  int rc = Z_OK;
  while (rc != Z_STREAM_END) {
    if (out->size() > limit) break;
    size_t old = out->size();
    // Grow in steps; never allocate more than one byte past the limit.
    size_t step = std::min<size_t>(std::max<size_t>(size * 2, 64 * 1024),
                                   limit + 1 - std::min(old, limit));
    if (step == 0) step = 1;
    out->resize(old + step);
    zs.next_out = reinterpret_cast<Bytef*>(out->data() + old);
    zs.avail_out = static_cast<uInt>(step);
    rc = inflate(&zs, Z_NO_FLUSH);
    out->resize(old + step - zs.avail_out);
    if (zs.avail_in == 0 && remaining_in > 0) {
      zs.avail_in = static_cast<uInt>(std::min<size_t>(remaining_in, UINT32_MAX));
      remaining_in -= zs.avail_in;
    }
    if (rc == Z_BUF_ERROR && zs.avail_in == 0)
      break;  // truncated input: keep what came
    if (rc != Z_OK && rc != Z_STREAM_END && rc != Z_BUF_ERROR) {
      *error = zs.msg ? zs.msg : "invalid compressed data";
      inflateEnd(&zs);
      return false;
    }
  }
  inflateEnd(&zs);
  if (out->size() > limit) {
    *too_large = true;
    out->clear();
  }
  return true;
}

std::string Deflate(Encoding encoding, const Span* parts, size_t count) {
  z_stream zs{};
  const int wbits = encoding == Encoding::kGzip ? 16 + MAX_WBITS : MAX_WBITS;
  deflateInit2(&zs, Z_DEFAULT_COMPRESSION, Z_DEFLATED, wbits, 8, Z_DEFAULT_STRATEGY);
  size_t total = 0;
  for (size_t i = 0; i < count; ++i) total += parts[i].size;
  std::string out(deflateBound(&zs, total) + 64, '\0');
  zs.next_out = reinterpret_cast<Bytef*>(out.data());
  zs.avail_out = static_cast<uInt>(out.size());
  for (size_t i = 0; i < count; ++i) {
    zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(parts[i].data));
    zs.avail_in = static_cast<uInt>(parts[i].size);
    deflate(&zs, i + 1 == count ? Z_FINISH : Z_NO_FLUSH);
  }
  if (count == 0) deflate(&zs, Z_FINISH);
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

}  // namespace httpfe
}  // namespace tritonx
