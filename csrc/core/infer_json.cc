#include "infer_json.h"

#include <limits>

namespace tritonx {

Status JsonMissingMember(std::string_view member) {
  const std::string m(member);
  return InternalError("Unable to parse '" + m +
                       "': attempt to access non-existing object member '" + m + "'");
}

Status JsonWrongType(std::string_view member, std::string_view what, StatusCode code) {
  return Status(code, "Unable to parse '" + std::string(member) +
                          "': attempt to access JSON " + std::string(what));
}

Status JsonNotUnsigned(std::string_view member) {
  return JsonWrongType(member, infer_json::kNotUnsigned, StatusCode::kInvalidArg);
}

Status JsonParseFailure(std::string_view detail) {
  return InternalError("failed to parse the request JSON buffer: " +
                       std::string(detail));
}

Status JsonTooDeep() { return JsonParseFailure("the document is nested too deeply."); }

Status JsonInvalidEncoding() { return JsonParseFailure("Invalid encoding in string."); }

Status ParseHeaderLength(std::string_view value, size_t body_size, size_t* out) {
  const size_t b = value.find_first_not_of(" \t");
  const size_t e = value.find_last_not_of(" \t");
  const std::string text = b == std::string_view::npos
                               ? std::string()
                               : std::string(value.substr(b, e - b + 1));
  size_t i = 0;
  bool negative = false;
  if (!text.empty() && (text[0] == '-' || text[0] == '+')) {
    negative = text[0] == '-';
    i = 1;
  }
  unsigned long long digits = 0;
  bool overflow = false;
  for (; i < text.size() && text[i] >= '0' && text[i] <= '9'; ++i) {
    if (digits > (std::numeric_limits<unsigned long long>::max() - 9) / 10) {
      overflow = true;
    }
    digits = digits * 10 + static_cast<unsigned>(text[i] - '0');
  }
  if ((negative && digits != 0) || overflow || digits > body_size) {
    return InvalidArgError("inference header size should be in range (0, " +
                           std::to_string(body_size) + "), got: " + text);
  }
  *out = static_cast<size_t>(digits);
  return Status::Ok();
}

namespace infer_json {

Status CheckCount(size_t count, const char* what) {
  if (count > kMaxRequestTensors) {
    return InvalidArgError("the request has " + std::to_string(count) + " " + what +
                           ", more than the " + std::to_string(kMaxRequestTensors) +
                           " this server accepts in one request");
  }
  return Status::Ok();
}

Status CheckOneSource(bool has_data, bool has_binary, bool has_shm) {
  if (int(has_data) + int(has_binary) + int(has_shm) == 1) return Status::Ok();
  std::string message =
      "Input must set only one of the following fields: 'data', 'binary_data_size' in "
      "'parameters', 'shared_memory_region' in 'parameters'. But";
  if (!(has_data || has_binary || has_shm)) {
    message += " no field is set";
  } else {
    message += " set";
    if (has_data) message += " 'data'";
    if (has_binary) message += " 'binary_data_size'";
    if (has_shm) message += " 'shared_memory_region'";
  }
  return InvalidArgError(message);
}

Status DimTooLarge(uint64_t dim, const std::string& input) {
  // Triton reads dims as uint64 and its core as int64; larger ones are refused
  // here rather than wrapping.
  return InvalidArgError("Unable to parse 'shape': dimension " + std::to_string(dim) +
                         " of input '" + input + "' is larger than the maximum of " +
                         std::to_string(std::numeric_limits<int64_t>::max()));
}

Status CheckBinarySize(uint64_t bytes, const std::string& input,
                       const InferBodyLayout& layout, size_t offset,
                       const std::string& model) {
  // Without Inference-Header-Content-Length the JSON is the whole body and no
  // binary data can follow it: Triton answers the size (its "must specify valid
  // 'Infer-Header-Content-Length'" is only reached for a zero header length, which
  // is a raw body here).
  const size_t left = layout.body_size - offset;
  if (bytes > left) {
    return InvalidArgError("unexpected size for input '" + input + "', expecting " +
                           std::to_string(bytes - left) +
                           " additional bytes for model '" + model + "'");
  }
  return Status::Ok();
}

Status ExtraBinaryData(const std::string& model) {
  return InvalidArgError("unexpected additional input data for model '" + model + "'");
}

Status ParameterInvalidType(const std::string& key) {
  return InvalidArgError(
      "parameter '" + key +
      "' has invalid type. It should be either 'int', 'bool', or 'string'.");
}

Status OutputShmAndBinary() {
  return InvalidArgError(
      "Output can't set both 'shared_memory_region' and 'binary_data'");
}

Status OutputShmAndClasses() {
  return InvalidArgError(
      "Output can't set both 'shared_memory_region' and 'classification'");
}

Status NotBoolBinaryData() {
  return InternalError(
      "Unable to set 'binary_data': attempt to access JSON non-boolean as boolean");
}

Status NotUnsignedClassification() {
  return InvalidArgError(
      "Unable to set 'classification': attempt to access JSON non-unsigned-integer as "
      "unsigned-integer");
}

Status NotRequestParameters() {
  return InternalError(
      "failed to get request params.: attempt to get members for non-object");
}

}  // namespace infer_json
}  // namespace tritonx
