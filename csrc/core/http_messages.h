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
// What --http-max-input-size (`limit`) bounds, as in Triton: a request's JSON (the
// whole body, or its first `header_length` bytes when the binary extension gives
// one), a raw body (`header_length` 0: the bytes of the model's only input) and a
// body once decompressed. Binary tensor data after the JSON is bounded only by
// HttpBodyCap, so tritonclient's large binary requests pass as they do in Triton.
// `header_length` < 0: none (the body is JSON). The refusal's text, empty when
// `body_size` bytes are within bounds.
std::string HttpInputSizeError(int64_t header_length, uint64_t body_size,
                               uint64_t limit);
// The most any request body may take: twice the limit (bodies between the two are
// read and answered with HttpInputSizeError's exact sizes), at least 2^31 - 1
// bytes, which is where Triton's HTTP server stops (its body size is an int) and
// what gRPC messages may take.
uint64_t HttpBodyCap(uint64_t limit);
// A body past `bound`: the cap, or the limit for a decompressed body.
std::string HttpBodyTooLarge(uint64_t bound);
// A body the server has no memory to hold in one piece (503: the request may be
// retried; the server goes on serving).
std::string HttpBodyOutOfMemory(uint64_t size);
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
// A request target in absolute form ("http://host:port/path?query": RFC 9112 section
// 3.2.2 says a server must accept it, and proxies send it) as its origin form
// ("/path?query"; "" when it has no path); any other target as it is. Triton's HTTP
// library routes an absolute target by its path whatever the scheme, as this does.
std::string_view HttpOriginForm(std::string_view target);
// The verbose log lines Triton writes per HTTP request ("HTTP request: 2
// /v2/models/m/infer") and for a path no route matches ("HTTP error: 0 /x - 404"):
// the method as Triton's HTTP library numbers it (GET 0, HEAD 1, POST 2, ...), the
// path without its query, as sent.
std::string HttpRequestLogLine(std::string_view method, std::string_view path);
std::string HttpErrorLogLine(std::string_view method, std::string_view path,
                             int status);

}  // namespace tritonx
