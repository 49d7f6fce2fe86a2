// CUDA pieces of the core on a real GPU: the arena hands out page-locked memory, the
// stream pool makes one live stream per instance on its device, and a batch staged
// in the arena goes host->device->host on an instance stream with one
// synchronisation. Every test skips (not passes) where CUDA is not usable.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <set>
#include <vector>

#include "core/cuda_runtime.h"
#include "core/stream_pool.h"
#include "core/tensor_arena.h"

namespace tritonx {
namespace {

#define SKIP_WITHOUT_CUDA() \
  if (!CudaUsable()) GTEST_SKIP() << "no usable CUDA device"

TEST(CudaRuntime, WithoutAGpuEverythingIsInert) {
  if (CudaUsable()) GTEST_SKIP() << "a GPU is usable";
  EXPECT_EQ(CudaDeviceCount(), 0);
  EXPECT_EQ(CudaHostAlloc(64), nullptr);
  EXPECT_EQ(CudaStreamCreate(0), nullptr);
  EXPECT_EQ(CudaDeviceAlloc(0, 64), nullptr);
  EXPECT_NE(CudaSetDevice(0), "");  // an error text, not a crash
  {
    StreamPool pool(3, 0);
    EXPECT_EQ(pool.size(), 3u);
    EXPECT_EQ(pool.Get(0), nullptr);
  }
  EXPECT_EQ(StreamPool::FreeStreams(0), 0u);  // null streams are not kept
  EXPECT_FALSE(TensorArena::Create(1 << 20, /*want_pinned=*/true)->pinned());
}

TEST(CudaRuntime, ArenaMemoryIsPinned) {
  SKIP_WITHOUT_CUDA();
  auto arena = TensorArena::Create(64u << 20, /*want_pinned=*/true);
  ASSERT_TRUE(arena->pinned());
  EXPECT_TRUE(arena->Stats().pinned);
  for (size_t bytes : {1u, 4096u, 3u << 20}) {
    ArenaBuffer buffer = arena->Allocate(bytes);
    ASSERT_TRUE(buffer);
    EXPECT_TRUE(CudaIsPinned(buffer->data())) << bytes;
  }
  // A pageable arena is what --pinned-memory-pool-byte-size=0 gives.
  auto pageable = TensorArena::Create(1 << 20, /*want_pinned=*/false);
  EXPECT_FALSE(CudaIsPinned(pageable->Allocate(4096)->data()));
}

TEST(CudaRuntime, StreamPoolGivesDistinctStreamsOnItsDevice) {
  SKIP_WITHOUT_CUDA();
  ASSERT_GT(CudaDeviceCount(), 0);
  StreamPool pool(4, 0);
  EXPECT_EQ(pool.device(), 0);
  std::set<void*> seen;
  for (size_t i = 0; i < pool.size(); ++i) {
    ASSERT_NE(pool.Get(i), nullptr) << i;
    seen.insert(pool.Get(i));
    EXPECT_EQ(CudaStreamSync(pool.Get(i)), "");
  }
  EXPECT_EQ(seen.size(), 4u);
  EXPECT_EQ(pool.Get(4), nullptr);
}

TEST(CudaRuntime, ReleasedStreamsAreReusedNotDestroyed) {
  SKIP_WITHOUT_CUDA();
  // A framework may still hold a released pool's streams (torch records events on
  // them when pinned blocks are freed): they must stay valid, so the next pool on
  // the device gets them back instead of new ones.
  std::set<void*> first;
  {
    StreamPool pool(3, 0);
    for (size_t i = 0; i < pool.size(); ++i) first.insert(pool.Get(i));
  }
  EXPECT_GE(StreamPool::FreeStreams(0), 3u);
  for (void* stream : first) EXPECT_EQ(CudaStreamSync(stream), "");
  StreamPool again(2, 0);
  for (size_t i = 0; i < again.size(); ++i) {
    EXPECT_TRUE(first.count(again.Get(i))) << i;
  }
}

TEST(CudaRuntime, ArenaBatchRoundTripsOnAnInstanceStream) {
  SKIP_WITHOUT_CUDA();
  auto arena = TensorArena::Create(64u << 20, /*want_pinned=*/true);
  StreamPool pool(2, 0);
  const size_t bytes = 8u << 20;
  ArenaBuffer in = arena->Allocate(bytes);
  ArenaBuffer out = arena->Allocate(bytes);
  for (size_t i = 0; i < bytes; ++i) in->data()[i] = static_cast<char>(i * 31 + 7);
  std::memset(out->data(), 0, bytes);
  void* dev = CudaDeviceAlloc(0, bytes);
  ASSERT_NE(dev, nullptr);
  void* stream = pool.Get(1);
  // Both copies queued, then the batch's single synchronisation.
  ASSERT_EQ(CudaCopyHostToDevice(dev, in->data(), bytes, stream), "");
  ASSERT_EQ(CudaCopyDeviceToHost(out->data(), dev, bytes, stream), "");
  ASSERT_EQ(CudaStreamSync(stream), "");
  EXPECT_EQ(std::memcmp(in->data(), out->data(), bytes), 0);
  CudaDeviceFree(dev);
}

TEST(CudaRuntime, SetDeviceAcceptsEveryDeviceAndRefusesOthers) {
  SKIP_WITHOUT_CUDA();
  for (int device = 0; device < CudaDeviceCount(); ++device) {
    EXPECT_EQ(CudaSetDevice(device), "") << device;
  }
  EXPECT_NE(CudaSetDevice(CudaDeviceCount()), "");
  EXPECT_EQ(CudaSetDevice(0), "");  // the thread stays usable after the refusal
}

}  // namespace
}  // namespace tritonx
