// The texts both HTTP engines answer where each engine's own machinery makes the
// check (evhttp / httptools framing, zlib, OpenSSL / Python's ssl): size bounds,
// decompression, the restricted API groups, header forwarding and TLS setup. The
// checks cannot be shared, their wording is: the native engine calls these, the
// Python engine reaches them through bind_tables.cpp (`_native.http_messages`).
// Also Triton's pick of a response encoding, a rule both engines apply.
//
// Stateless functions; safe from any thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace tritonx {

// The reason phrase both engines put in a status line ("Unknown" for codes they
// never answer).
const char* HttpReasonPhrase(int status);
// 403 for a route of a restricted API group without the expected header.
std::string HttpRestrictedApi(std::string_view header);
// A header matched by --http-header-forward-pattern that Triton keeps for itself:
// the parameters tritonserver reads (a forwarded header would be taken as one) and
// names starting "triton_"; refused with HttpReservedHeader.
bool HttpHeaderReserved(std::string_view name);
std::string HttpReservedHeader(std::string_view name);
// A request past --http-max-input-size: `binary_body` when it has an
// Inference-Header-Content-Length (Triton says "body", else "JSON"); `size` < 0
// when the engine cannot tell how large it is.
std::string HttpInputTooLarge(bool binary_body, int64_t size, uint64_t limit);
// A request head past the engines' bounds (431).
std::string HttpHeadTooLarge(uint64_t max_size, uint64_t max_count);
// Content-Encoding other than gzip / deflate (501) and a body that does not inflate.
std::string HttpUnsupportedCompression();
std::string HttpDecompressFailed(std::string_view detail);
// An output whose datatype has no JSON form (FP16, BF16) asked for as JSON.
std::string HttpOutputNotJson(std::string_view datatype);
// The response encoding for an Accept-Encoding value: "identity", "gzip" or
// "deflate", the highest q among those, the first one on ties.
std::string_view HttpAcceptEncoding(std::string_view accept);
// --http-use-ssl settings that cannot work; `reason` empty: the file is not PEM.
std::string HttpTlsNeedsCert();
std::string HttpTlsNeedsRoot();
std::string HttpTlsBadServerCert(std::string_view cert, std::string_view key,
                                 std::string_view reason);
std::string HttpTlsBadRootCert(std::string_view root, std::string_view reason);

}  // namespace tritonx
