#include "http_infer_codec.h"

#include <rapidjson/document.h>
#include <rapidjson/encodedstream.h>
#include <rapidjson/error/en.h>
#include <rapidjson/memorystream.h>
#include <rapidjson/reader.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "core/infer_json.h"
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
  rapidjson::MemoryStream memory(data, size);
  // As Triton's reader: a UTF-8 byte order mark is skipped (offsets count it).
  rapidjson::EncodedInputStream<rapidjson::UTF8<>, rapidjson::MemoryStream> stream(
      memory);
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
  if (handler.too_deep) return JsonTooDeep();
  rapidjson::ParseErrorCode code = reader.GetParseErrorCode();
  // A lone surrogate cannot reach the core (it is not UTF-8): a client error.
  if (code == rapidjson::kParseErrorStringUnicodeSurrogateInvalid) {
    return InvalidSurrogate();
  }
  if (code == rapidjson::kParseErrorStringInvalidEncoding) return JsonInvalidEncoding();
  // The iterative parser calls a document that starts with ']' or '}' empty;
  // Triton's recursive one calls that an invalid value.
  const size_t at = reader.GetErrorOffset();
  if (code == rapidjson::kParseErrorDocumentEmpty && at < size &&
      (data[at] == ']' || data[at] == '}')) {
    code = rapidjson::kParseErrorValueInvalid;
  }
  return JsonParseFailure(std::string(rapidjson::GetParseError_En(code)) + " at " +
                          std::to_string(at));
}

// The native engine's sink: each decoded piece goes straight to the builder, so
// a later decoding error never hides an earlier input's.
class BuilderSink final : public InferJsonSink {
 public:
  BuilderSink(RequestBuilder* builder, InferenceRequest* request,
              OutputEncoding* encoding, const char* body,
              const std::shared_ptr<const void>& owner)
      : builder_(builder),
        request_(request),
        encoding_(encoding),
        body_(body),
        owner_(owner) {}
  void SetId(std::string_view id) override { request_->id = std::string(id); }
  void SetDefaultBinary(bool binary) override { encoding_->default_binary = binary; }
  Status AddInput(InputDescription input, size_t binary_offset) override {
    if (input.source == InputDescription::Source::kBytes) {
      input.data = body_ + binary_offset;
      input.owner = owner_;
    }
    return builder_->AddInput(std::move(input));
  }
  Status AddOutput(OutputDescription output, int binary) override {
    // A listed output is binary only when its own `binary_data` says so: Triton's
    // request-wide `binary_data_output` applies to the outputs not listed.
    encoding_->explicit_binary.emplace_back(output.name, binary == 1);
    return builder_->AddOutput(std::move(output), &encoding_->shm_outputs);
  }

 private:
  RequestBuilder* builder_;
  InferenceRequest* request_;
  OutputEncoding* encoding_;
  const char* body_;
  const std::shared_ptr<const void>& owner_;
};

}  // namespace

Status ParseRequestJson(const char* data, size_t size, rapidjson::Document* doc) {
  return ParseJson(data, size, doc);
}

Status ConvertCustomParameter(const std::string& key, const Value& value,
                              ParameterValue* out) {
  return DecodeCustomParameter<RapidJsonReader>(key, &value, out);
}

Status ParseInferBody(const char* body, size_t body_size,
                      const std::shared_ptr<const void>& owner, bool has_hlen,
                      size_t hlen, const std::string& model, InferenceRequest* out,
                      OutputEncoding* encoding, const SharedMemoryRegistry* shm) {
  RequestBuilder builder(out, WireProtocol::kHttp, model, shm);
  rapidjson::Document doc;
  Status status = ParseJson(body, has_hlen ? hlen : body_size, &doc);
  if (!status.ok()) return status;
  BuilderSink sink(&builder, out, encoding, body, owner);
  Parameters params;
  status = DecodeInferJson<RapidJsonReader>(&doc, {has_hlen, hlen, body_size}, model,
                                            &sink, &params);
  if (!status.ok()) return status;
  return builder.SetParameters(std::move(params));
}

}  // namespace httpfe
}  // namespace tritonx
