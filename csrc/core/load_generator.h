// LoadGenerator: keeps a fixed number of requests in flight against a model from C++
// threads, for benchmarks that must measure the scheduler and backend rather than the
// clients (Python clients in the same process compete for the GIL and the CPU).
#pragma once

#include <cstdint>
#include <vector>

#include "model.h"
#include "tensor.h"

namespace tritonx {

struct LoadResult {
  uint64_t completed = 0;
  uint64_t failed = 0;
  double seconds = 0;
};

// Runs `concurrency` closed-loop clients for `seconds`; every request carries
// `inputs` (shared, not copied). Blocking.
LoadResult GenerateLoad(Model& model, const std::vector<Tensor>& inputs,
                        int concurrency, double seconds);

}  // namespace tritonx
