#include "status.h"

namespace tritonx {
namespace {

// HTTP: INTERNAL 500, NOT_FOUND 404, UNAVAILABLE 503, UNSUPPORTED 501, the rest 400
// (Triton's HTTP frontend). gRPC: Triton's grpc frontend mapping.
constexpr StatusCodeInfo kCodes[] = {
    {StatusCode::kOk, "OK", "OK", 200, 0, "OK"},
    {StatusCode::kUnknown, "UNKNOWN", "Unknown", 400, 2, "UNKNOWN"},
    {StatusCode::kInternal, "INTERNAL", "Internal", 500, 13, "INTERNAL"},
    {StatusCode::kNotFound, "NOT_FOUND", "Not found", 404, 5, "NOT_FOUND"},
    {StatusCode::kInvalidArg, "INVALID_ARG", "Invalid argument", 400, 3,
     "INVALID_ARGUMENT"},
    {StatusCode::kUnavailable, "UNAVAILABLE", "Unavailable", 503, 14, "UNAVAILABLE"},
    {StatusCode::kUnsupported, "UNSUPPORTED", "Unsupported", 501, 12, "UNIMPLEMENTED"},
    {StatusCode::kAlreadyExists, "ALREADY_EXISTS", "Already exists", 400, 6,
     "ALREADY_EXISTS"},
    {StatusCode::kCancelled, "CANCELLED", "Cancelled", 400, 1, "CANCELLED"},
};

}  // namespace

const StatusCodeInfo& StatusCodeInfoOf(StatusCode code) {
  const auto index = static_cast<size_t>(code);
  return index < sizeof(kCodes) / sizeof(kCodes[0]) ? kCodes[index] : kCodes[1];
}

const StatusCodeInfo* StatusCodeTable(size_t* count) {
  *count = sizeof(kCodes) / sizeof(kCodes[0]) - 1;
  return kCodes + 1;
}

StatusCode StatusCodeFromName(const std::string& name) {
  for (const StatusCodeInfo& info : kCodes) {
    if (info.code != StatusCode::kOk && name == info.name) return info.code;
  }
  return StatusCode::kUnknown;
}

const char* StatusCodeName(StatusCode code) { return StatusCodeInfoOf(code).name; }

const char* Status::CodeName() const { return StatusCodeName(code_); }

}  // namespace tritonx
