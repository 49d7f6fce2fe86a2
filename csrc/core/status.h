// Status: the error currency of the core. The core never throws across threads; every
// fallible call returns a Status whose code maps one-to-one onto Triton's error codes
// (and from there onto HTTP statuses and gRPC codes in the frontends).
#pragma once

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

}  // namespace tritonx
