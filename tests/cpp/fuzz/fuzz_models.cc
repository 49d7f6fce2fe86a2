#include "fuzz_models.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

namespace tritonx::fuzz {
namespace {

TensorSpec Input(const char* name, DataType dtype, Shape dims) {
  TensorSpec spec;
  spec.name = name;
  spec.dtype = dtype;
  spec.dims = std::move(dims);
  return spec;
}

ModelSpec MakeBatching() {
  ModelSpec spec;
  spec.name = "batching";
  spec.max_batch_size = 8;
  spec.inputs.push_back(Input("INPUT0", DataType::kFp32, {-1}));
  spec.inputs.push_back(Input("INPUT1", DataType::kBytes, {2}));
  TensorSpec ragged = Input("RAGGED", DataType::kInt64, {-1});
  ragged.optional = true;
  ragged.allow_ragged_batch = true;
  spec.inputs.push_back(ragged);
  TensorSpec reshaped = Input("RESHAPED", DataType::kUint8, {4});
  reshaped.optional = true;
  reshaped.has_reshape = true;
  reshaped.reshape = {2, 2};
  spec.inputs.push_back(reshaped);
  TensorSpec labelled = Input("OUTPUT0", DataType::kFp32, {-1});
  labelled.labels = {"zero", "one", "two"};
  spec.outputs.push_back(labelled);
  spec.outputs.push_back(Input("OUTPUT1", DataType::kBytes, {2}));
  return spec;
}

ModelSpec MakePlain() {
  ModelSpec spec;
  spec.name = "plain";
  spec.inputs.push_back(Input("FLAGS", DataType::kBool, {2, -1}));
  spec.inputs.push_back(Input("HALF", DataType::kFp16, {3}));
  spec.outputs.push_back(Input("OUT", DataType::kFp16, {-1}));
  return spec;
}

// One input, so that a raw body (no JSON) can be deduced for it.
ModelSpec MakeSingle(DataType dtype, int32_t max_batch_size, Shape dims) {
  ModelSpec spec;
  spec.name = "single";
  spec.max_batch_size = max_batch_size;
  spec.inputs.push_back(Input("RAW", dtype, dims));
  spec.outputs.push_back(Input("OUT", dtype, dims));
  return spec;
}

// The region "r": a POSIX shared memory object of 256 bytes, removed at exit.
class FuzzRegion {
 public:
  FuzzRegion() : key_("/tritonx_fuzz_" + std::to_string(getpid())) {
    int fd = shm_open(key_.c_str(), O_CREAT | O_RDWR, 0600);
    if (fd < 0 || ftruncate(fd, 256) != 0) {
      std::perror("fuzz region");
      std::abort();
    }
    close(fd);
    registry_.set_allowed(true);
    if (!registry_.Register("r", key_, 0, 256).ok()) std::abort();
  }
  ~FuzzRegion() {
    registry_.UnregisterAll();
    shm_unlink(key_.c_str());
  }
  const SharedMemoryRegistry& registry() const { return registry_; }

 private:
  std::string key_;
  SharedMemoryRegistry registry_;
};

}  // namespace

const ModelSpec& SpecFor(uint8_t selector) {
  static const ModelSpec specs[] = {MakeBatching(), MakePlain(),
                                    MakeSingle(DataType::kFp32, 4, {-1}),
                                    MakeSingle(DataType::kBytes, 0, {1})};
  return specs[selector & 3];
}

void Trace(const char* stage, const Status& status) {
  static const bool enabled = std::getenv("TRITONX_FUZZ_TRACE") != nullptr;
  if (enabled) {
    std::fprintf(stderr, "%s: %s\n", stage,
                 status.ok() ? "OK" : status.message().c_str());
  }
}

const SharedMemoryRegistry& Registry() {
  static const FuzzRegion region;
  return region.registry();
}

}  // namespace tritonx::fuzz
