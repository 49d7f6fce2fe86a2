#include "http_message.h"

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>

namespace tritonx::perf {
namespace {

void AppendJsonString(std::string* out, const char* data, size_t size) {
  out->push_back('"');
  for (size_t i = 0; i < size; ++i) {
    const char c = data[i];
    if (c == '"' || c == '\\') {
      out->push_back('\\');
      out->push_back(c);
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      snprintf(buf, sizeof(buf), "\\u%04x", static_cast<unsigned char>(c));
      out->append(buf);
    } else {
      out->push_back(c);
    }
  }
  out->push_back('"');
}

void AppendJsonString(std::string* out, const std::string& value) {
  AppendJsonString(out, value.data(), value.size());
}

// Whether bytes are well-formed UTF-8 (a JSON string must be); lead and
// continuation bytes only, which is what keeps a server's JSON parser happy.
bool IsUtf8(const unsigned char* p, size_t n) {
  size_t i = 0;
  while (i < n) {
    const unsigned char c = p[i];
    size_t extra;
    if (c < 0x80) {
      extra = 0;
    } else if ((c >> 5) == 0x6) {
      extra = 1;
    } else if ((c >> 4) == 0xe) {
      extra = 2;
    } else if ((c >> 3) == 0x1e) {
      extra = 3;
    } else {
      return false;
    }
    if (i + extra >= n && extra > 0) return false;
    for (size_t k = 1; k <= extra; ++k) {
      if ((p[i + k] & 0xc0) != 0x80) return false;
    }
    i += extra + 1;
  }
  return true;
}

std::string ShmParameters(const std::string& region, uint64_t offset, uint64_t size) {
  std::string json = "\"parameters\":{\"shared_memory_region\":";
  AppendJsonString(&json, region);
  json += ",\"shared_memory_offset\":" + std::to_string(offset) +
          ",\"shared_memory_byte_size\":" + std::to_string(size) + "}";
  return json;
}

float HalfToFloat(uint16_t h) {
  const uint32_t sign = (h & 0x8000u) << 16;
  uint32_t exponent = (h >> 10) & 0x1f;
  uint32_t mantissa = h & 0x3ffu;
  uint32_t bits;
  if (exponent == 0) {
    if (mantissa == 0) {
      bits = sign;
    } else {  // subnormal: normalize it
      exponent = 127 - 15 + 1;
      while ((mantissa & 0x400u) == 0) {
        mantissa <<= 1;
        --exponent;
      }
      bits = sign | (exponent << 23) | ((mantissa & 0x3ffu) << 13);
    }
  } else if (exponent == 0x1f) {
    bits = sign | 0x7f800000u | (mantissa << 13);
  } else {
    bits = sign | ((exponent + 127 - 15) << 23) | (mantissa << 13);
  }
  float f;
  memcpy(&f, &bits, sizeof(f));
  return f;
}

template <typename T>
T Load(const char* p) {
  T value;
  memcpy(&value, p, sizeof(T));
  return value;
}

bool AppendNumber(std::string* out, double value, const char* format,
                  std::string* error) {
  if (!std::isfinite(value)) {
    *error = "a NaN or infinite value cannot be sent as a JSON tensor";
    return false;
  }
  char buf[40];
  snprintf(buf, sizeof(buf), format, value);
  out->append(buf);
  return true;
}

// The JSON header of one request without its closing brace, and the binary tensor
// bytes that follow it.
bool BuildBody(const Target& target, const std::vector<InputData>& inputs,
               std::string* json, std::string* binary, std::string* error) {
  *json = "{\"inputs\":[";
  for (size_t i = 0; i < inputs.size(); ++i) {
    const InputData& in = inputs[i];
    if (i) *json += ",";
    *json += "{\"name\":";
    AppendJsonString(json, in.name);
    *json += ",\"datatype\":";
    AppendJsonString(json, in.datatype);
    *json += ",\"shape\":[";
    for (size_t d = 0; d < in.shape.size(); ++d) {
      if (d) *json += ",";
      *json += std::to_string(in.shape[d]);
    }
    *json += "],";
    if (!in.shm_region.empty()) {
      *json += ShmParameters(in.shm_region, in.shm_offset, in.shm_byte_size);
    } else if (target.json_inputs) {
      *json += "\"data\":";
      if (!AppendJsonTensorData(in, json, error)) {
        *error = "input '" + in.name + "': " + *error;
        return false;
      }
    } else {
      *json +=
          "\"parameters\":{\"binary_data_size\":" + std::to_string(in.data.size()) +
          "}";
      *binary += in.data;
    }
    *json += "}";
  }
  *json += "]";
  if (!target.outputs.empty()) {
    *json += ",\"outputs\":[";
    for (size_t i = 0; i < target.outputs.size(); ++i) {
      const OutputSpec& out = target.outputs[i];
      if (i) *json += ",";
      *json += "{\"name\":";
      AppendJsonString(json, out.name);
      *json += ",";
      if (!out.shm_region.empty()) {
        *json += ShmParameters(out.shm_region, out.shm_offset, out.shm_byte_size);
      } else {
        *json += target.json_outputs ? "\"parameters\":{\"binary_data\":false}"
                                     : "\"parameters\":{\"binary_data\":true}";
      }
      *json += "}";
    }
    *json += "]";
  }
  return true;
}

}  // namespace

bool AppendJsonTensorData(const InputData& in, std::string* out, std::string* error) {
  const std::string& dt = in.datatype;
  const char* p = in.data.data();
  const size_t n = in.data.size();
  out->push_back('[');
  if (dt == "BYTES") {
    size_t pos = 0;
    bool first = true;
    while (pos < n) {
      if (pos + 4 > n) {
        *error = "truncated BYTES element";
        return false;
      }
      const uint32_t len = Load<uint32_t>(p + pos);
      pos += 4;
      if (pos + len > n) {
        *error = "truncated BYTES element";
        return false;
      }
      if (!IsUtf8(reinterpret_cast<const unsigned char*>(p + pos), len)) {
        *error = "a BYTES element is not UTF-8 text, which JSON tensors need";
        return false;
      }
      if (!first) out->push_back(',');
      first = false;
      AppendJsonString(out, p + pos, len);
      pos += len;
    }
    out->push_back(']');
    return true;
  }
  size_t width = 0;
  if (dt == "BOOL" || dt == "INT8" || dt == "UINT8") {
    width = 1;
  } else if (dt == "INT16" || dt == "UINT16" || dt == "FP16" || dt == "BF16") {
    width = 2;
  } else if (dt == "INT32" || dt == "UINT32" || dt == "FP32") {
    width = 4;
  } else if (dt == "INT64" || dt == "UINT64" || dt == "FP64") {
    width = 8;
  } else {
    *error = "datatype " + dt + " has no JSON form";
    return false;
  }
  if (n % width != 0) {
    *error = "data size " + std::to_string(n) + " is not a multiple of " +
             std::to_string(width) + " bytes";
    return false;
  }
  for (size_t i = 0; i < n / width; ++i) {
    if (i) out->push_back(',');
    const char* e = p + i * width;
    if (dt == "BOOL") {
      out->append(*e ? "true" : "false");
    } else if (dt == "INT8") {
      out->append(std::to_string(Load<int8_t>(e)));
    } else if (dt == "UINT8") {
      out->append(std::to_string(Load<uint8_t>(e)));
    } else if (dt == "INT16") {
      out->append(std::to_string(Load<int16_t>(e)));
    } else if (dt == "UINT16") {
      out->append(std::to_string(Load<uint16_t>(e)));
    } else if (dt == "INT32") {
      out->append(std::to_string(Load<int32_t>(e)));
    } else if (dt == "UINT32") {
      out->append(std::to_string(Load<uint32_t>(e)));
    } else if (dt == "INT64") {
      out->append(std::to_string(Load<int64_t>(e)));
    } else if (dt == "UINT64") {
      out->append(std::to_string(Load<uint64_t>(e)));
    } else if (dt == "FP16") {
      if (!AppendNumber(out, HalfToFloat(Load<uint16_t>(e)), "%.9g", error))
        return false;
    } else if (dt == "BF16") {
      const uint32_t bits = static_cast<uint32_t>(Load<uint16_t>(e)) << 16;
      float f;
      memcpy(&f, &bits, sizeof(f));
      if (!AppendNumber(out, f, "%.9g", error)) return false;
    } else if (dt == "FP32") {
      if (!AppendNumber(out, Load<float>(e), "%.9g", error)) return false;
    } else {  // FP64
      if (!AppendNumber(out, Load<double>(e), "%.17g", error)) return false;
    }
  }
  out->push_back(']');
  return true;
}

HttpMessages::HttpMessages(const Target& target) : target_(target) {
  if (!target.endpoint.empty()) {
    path_ = "/" + target.endpoint.substr(target.endpoint.find_first_not_of('/'));
    for (const std::string& payload : target.payloads) {
      whole_.push_back(OpenAIRequest(payload));
    }
    if (whole_.empty()) error_ = "no request to send";
    return;
  }
  path_ = "/v2/models/" + target.model;
  if (!target.version.empty()) path_ += "/versions/" + target.version;
  path_ += "/infer";
  for (const RequestParameter& param : target.parameters) {
    if (!parameters_.empty()) parameters_ += ",";
    AppendJsonString(&parameters_, param.name);
    parameters_ += ":";
    switch (param.kind) {
      case RequestParameter::Kind::kInt:
        parameters_ += std::to_string(param.int_value);
        break;
      case RequestParameter::Kind::kBool:
        parameters_ += param.bool_value ? "true" : "false";
        break;
      case RequestParameter::Kind::kString:
        if (!IsUtf8(reinterpret_cast<const unsigned char*>(param.string_value.data()),
                    param.string_value.size())) {
          error_ = "request parameter '" + param.name + "' is not UTF-8 text";
          return;
        }
        AppendJsonString(&parameters_, param.string_value);
        break;
    }
  }
  const std::string close =
      parameters_.empty() ? "}" : ",\"parameters\":{" + parameters_ + "}}";
  for (const auto& step : target.steps) {
    std::string json, binary;
    if (!BuildBody(target, step, &json, &binary, &error_)) return;
    jsons_.push_back(std::move(json));
    binaries_.push_back(std::move(binary));
    whole_.push_back(Compose(jsons_.back() + close, binaries_.back()));
  }
}

std::string HttpMessages::WithSequence(size_t step, const SequenceParams& seq) const {
  const size_t index = step % jsons_.size();
  std::string json = jsons_[index] + ",\"parameters\":{";
  if (!parameters_.empty()) json += parameters_ + ",";
  json += "\"sequence_id\":" + std::to_string(seq.id) +
          ",\"sequence_start\":" + (seq.start ? "true" : "false") +
          ",\"sequence_end\":" + (seq.end ? "true" : "false") + "}}";
  return Compose(json, binaries_[index]);
}

std::string HttpMessages::OpenAIRequest(const std::string& payload) const {
  return Compose(payload, "");
}

std::string HttpMessages::Compose(const std::string& json,
                                  const std::string& binary) const {
  std::string message = "POST " + path_ + " HTTP/1.1\r\nHost: " + target_.url + "\r\n";
  if (target_.json_inputs || !target_.endpoint.empty()) {
    // Plain JSON: no binary tensor extension header.
    message += "Content-Type: application/json\r\n";
  } else {
    message +=
        "Content-Type: application/octet-stream\r\nInference-Header-Content-Length: " +
        std::to_string(json.size()) + "\r\n";
  }
  message += "Content-Length: " + std::to_string(json.size() + binary.size()) + "\r\n";
  for (const auto& [name, value] : target_.http_headers) {
    message += name + ": " + value + "\r\n";
  }
  message += "\r\n";
  message += json;
  message += binary;
  return message;
}

std::string HttpErrorText(const std::string& body) {
  const auto key = body.find("\"error\"");
  if (key != std::string::npos) {
    const auto open = body.find('"', body.find(':', key) + 1);
    const auto close = body.rfind('"');
    if (open != std::string::npos && close > open) {
      return body.substr(open + 1, close - open - 1);
    }
  }
  return body.substr(0, 300);
}

}  // namespace tritonx::perf
