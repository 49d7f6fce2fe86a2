#include "request_parameters.h"

#include <string>

namespace tritonx {
namespace {

bool AsUint(const ParameterValue& value, uint64_t* out) {
  if (const auto* u = std::get_if<uint64_t>(&value)) {
    *out = *u;
    return true;
  }
  if (const auto* i = std::get_if<int64_t>(&value)) {
    if (*i < 0) return false;
    *out = static_cast<uint64_t>(*i);
    return true;
  }
  return false;
}

bool AsBool(const ParameterValue& value, bool* out) {
  if (const auto* b = std::get_if<bool>(&value)) {
    *out = *b;
    return true;
  }
  return false;
}

}  // namespace

Status ApplyRequestParameters(Parameters given, InferenceRequest* request) {
  for (auto& [key, value] : given) {
    if (key == "priority") {
      if (!AsUint(value, &request->priority)) {
        return Status(StatusCode::kInvalidArg,
                      "invalid value for 'priority', expected value >= 0.");
      }
    } else if (key == "timeout") {
      if (!AsUint(value, &request->timeout_us)) {
        return Status(StatusCode::kInvalidArg,
                      "parameter 'timeout' must be a non-negative integer");
      }
    } else if (key == "sequence_id") {
      if (const auto* s = std::get_if<std::string>(&value)) {
        request->correlation_id_str = *s;
      } else if (!AsUint(value, &request->correlation_id)) {
        return Status(
            StatusCode::kInvalidArg,
            "parameter 'sequence_id' must be an unsigned integer or a string");
      }
    } else if (key == "sequence_start" || key == "sequence_end") {
      bool flag = false;
      if (!AsBool(value, &flag)) {
        return Status(StatusCode::kInvalidArg,
                      "parameter '" + key + "' must be a boolean");
      }
      const uint32_t bit = key == "sequence_start" ? 1u : 2u;
      request->flags = flag ? (request->flags | bit) : (request->flags & ~bit);
    } else if (Status reserved = ReservedParameter(key, request->protocol);
               !reserved.ok()) {
      return reserved;
    } else {
      request->parameters.emplace_back(std::move(key), std::move(value));
    }
  }
  return Status::Ok();
}

Status ReservedParameter(const std::string& key, InferenceRequest::Protocol protocol) {
  if (key.rfind("triton_", 0) != 0) return Status::Ok();
  if (protocol == InferenceRequest::Protocol::kGrpc) {
    if (key == "triton_enable_empty_final_response") return Status::Ok();
    return Status(StatusCode::kInvalidArg,
                  "parameter keys starting with 'triton_' are reserved for Triton "
                  "usage. Only the following keys starting with 'triton_' are "
                  "allowed: triton_enable_empty_final_response");
  }
  return Status(StatusCode::kInvalidArg,
                "parameter keys starting with 'triton_' are reserved for Triton "
                "usage and should not be specified.");
}

Status CheckRequestParameters(const Parameters& given,
                              InferenceRequest::Protocol protocol) {
  InferenceRequest scratch;  // the rules live once, in ApplyRequestParameters
  scratch.protocol = protocol;
  return ApplyRequestParameters(given, &scratch);
}

}  // namespace tritonx
