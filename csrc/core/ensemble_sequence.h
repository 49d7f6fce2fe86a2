// The sequence an ensemble step runs in, as Triton's ensemble scheduler carries it.
//
// A step runs in the ensemble request's sequence (its correlation id and START/END
// flags) unless one of its inputs was made by an earlier step: every tensor a step
// produces is tagged with the step's sequence, or with the one the step's response
// names in its `sequence_id` / `sequence_start` / `sequence_end` parameters, and the
// steps reading it run in that sequence. The ensemble's response reports the
// sequence of its outputs in the same three parameters.
//
// Plain values and free functions: no state, thread safe.
#pragma once

#include <cstdint>
#include <string>

#include "infer_request.h"
#include "status.h"

namespace tritonx {

// InferenceRequest::flags' sequence bits (Triton's TRITONSERVER_REQUEST_FLAG_*).
constexpr uint32_t kSequenceFlagStart = 1u;
constexpr uint32_t kSequenceFlagEnd = 2u;

struct SequenceTag {
  uint64_t id = 0;
  std::string id_str;  // not empty: a string id, as InferenceRequest's
  uint32_t flags = 0;

  bool operator==(const SequenceTag& other) const {
    return id == other.id && id_str == other.id_str && flags == other.flags;
  }
  bool operator!=(const SequenceTag& other) const { return !(*this == other); }
};

// Reads a step response's sequence parameters into `tag`; `*found`: it named at
// least one. The flags start cleared whatever it names (Triton's rule: a response
// naming only sequence_id leaves both flags off), the id stays unless named. An
// INVALID_ARG error, in Triton's words, for a parameter of the wrong type.
Status ReadSequenceParameters(const Parameters& parameters, SequenceTag* tag,
                              bool* found);

// Sets sequence_id, sequence_start and sequence_end on `parameters`, replacing
// earlier values (several outputs each report theirs: the last one stands, as in
// the map a gRPC response has). sequence_id takes the type of the ensemble
// request's id (`string_id`): Triton reads the other type's field, 0 or "".
void ReportSequence(const SequenceTag& tag, bool string_id, Parameters* parameters);

}  // namespace tritonx
