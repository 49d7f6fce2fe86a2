// Shared pieces of the fuzz targets (tests/cpp/fuzz): the model specs requests are
// checked against, a shared memory region they may name, and the echo a model
// would answer, so every target runs a request as far as a server would.
//
// Every function here is called from one fuzzing thread at a time (libFuzzer and
// replay_main.cc run inputs one after another).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>

#include "core/infer_request.h"
#include "core/model_spec.h"
#include "core/shared_memory_registry.h"
#include "core/status.h"

namespace tritonx::fuzz {

// The model a fuzz input is checked against, chosen by the low two bits of one of
// its bytes: 0 a batching model (FP32 [-1], BYTES [2], optional ragged INT64 [-1],
// optional UINT8 [4] reshaped to [2,2], two outputs, one with labels); 1 a
// non-batching one (BOOL [2,-1], FP16 [3]); 2 and 3 a single input, for raw bodies
// (FP32 [-1] batching up to 4; BYTES [1] not batching).
const ModelSpec& SpecFor(uint8_t selector);

// A registry with clients allowed and one 256-byte system region named "r" (made
// once per process; unlinked at exit).
const SharedMemoryRegistry& Registry();

// With TRITONX_FUZZ_TRACE set, prints how far an input got (`stage`: its last
// step) and that step's status, for checking that seeds reach the code they aim at.
void Trace(const char* stage, const Status& status);

// Runs what a server does with a request once its frontend built it: the model's
// checks, the response cache key, every BYTES input walked, then a response whose
// outputs echo the inputs (named after the spec's outputs) for `render` to encode.
// Never fails the input: errors are what the server would answer.
template <typename Render>
void RunAsServer(const ModelSpec& spec, InferenceRequest* request, Render&& render);

}  // namespace tritonx::fuzz

#include "fuzz_models_inl.h"
