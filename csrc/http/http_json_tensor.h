// JSON `data` of one input -> its wire bytes, with Triton's checks and messages
// (see http_infer_codec.h). Internal to csrc/http; stateless, any thread.
#pragma once

#include <rapidjson/document.h>

#include <cstdint>
#include <string>

#include "core/data_type.h"
#include "core/status.h"

namespace tritonx {
namespace httpfe {

// `expected`: the element count of the input's shape (-1: it overflows).
Status JsonToWire(const std::string& name, DataType dtype, int64_t expected,
                  const rapidjson::Value& data, std::string* out);

}  // namespace httpfe
}  // namespace tritonx
