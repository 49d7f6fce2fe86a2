#include "http_infer_codec.h"

#include <rapidjson/document.h>
#include <rapidjson/error/en.h>
#include <rapidjson/reader.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>

#include "core/request_builder.h"
#include "http_json_tensor.h"

namespace tritonx {
namespace httpfe {
namespace {

using rapidjson::Value;

// Python's json module gives up near this depth (RecursionError); Triton's
// rapidjson parses recursively too. Deeper documents are parse errors.
constexpr int kMaxDepth = 900;
constexpr unsigned kParseFlags = rapidjson::kParseIterativeFlag |
                                 rapidjson::kParseValidateEncodingFlag |
                                 rapidjson::kParseNanAndInfFlag;

// Builds the DOM while counting nesting, so a hostile document fails the parse
// instead of recursing in whatever walks it later.
struct DepthLimitedHandler {
  rapidjson::Document& doc;
  int depth = 0;
  bool too_deep = false;
  bool Null() { return doc.Null(); }
  bool Bool(bool b) { return doc.Bool(b); }
  bool Int(int i) { return doc.Int(i); }
  bool Uint(unsigned u) { return doc.Uint(u); }
  bool Int64(int64_t i) { return doc.Int64(i); }
  bool Uint64(uint64_t u) { return doc.Uint64(u); }
  bool Double(double d) { return doc.Double(d); }
  bool RawNumber(const char* s, rapidjson::SizeType n, bool copy) {
    return doc.RawNumber(s, n, copy);
  }
  bool String(const char* s, rapidjson::SizeType n, bool copy) {
    return doc.String(s, n, copy);
  }
  bool Key(const char* s, rapidjson::SizeType n, bool copy) {
    return doc.Key(s, n, copy);
  }
  bool Enter() {
    if (++depth > kMaxDepth) {
      too_deep = true;
      return false;
    }
    return true;
  }
  bool StartObject() { return Enter() && doc.StartObject(); }
  bool EndObject(rapidjson::SizeType n) {
    --depth;
    return doc.EndObject(n);
  }
  bool StartArray() { return Enter() && doc.StartArray(); }
  bool EndArray(rapidjson::SizeType n) {
    --depth;
    return doc.EndArray(n);
  }
};

Status Internal(std::string message) {
  return Status(StatusCode::kInternal, std::move(message));
}
Status Invalid(std::string message) {
  return Status(StatusCode::kInvalidArg, std::move(message));
}

Status Missing(const std::string& member) {
  return Internal("Unable to parse '" + member +
                  "': attempt to access non-existing object member '" + member + "'");
}
Status WrongType(const std::string& member, const std::string& what) {
  return Internal("Unable to parse '" + member + "': attempt to access JSON " + what);
}
Status Unsigned(const std::string& member) {
  return Invalid("Unable to parse '" + member +
                 "': attempt to access JSON non-unsigned-integer as unsigned-integer");
}

// True when a string of `v` holds a UTF-16 surrogate encoded as UTF-8 (ED A0..BF):
// rapidjson turns a lone low-surrogate escape (\udc00..\udfff) into one, which
// is not UTF-8 and which the Python frontend refuses.
bool HasEncodedSurrogate(const Value& v) {
  auto bad = [](const char* s, size_t n) {
    for (size_t i = 0; i + 1 < n; ++i) {
      if (static_cast<unsigned char>(s[i]) == 0xED &&
          static_cast<unsigned char>(s[i + 1]) >= 0xA0) {
        return true;
      }
    }
    return false;
  };
  if (v.IsString()) return bad(v.GetString(), v.GetStringLength());
  if (v.IsArray()) {
    for (const Value& item : v.GetArray()) {
      if (HasEncodedSurrogate(item)) return true;
    }
  } else if (v.IsObject()) {
    for (const auto& m : v.GetObject()) {
      if (bad(m.name.GetString(), m.name.GetStringLength()) ||
          HasEncodedSurrogate(m.value)) {
        return true;
      }
    }
  }
  return false;
}

bool MentionsLowSurrogate(const char* data, size_t size) {
  // "\ud" or "\uD" followed by c..f: only then can a lone low surrogate be there.
  for (size_t i = 0; i + 3 < size; ++i) {
    if (data[i] == '\\' && data[i + 1] == 'u' && (data[i + 2] | 0x20) == 'd') {
      const char c = static_cast<char>(data[i + 3] | 0x20);
      if (c >= 'c' && c <= 'f') return true;
    }
  }
  return false;
}

Status ParseJson(const char* data, size_t size, rapidjson::Document* doc) {
  rapidjson::MemoryStream stream(data, size);
  rapidjson::GenericReader<rapidjson::UTF8<>, rapidjson::UTF8<>> reader;
  DepthLimitedHandler handler{*doc};
  auto generator = [&](rapidjson::Document& d) {
    (void)d;
    return !reader.Parse<kParseFlags>(stream, handler).IsError();
  };
  doc->Populate(generator);
  if (!reader.HasParseError()) {
    if (MentionsLowSurrogate(data, size) && HasEncodedSurrogate(*doc)) {
      return InvalidSurrogate();
    }
    return Status::Ok();
  }
  if (handler.too_deep) {
    return Internal(
        "failed to parse the request JSON buffer: the document is nested too deeply.");
  }
  const rapidjson::ParseErrorCode code = reader.GetParseErrorCode();
  std::string message = std::string("failed to parse the request JSON buffer: ") +
                        rapidjson::GetParseError_En(code);
  // A lone surrogate cannot reach the core (it is not UTF-8): a client error.
  if (code == rapidjson::kParseErrorStringUnicodeSurrogateInvalid)
    return Invalid(message);
  if (code == rapidjson::kParseErrorStringInvalidEncoding) return Internal(message);
  return Internal(message + " at " + std::to_string(reader.GetErrorOffset()));
}

// `obj[key]`, with JSON null treated as absent (the Python frontend's dict.get).
const Value* Member(const Value& obj, const char* key) {
  auto it = obj.FindMember(key);
  if (it == obj.MemberEnd() || it->value.IsNull()) return nullptr;
  return &it->value;
}

std::string Str(const Value& v) {
  return std::string(v.GetString(), v.GetStringLength());
}

Status CheckCount(size_t count, const char* what) {
  if (count > kMaxTensors) {
    return Invalid("the request has " + std::to_string(count) + " " + what +
                   ", more than the " + std::to_string(kMaxTensors) +
                   " this server accepts in one request");
  }
  return Status::Ok();
}

// One request parameter, typed the way Triton's HTTP frontend reads it.
Status ConvertParameter(const std::string& key, const Value& value,
                        ParameterValue* out) {
  if (key == "priority" || key == "timeout") {
    if (!value.IsUint64()) return Unsigned(key);
    *out = value.GetUint64();
    return Status::Ok();
  }
  if (key == "sequence_id") {
    if (value.IsUint64()) {
      *out = value.GetUint64();
    } else if (value.IsString()) {
      *out = Str(value);
    } else {
      return Invalid(
          "Unable to parse 'sequence_id': attempt to access JSON non-string as string");
    }
    return Status::Ok();
  }
  if (key == "sequence_start" || key == "sequence_end") {
    if (!value.IsBool()) {
      return Invalid("Unable to parse '" + key +
                     "': attempt to access JSON non-boolean as boolean");
    }
    *out = value.GetBool();
    return Status::Ok();
  }
  return ConvertCustomParameter(key, value, out);
}

}  // namespace

Status ParseRequestJson(const char* data, size_t size, rapidjson::Document* doc) {
  return ParseJson(data, size, doc);
}

Status ConvertCustomParameter(const std::string& key, const Value& value,
                              ParameterValue* out) {
  if (value.IsString()) {
    *out = std::string(value.GetString(), value.GetStringLength());
  } else if (value.IsInt64()) {
    *out = value.GetInt64();
  } else if (value.IsNumber()) {
    // Integers beyond int64 are kept as doubles, as Triton does.
    *out = value.GetDouble();
  } else if (value.IsBool()) {
    *out = value.GetBool();
  } else {
    return Invalid(
        "parameter '" + key +
        "' has invalid type. It should be either 'int', 'bool', or 'string'.");
  }
  return Status::Ok();
}

namespace {

// --- inputs and outputs of the JSON header ---------------------------------------

// Triton's reading of `shared_memory_region`, `shared_memory_offset` (default 0)
// and `shared_memory_byte_size` (default 0, which no region range accepts).
Status ParseShmParameters(const Value& params, ShmReference* ref) {
  const Value& name = params["shared_memory_region"];
  if (!name.IsString()) {
    return WrongType("shared_memory_region", "non-string as string");
  }
  ref->region = Str(name);
  for (auto [key, out] :
       {std::pair<const char*, uint64_t*>{"shared_memory_offset", &ref->offset},
        {"shared_memory_byte_size", &ref->byte_size}}) {
    const Value* value = Member(params, key);
    if (value == nullptr) continue;
    if (!value->IsUint64()) {
      return WrongType(key, "non-unsigned-integer as unsigned-integer");
    }
    *out = value->GetUint64();
  }
  return Status::Ok();
}

Status ParseInput(const Value& item, const char* body, size_t body_size,
                  const std::shared_ptr<const void>& owner, bool has_hlen,
                  const std::string& model, size_t* offset, RequestBuilder* builder) {
  if (!item.IsObject()) return Missing("name");
  const Value* iparams = Member(item, "parameters");
  const bool params_obj = iparams != nullptr && iparams->IsObject();
  const bool has_data = item.HasMember("data");
  const bool has_binary = params_obj && iparams->HasMember("binary_data_size");
  const bool has_shm = params_obj && iparams->HasMember("shared_memory_region");
  if (int(has_data) + int(has_binary) + int(has_shm) != 1) {
    std::string message =
        "Input must set only one of the following fields: 'data', 'binary_data_size' "
        "in "
        "'parameters', 'shared_memory_region' in 'parameters'. But";
    if (!(has_data || has_binary || has_shm)) {
      message += " no field is set";
    } else {
      message += " set";
      if (has_data) message += " 'data'";
      if (has_binary) message += " 'binary_data_size'";
      if (has_shm) message += " 'shared_memory_region'";
    }
    return Invalid(message);
  }
  const Value* name = Member(item, "name");
  if (name == nullptr) return Missing("name");
  if (!name->IsString()) return WrongType("name", "non-string as string");
  const Value* datatype = Member(item, "datatype");
  if (datatype == nullptr) return Missing("datatype");
  if (!datatype->IsString()) return WrongType("datatype", "non-string as string");
  const Value* shape = Member(item, "shape");
  if (shape == nullptr) return Missing("shape");
  if (!shape->IsArray()) return WrongType("shape", "non-array as array");

  InputDescription input;
  input.name = Str(*name);
  input.datatype = std::string_view(datatype->GetString(), datatype->GetStringLength());
  input.shape.reserve(shape->Size());
  for (const Value& dim : shape->GetArray()) {
    if (dim.IsUint64()) {
      const uint64_t d = dim.GetUint64();
      if (d > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        return Invalid("Unable to parse 'shape': dimension " + std::to_string(d) +
                       " of input '" + input.name + "' is larger than the maximum of " +
                       std::to_string(std::numeric_limits<int64_t>::max()));
      }
      input.shape.push_back(static_cast<int64_t>(d));
    } else if (dim.IsDouble() && dim.GetDouble() >= 1.8446744073709552e19 &&
               std::floor(dim.GetDouble()) == dim.GetDouble()) {
      return Unsigned(
          "shape");  // an integer past uint64, which rapidjson reads as double
    } else {
      return WrongType("shape", "non-unsigned-integer as unsigned-integer");
    }
  }
  if (has_shm) {
    input.source = InputDescription::Source::kSharedMemory;
    Status status = ParseShmParameters(*iparams, &input.shm);
    if (!status.ok()) return status;
  } else if (has_binary) {
    const Value& size = (*iparams)["binary_data_size"];
    if (!size.IsUint64()) {
      return Internal(
          "Unable to parse 'binary_data_size': attempt to access JSON "
          "non-unsigned-integer as unsigned-integer");
    }
    const uint64_t bytes = size.GetUint64();
    if (bytes != 0 && !has_hlen) {
      return Invalid(
          "must specify valid 'Infer-Header-Content-Length' in request header and "
          "'binary_data_size' when passing inputs in binary data format");
    }
    if (bytes > body_size - *offset) {
      return Invalid("unexpected size for input '" + input.name + "', expecting " +
                     std::to_string(bytes - (body_size - *offset)) +
                     " additional bytes for model '" + model + "'");
    }
    input.data = body + *offset;
    input.byte_size = bytes;
    input.owner = owner;
    *offset += bytes;
  } else {
    JsonDataToInput(item["data"], &input);
  }
  return builder->AddInput(std::move(input));
}

Status ParseOutputs(const Value& outputs, RequestBuilder* builder,
                    OutputEncoding* encoding) {
  if (!outputs.IsArray()) return WrongType("outputs", "non-array as array");
  Status status = CheckCount(outputs.Size(), "outputs");
  if (!status.ok()) return status;
  for (const Value& item : outputs.GetArray()) {
    if (!item.IsObject()) return Missing("name");
    const Value* name = Member(item, "name");
    if (name == nullptr) return Missing("name");
    if (!name->IsString()) return WrongType("name", "non-string as string");
    OutputDescription output;
    output.name = Str(*name);
    const Value* oparams = Member(item, "parameters");
    if (oparams != nullptr && oparams->IsObject()) {
      if (oparams->HasMember("shared_memory_region")) {
        const Value* binary = Member(*oparams, "binary_data");
        if (binary != nullptr && binary->IsTrue()) {
          return Invalid(
              "Output can't set both 'shared_memory_region' and 'binary_data'");
        }
        output.to_shm = true;
        status = ParseShmParameters(*oparams, &output.shm);
        if (!status.ok()) return status;
      }
      const Value* classes = Member(*oparams, "classification");
      if (classes != nullptr) {
        // Triton reads it as a JSON unsigned integer; 0 asks for no classification.
        if (!classes->IsUint64()) {
          return Invalid(
              "Unable to set 'classification': attempt to access JSON "
              "non-unsigned-integer as unsigned-integer");
        }
        output.class_count =
            static_cast<uint32_t>(std::min<uint64_t>(classes->GetUint64(), UINT32_MAX));
      }
      const Value* flag = Member(*oparams, "binary_data");
      if (flag != nullptr) {
        if (!flag->IsBool()) return WrongType("binary_data", "non-boolean as boolean");
        encoding->explicit_binary.emplace_back(output.name, flag->GetBool());
      }
    }
    status = builder->AddOutput(std::move(output), &encoding->shm_outputs);
    if (!status.ok()) return status;
  }
  return Status::Ok();
}

}  // namespace

Status ParseHeaderLength(const char* value, size_t body_size, size_t* out) {
  std::string text(value);
  size_t b = text.find_first_not_of(" \t");
  size_t e = text.find_last_not_of(" \t");
  text = b == std::string::npos ? std::string() : text.substr(b, e - b + 1);
  size_t i = 0;
  bool negative = false;
  if (!text.empty() && (text[0] == '-' || text[0] == '+')) {
    negative = text[0] == '-';
    i = 1;
  }
  unsigned long long digits = 0;
  bool overflow = false;
  for (; i < text.size() && text[i] >= '0' && text[i] <= '9'; ++i) {
    if (digits > (std::numeric_limits<unsigned long long>::max() - 9) / 10)
      overflow = true;
    digits = digits * 10 + static_cast<unsigned>(text[i] - '0');
  }
  if ((negative && digits != 0) || overflow || digits > body_size) {
    return Invalid("inference header size should be in range (0, " +
                   std::to_string(body_size) + "), got: " + text);
  }
  *out = static_cast<size_t>(digits);
  return Status::Ok();
}

Status ParseInferBody(const char* body, size_t body_size,
                      const std::shared_ptr<const void>& owner, bool has_hlen,
                      size_t hlen, const std::string& model, InferenceRequest* out,
                      OutputEncoding* encoding, const SharedMemoryRegistry* shm) {
  RequestBuilder builder(out, WireProtocol::kHttp, model, shm);
  rapidjson::Document doc;
  Status status = ParseJson(body, has_hlen ? hlen : body_size, &doc);
  if (!status.ok()) return status;
  if (!doc.IsObject()) return Missing("inputs");
  if (const Value* id = Member(doc, "id")) {
    if (!id->IsString()) return WrongType("id", "non-string as string");
    out->id = Str(*id);
  }
  Parameters params;
  if (const Value* given = Member(doc, "parameters")) {
    if (!given->IsObject()) return Internal("failed to get request params.");
    for (const auto& m : given->GetObject()) {
      std::string key = Str(m.name);
      if (key == "binary_data_output") {
        if (!m.value.IsBool()) return WrongType(key, "non-boolean as boolean");
        encoding->default_binary = m.value.GetBool();
        continue;
      }
      ParameterValue value;
      status = ConvertParameter(key, m.value, &value);
      if (!status.ok()) return status;
      params.emplace_back(std::move(key), std::move(value));
    }
  }
  const Value* inputs = Member(doc, "inputs");
  if (inputs == nullptr) return Missing("inputs");
  if (!inputs->IsArray()) return WrongType("inputs", "non-array as array");
  status = CheckCount(inputs->Size(), "inputs");
  if (!status.ok()) return status;
  out->inputs.reserve(inputs->Size());
  size_t offset = has_hlen ? hlen : 0;
  for (const Value& item : inputs->GetArray()) {
    status =
        ParseInput(item, body, body_size, owner, has_hlen, model, &offset, &builder);
    if (!status.ok()) return status;
  }
  if (has_hlen && offset != body_size) {
    return Invalid("unexpected additional input data for model '" + model + "'");
  }
  if (const Value* outputs = Member(doc, "outputs")) {
    status = ParseOutputs(*outputs, &builder, encoding);
    if (!status.ok()) return status;
  }
  return builder.SetParameters(std::move(params));
}

}  // namespace httpfe
}  // namespace tritonx
