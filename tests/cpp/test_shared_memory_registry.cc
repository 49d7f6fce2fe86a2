// SharedMemoryRegistry: registration checks, range resolution, and a mapping that
// outlives its unregistration (and the unlinking of its object) while in use.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

#include "core/cuda_runtime.h"
#include "core/shared_memory_registry.h"

namespace tritonx {
namespace {

// A POSIX shm object of `size` bytes filled with 0, 1, 2, ...; unlinked at the end.
class ShmObject {
 public:
  explicit ShmObject(size_t size)
      : key_("/tritonx_cpp_test_" + std::to_string(getpid()) + "_" +
             std::to_string(counter_++)) {
    const int fd = shm_open(key_.c_str(), O_CREAT | O_RDWR | O_EXCL, 0600);
    EXPECT_NE(fd, -1);
    EXPECT_EQ(ftruncate(fd, static_cast<off_t>(size)), 0);
    std::vector<char> bytes(size);
    for (size_t i = 0; i < size; ++i) bytes[i] = static_cast<char>(i);
    EXPECT_EQ(write(fd, bytes.data(), size), static_cast<ssize_t>(size));
    close(fd);
  }
  ~ShmObject() { Unlink(); }
  void Unlink() {
    if (!unlinked_) shm_unlink(key_.c_str());
    unlinked_ = true;
  }
  const std::string& key() const { return key_; }

 private:
  static inline int counter_ = 0;
  std::string key_;
  bool unlinked_ = false;
};

TEST(SharedMemoryRegistry, RegisterChecksAndStatus) {
  SharedMemoryRegistry registry;
  ShmObject object(8192);
  EXPECT_TRUE(registry.Register("a", object.key(), 4100, 64).ok());
  Status dup = registry.Register("a", object.key(), 0, 8);
  EXPECT_EQ(dup.code(), StatusCode::kAlreadyExists);
  EXPECT_EQ(dup.message(), "shared memory region 'a' already in manager");
  Status missing = registry.Register("b", "/tritonx_no_such_object", 0, 8);
  EXPECT_EQ(missing.code(), StatusCode::kInternal);
  EXPECT_EQ(missing.message(),
            "Unable to open shared memory region: '/tritonx_no_such_object'");
  Status oob = registry.Register("b", object.key(), 8000, 200);
  EXPECT_EQ(oob.code(), StatusCode::kInvalidArg);
  EXPECT_EQ(oob.message(), "failed to register shared memory region 'b': invalid args");
  Status empty = registry.Register("b", object.key(), 0, 0);
  EXPECT_EQ(empty.code(), StatusCode::kInvalidArg);
  EXPECT_EQ(empty.message(),
            "failed to register shared memory region 'b': unable to process address "
            "spaceInvalid argument");
  std::vector<ShmRegionStatus> rows;
  ASSERT_TRUE(registry.GetStatus("", &rows).ok());
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0].offset, 4100u);
  EXPECT_EQ(rows[0].byte_size, 64u);
  EXPECT_EQ(registry.GetStatus("zz", &rows).code(), StatusCode::kNotFound);
}

TEST(SharedMemoryRegistry, ResolvesRangesAtUnalignedOffsets) {
  SharedMemoryRegistry registry;
  ShmObject object(8192);
  ASSERT_TRUE(registry.Register("a", object.key(), 4100, 64).ok());
  ShmSpan span;
  ASSERT_TRUE(registry.Resolve("a", 10, 4, &span).ok());
  EXPECT_EQ(span.byte_size, 4u);
  EXPECT_EQ(static_cast<unsigned char>(span.data[0]), (4100 + 10) % 256);
  EXPECT_EQ(registry.Resolve("a", 64, 1, &span).message(),
            "Invalid offset for shared memory region: 'a'");
  EXPECT_EQ(registry.Resolve("a", 60, 8, &span).message(),
            "Invalid offset + byte size for shared memory region: 'a'");
  EXPECT_EQ(registry.Resolve("a", 0, 0, &span).code(), StatusCode::kInvalidArg);
  EXPECT_EQ(registry.Resolve("b", 0, 1, &span).code(), StatusCode::kNotFound);
}

// Triton 2.51's end check (offset + size - 1 against the last byte) takes a zero
// size inside the region and wraps, refusing it, at its start.
TEST(SharedMemoryRegistry, ZeroSizeIsTakenInsideTheRegionButNotAtItsStart) {
  SharedMemoryRegistry registry;
  ShmObject object(4096);
  ASSERT_TRUE(registry.Register("a", object.key(), 0, 64).ok());
  ShmSpan span;
  ASSERT_TRUE(registry.Resolve("a", 16, 0, &span).ok());
  EXPECT_EQ(span.byte_size, 0u);
  ASSERT_TRUE(registry.Resolve("a", 63, 0, &span).ok());
  EXPECT_EQ(registry.Resolve("a", 0, 0, &span).message(),
            "Invalid offset + byte size for shared memory region: 'a'");
  EXPECT_EQ(registry.Resolve("a", 64, 0, &span).message(),
            "Invalid offset for shared memory region: 'a'");
  EXPECT_EQ(registry.Resolve("a", 16, UINT64_MAX, &span).message(),
            "Invalid offset + byte size for shared memory region: 'a'");
}

TEST(SharedMemoryRegistry, MappingOutlivesUnregisterWhileInUse) {
  SharedMemoryRegistry registry;
  ShmObject object(4096);
  ASSERT_TRUE(registry.Register("a", object.key(), 0, 4096).ok());
  ShmSpan span;
  ASSERT_TRUE(registry.Resolve("a", 100, 16, &span).ok());
  ASSERT_TRUE(registry.Unregister("a").ok());
  registry.UnregisterAll();
  object.Unlink();
  EXPECT_FALSE(registry.Contains("a"));
  // Still mapped: the span holds it.
  EXPECT_EQ(static_cast<unsigned char>(span.data[15]), 115);
  span.data[0] = 'x';
  EXPECT_EQ(span.data[0], 'x');
  // Outputs: too small a target is refused with Triton's message.
  Tensor tensor;
  tensor.name = "OUT";
  std::string bytes(32, 'y');
  tensor.data = bytes.data();
  tensor.byte_size = bytes.size();
  ShmOutput target{"OUT", "a", 100, span};
  Status small = WriteShmOutput(target, tensor);
  EXPECT_EQ(small.code(), StatusCode::kInternal);
  EXPECT_EQ(small.message(),
            "shared memory size specified with the request for output 'OUT' (16 "
            "bytes) should be at least 32 bytes to hold the results");
  tensor.byte_size = 16;
  EXPECT_TRUE(WriteShmOutput(target, tensor).ok());
  EXPECT_EQ(std::memcmp(span.data, bytes.data(), 16), 0);
}

// System and CUDA regions share names but not status or unregistration; without a
// usable GPU a CUDA registration is refused as by a CPU-only Triton.
TEST(SharedMemoryRegistry, CudaKindIsSeparateAndRefusedWithoutAGpu) {
  SharedMemoryRegistry registry;
  ShmObject object(64);
  ASSERT_TRUE(registry.Register("sys", object.key(), 0, 64).ok());
  std::vector<ShmRegionStatus> rows;
  ASSERT_TRUE(registry.GetStatus("", &rows, ShmKind::kCuda).ok());
  EXPECT_TRUE(rows.empty());
  Status other = registry.GetStatus("sys", &rows, ShmKind::kCuda);
  EXPECT_EQ(other.code(), StatusCode::kNotFound);
  EXPECT_EQ(other.message(),
            "The region named 'sys' is registered as system shared memory, not CUDA "
            "shared memory");
  EXPECT_EQ(registry.GetStatus("zz", &rows, ShmKind::kCuda).message(),
            "Unable to find cuda shared memory region: 'zz'");
  registry.Unregister("sys", ShmKind::kCuda);  // not a CUDA region: kept
  registry.UnregisterAll(ShmKind::kCuda);
  EXPECT_TRUE(registry.Contains("sys"));
  if (CudaUsable()) GTEST_SKIP() << "a GPU is present (tests/gpu covers CUDA regions)";
  Status refused = registry.RegisterCuda("c", std::string(64, '\0'), 0, 64);
  EXPECT_EQ(refused.code(), StatusCode::kInvalidArg);
  EXPECT_EQ(refused.message(),
            "failed to register CUDA shared memory region: 'c', GPUs not supported");
}

}  // namespace
}  // namespace tritonx
