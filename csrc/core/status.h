// Status: the error currency of the core. The core never throws across threads; every
// fallible call returns a Status whose code maps one-to-one onto Triton's error codes
// (and from there onto HTTP statuses and gRPC codes in the frontends).
#pragma once

#include <cstddef>
#include <string>
#include <utility>

namespace tritonx {

enum class StatusCode {
  kOk = 0,
  kUnknown,
  kInternal,
  kNotFound,
  kInvalidArg,
  kUnavailable,
  kUnsupported,
  kAlreadyExists,
  kCancelled,
};

class Status {
 public:
  Status() = default;
  Status(StatusCode code, std::string message)
      : code_(code), message_(std::move(message)) {}

  static Status Ok() { return Status(); }
  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }

  // Triton's spelling of the code ("INVALID_ARG", "UNAVAILABLE", ...).
  const char* CodeName() const;

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

const char* StatusCodeName(StatusCode code);

// Shorthands for the two codes request decoding returns most.
inline Status InternalError(std::string message) {
  return Status(StatusCode::kInternal, std::move(message));
}
inline Status InvalidArgError(std::string message) {
  return Status(StatusCode::kInvalidArg, std::move(message));
}

// How each code travels, the one table for C++ and Python (tritonx.errors reads it
// through tritonx._native.status_codes): Triton's name, the word it prefixes
// messages with ("Invalid argument"), the HTTP status and the gRPC status code
// (grpc::StatusCode's numbering, which is the gRPC wire's).
struct StatusCodeInfo {
  StatusCode code;
  const char* name;
  const char* words;
  int http_status;
  int grpc_code;
  const char* grpc_name;
};
const StatusCodeInfo& StatusCodeInfoOf(StatusCode code);
// Every code but kOk, in enum order.
const StatusCodeInfo* StatusCodeTable(size_t* count);
// The code Triton names `name` ("INVALID_ARG"); kUnknown for any other name.
StatusCode StatusCodeFromName(const std::string& name);
inline int HttpStatusOf(StatusCode code) { return StatusCodeInfoOf(code).http_status; }

}  // namespace tritonx
