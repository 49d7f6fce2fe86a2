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

// A custom request parameter as Triton types it: string, int64, other numbers as
// double, bool; anything else is INVALID_ARG ("parameter 'k' has invalid type...").
Status ConvertCustomParameter(const std::string& key, const rapidjson::Value& value,
                              ParameterValue* out);

}  // namespace httpfe
}  // namespace tritonx
