#include "ensemble_sequence.h"

#include <utility>
#include <variant>

namespace tritonx {
namespace {

void Set(Parameters* parameters, const char* name, ParameterValue value) {
  for (auto& [key, existing] : *parameters) {
    if (key == name) {
      existing = std::move(value);
      return;
    }
  }
  parameters->emplace_back(name, std::move(value));
}

}  // namespace

Status ReadSequenceParameters(const Parameters& parameters, SequenceTag* tag,
                              bool* found) {
  *found = false;
  tag->flags = 0;
  for (const auto& [name, value] : parameters) {
    if (name == "sequence_id") {
      // Integers arrive signed or unsigned depending on the backend's encoding.
      if (const auto* i = std::get_if<int64_t>(&value)) {
        tag->id = static_cast<uint64_t>(*i);
        tag->id_str.clear();
      } else if (const auto* u = std::get_if<uint64_t>(&value)) {
        tag->id = *u;
        tag->id_str.clear();
      } else if (const auto* s = std::get_if<std::string>(&value)) {
        tag->id = 0;
        tag->id_str = *s;
      } else {
        return Status(StatusCode::kInvalidArg,
                      "expected parameter 'sequence_id' to be "
                      "TRITONSERVER_PARAMETER_INT or TRITONSERVER_PARAMETER_STRING");
      }
      *found = true;
    } else if (name == "sequence_start" || name == "sequence_end") {
      const auto* set = std::get_if<bool>(&value);
      if (set == nullptr) {
        return Status(
            StatusCode::kInvalidArg,
            "expect parameter '" + name + "' to be TRITONSERVER_PARAMETER_BOOL");
      }
      if (*set) {
        tag->flags |= name == "sequence_start" ? kSequenceFlagStart : kSequenceFlagEnd;
      }
      *found = true;
    }
  }
  return Status::Ok();
}

void ReportSequence(const SequenceTag& tag, bool string_id, Parameters* parameters) {
  if (string_id) {
    Set(parameters, "sequence_id", tag.id_str);
  } else {
    Set(parameters, "sequence_id", static_cast<int64_t>(tag.id));
  }
  Set(parameters, "sequence_start", (tag.flags & kSequenceFlagStart) != 0);
  Set(parameters, "sequence_end", (tag.flags & kSequenceFlagEnd) != 0);
}

}  // namespace tritonx
