#include "generate_json.h"

namespace tritonx {
namespace generate_json {

// Triton pads a generate value (a scalar or a 1-D array) to the input's shape:
// working from the innermost dim, fixed dims divide the count; then the innermost
// variable dim takes what is left and every other variable dim (the batch dim among
// them) is 1, so a batching model sees one request of `count` elements, never a
// batch of `count`.
bool ShapeFor(const TensorSpec& input, bool batched, int64_t count, Shape* shape) {
  shape->clear();
  if (batched) shape->push_back(-1);
  shape->insert(shape->end(), input.dims.begin(), input.dims.end());
  int64_t left = count;
  for (auto d = shape->rbegin(); d != shape->rend(); ++d) {
    if (*d < 0) continue;
    if (*d == 0) {  // no elements at all; Triton divides by it
      if (left != 0) return false;
      left = 1;
      continue;
    }
    if (left % *d != 0) return false;
    left /= *d;
  }
  for (auto d = shape->rbegin(); d != shape->rend(); ++d) {
    if (*d >= 0) continue;
    *d = left;
    left = 1;
  }
  return left == 1;
}

Status NotAnObject() { return InternalError("attempt to get members for non-object"); }

Status ParametersNotAnObject() {
  return InternalError(
      "Expected JSON object for keyword: 'parameters': attempt to access JSON "
      "non-object as object");
}

Status BadParameter(const Status& cause) {
  return InvalidArgError("Converting keyword: 'parameters': " + cause.message());
}

Status NoShapeFits(const std::string& input) {
  return InvalidArgError("The schema can not convert input '" + input +
                         "' to tensor with proper shape");
}

Status Reworded(const TensorSpec& input, const Status& status) {
  static const char kBytesData[] =
      "Unable to parse 'data': attempt to access JSON non-string as string";
  if (input.dtype == DataType::kBytes && status.message() == kBytesData) {
    return InternalError(
        "Unable to parse JSON bytes array: attempt to access JSON non-string as "
        "string");
  }
  return status;
}

}  // namespace generate_json
}  // namespace tritonx
