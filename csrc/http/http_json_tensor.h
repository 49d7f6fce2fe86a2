// JSON <-> tensors and the request-JSON helpers shared by infer and generate, with
// Triton's checks and messages (see http_infer_codec.h). Internal to csrc/http;
// stateless functions, safe from any thread.
#pragma once

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <cstdint>
#include <string>

#include "core/data_type.h"
#include "core/http_messages.h"
#include "core/infer_json.h"
#include "core/infer_request.h"
#include "core/request_builder.h"
#include "core/status.h"

namespace tritonx {
namespace httpfe {

// An input's JSON `data` as the request builder's description (its leaves, typed
// as RapidJSON reads them; strings point into the document).
void JsonDataToInput(const rapidjson::Value& data, InputDescription* input);

// The writer every response uses (NaN and infinities written as Triton does).
using JsonWriter =
    rapidjson::Writer<rapidjson::StringBuffer, rapidjson::UTF8<>, rapidjson::UTF8<>,
                      rapidjson::CrtAllocator, rapidjson::kWriteNanAndInfFlag>;

// The elements of `t`, flattened, as consecutive JSON values (no enclosing array).
// FP16/BF16 and other types without a JSON form: INVALID_ARG, Triton's message.
Status WriteTensorElements(const Tensor& t, JsonWriter* w);

// A request body parsed as JSON with the depth bound and the messages of the infer
// path (implemented in http_infer_codec.cc).
Status ParseRequestJson(const char* data, size_t size, rapidjson::Document* doc);

// A custom request parameter (DecodeCustomParameter over RapidJSON).
Status ConvertCustomParameter(const std::string& key, const rapidjson::Value& value,
                              ParameterValue* out);

// The JSON reader infer_json.h walks, over a RapidJSON document (strings were
// checked for UTF-8 when it was parsed, so Text never fails).
struct RapidJsonReader {
  using Value = const rapidjson::Value*;
  static JsonKind Kind(Value v) {
    switch (v->GetType()) {
      case rapidjson::kNullType:
        return JsonKind::kNull;
      case rapidjson::kFalseType:
      case rapidjson::kTrueType:
        return JsonKind::kBool;
      case rapidjson::kStringType:
        return JsonKind::kString;
      case rapidjson::kArrayType:
        return JsonKind::kArray;
      case rapidjson::kObjectType:
        return JsonKind::kObject;
      default:
        break;
    }
    if (v->IsInt64()) return JsonKind::kInt;
    if (v->IsUint64()) return JsonKind::kUint;
    return JsonKind::kDouble;
  }
  static bool Bool(Value v) { return v->GetBool(); }
  static int64_t Int(Value v) { return v->GetInt64(); }
  static uint64_t Uint(Value v) { return v->GetUint64(); }
  static double Double(Value v) { return v->GetDouble(); }
  static Status Text(Value v, std::string_view* out) {
    *out = std::string_view(v->GetString(), v->GetStringLength());
    return Status::Ok();
  }
  static bool Find(Value obj, const char* key, Value* out) {
    auto it = obj->FindMember(key);
    if (it == obj->MemberEnd()) return false;
    *out = &it->value;
    return true;
  }
  static size_t Size(Value v) { return v->IsArray() ? v->Size() : v->MemberCount(); }
  template <class F>
  static Status Elements(Value array, F f) {
    for (const rapidjson::Value& item : array->GetArray()) {
      Status status = f(&item);
      if (!status.ok()) return status;
    }
    return Status::Ok();
  }
  template <class F>
  static Status Members(Value obj, F f) {
    for (const auto& m : obj->GetObject()) {
      Status status =
          f(std::string_view(m.name.GetString(), m.name.GetStringLength()), &m.value);
      if (!status.ok()) return status;
    }
    return Status::Ok();
  }
  static Status DataLeaves(Value data, InputDescription* input) {
    JsonDataToInput(*data, input);
    return Status::Ok();
  }
};

}  // namespace httpfe
}  // namespace tritonx
