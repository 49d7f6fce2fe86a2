#include "http_messages.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <iterator>
#include <limits>

namespace tritonx {
namespace {

std::string_view Trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) {
    s.remove_prefix(1);
  }
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) {
    s.remove_suffix(1);
  }
  return s;
}

}  // namespace

const char* HttpReasonPhrase(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 400:
      return "Bad Request";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 413:
      return "Request Entity Too Large";
    case 417:
      return "Expectation Failed";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 503:
      return "Service Unavailable";
    default:
      return "Unknown";
  }
}

std::string HttpRestrictedApi(std::string_view header) {
  return "This API is restricted, expecting header '" + std::string(header) + "'";
}

bool HttpHeaderReserved(std::string_view name) {
  for (std::string_view reserved :
       {"sequence_id", "sequence_start", "sequence_end", "priority", "timeout",
        "headers", "binary_data_output"}) {
    if (name == reserved) return true;
  }
  return name.substr(0, 7) == "triton_";
}

std::string HttpReservedHeader(std::string_view name) {
  return "Header '" + std::string(name) +
         "' is reserved for Triton usage and cannot be forwarded.";
}

namespace {
constexpr std::string_view kRaiseTheLimit =
    " bytes. Use --http-max-input-size to increase the limit.";
}  // namespace

std::string HttpInputSizeError(int64_t header_length, uint64_t body_size,
                               uint64_t limit) {
  if (header_length == 0) {
    if (body_size <= limit) return {};
    return "Raw input has a byte_size (" + std::to_string(body_size) +
           " bytes) that exceeds the maximum allowed value of " +
           std::to_string(limit) + std::string(kRaiseTheLimit);
  }
  const uint64_t json_size =
      header_length > 0 ? static_cast<uint64_t>(header_length) : body_size;
  if (json_size <= limit) return {};
  return "Request JSON size of " + std::to_string(json_size) +
         " bytes exceeds the maximum allowed value of " + std::to_string(limit) +
         std::string(kRaiseTheLimit);
}

uint64_t HttpBodyCap(uint64_t limit) {
  constexpr uint64_t kTritonBodyMax = (uint64_t{1} << 31) - 1;
  constexpr uint64_t kMax = std::numeric_limits<int64_t>::max();
  return std::max(limit > kMax / 2 ? kMax : 2 * limit, kTritonBodyMax);
}

std::string HttpBodyTooLarge(uint64_t bound) {
  return "Request body size exceeds the maximum allowed value of " +
         std::to_string(bound) + std::string(kRaiseTheLimit);
}

std::string HttpBodyOutOfMemory(uint64_t size) {
  return "failed to allocate memory for the request body (" + std::to_string(size) +
         " bytes)";
}

std::string HttpHeadTooLarge(uint64_t max_size, uint64_t max_count) {
  return "request header fields too large: the request line and headers may take at "
         "most " +
         std::to_string(max_size) + " bytes in at most " + std::to_string(max_count) +
         " fields";
}

std::string HttpUnsupportedCompression() { return "Unsupported compression type"; }

std::string HttpDecompressFailed(std::string_view detail) {
  return "failed to decompress the request: " + std::string(detail);
}

std::string HttpOutputNotJson(std::string_view datatype) {
  return "sending " + std::string(datatype) +
         " data via JSON is not supported. Please use the binary data format for "
         "output";
}

std::string_view HttpAcceptEncoding(std::string_view accept) {
  std::string_view best = "identity";
  double weight = 0.0;
  while (!accept.empty()) {
    const size_t comma = accept.find(',');
    const std::string_view item = Trim(accept.substr(0, comma));
    accept =
        comma == std::string_view::npos ? std::string_view() : accept.substr(comma + 1);
    // "<token>;q=<value>"; an unreadable q drops the item.
    const size_t q = item.find(";q=");
    const std::string_view token = item.substr(0, q);
    double value = 1.0;
    if (q != std::string_view::npos) {
      const std::string text(item.substr(q + 3));
      char* end = nullptr;
      value = std::strtod(text.c_str(), &end);
      if (text.empty() || end != text.c_str() + text.size()) continue;
    }
    if (token != "identity" && token != "gzip" && token != "deflate") continue;
    if (value > weight) {
      best = token == "identity" ? "identity" : token == "gzip" ? "gzip" : "deflate";
      weight = value;
    }
  }
  return best;
}

std::string HttpTlsNeedsCert() {
  return "--http-use-ssl needs --http-server-cert and --http-server-key";
}

std::string HttpTlsNeedsRoot() {
  return "--http-use-ssl-mutual needs --http-root-cert";
}

std::string HttpTlsBadServerCert(std::string_view cert, std::string_view key,
                                 std::string_view reason) {
  return "failed to load --http-server-cert " + std::string(cert) +
         " / --http-server-key " + std::string(key) + ": " +
         (reason.empty() ? std::string("not a PEM certificate and its private key")
                         : std::string(reason));
}

std::string HttpTlsBadRootCert(std::string_view root, std::string_view reason) {
  return "failed to load --http-root-cert " + std::string(root) + ": " +
         (reason.empty() ? std::string("not a PEM certificate") : std::string(reason));
}

namespace {

// libevhtp's method numbers (htp_method), which Triton logs: its order, not
// libevent's bit flags.
int EvhtpMethodNumber(std::string_view method) {
  static constexpr std::string_view kMethods[] = {
      "GET",    "HEAD",  "POST",    "PUT",      "DELETE",    "MKCOL",
      "COPY",   "MOVE",  "OPTIONS", "PROPFIND", "PROPPATCH", "LOCK",
      "UNLOCK", "TRACE", "CONNECT", "PATCH"};
  for (size_t i = 0; i < std::size(kMethods); ++i) {
    if (kMethods[i] == method) return static_cast<int>(i);
  }
  return static_cast<int>(std::size(kMethods));  // htp_method_UNKNOWN
}

}  // namespace

std::string HttpRequestLogLine(std::string_view method, std::string_view path) {
  return "HTTP request: " + std::to_string(EvhtpMethodNumber(method)) + " " +
         std::string(path);
}

std::string_view HttpOriginForm(std::string_view target) {
  if (target.empty() || !std::isalpha(static_cast<unsigned char>(target[0]))) {
    return target;
  }
  // scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ), then "://" and the authority.
  size_t end = 1;
  while (end < target.size() &&
         (std::isalnum(static_cast<unsigned char>(target[end])) || target[end] == '+' ||
          target[end] == '-' || target[end] == '.')) {
    ++end;
  }
  if (target.compare(end, 3, "://") != 0) return target;
  const size_t path = target.find_first_of("/?#", end + 3);
  return path == std::string_view::npos ? std::string_view() : target.substr(path);
}

std::string HttpErrorLogLine(std::string_view method, std::string_view path,
                             int status) {
  return "HTTP error: " + std::to_string(EvhtpMethodNumber(method)) + " " +
         std::string(path) + " - " + std::to_string(status);
}

}  // namespace tritonx
