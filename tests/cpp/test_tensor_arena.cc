// TensorArena: alignment, size classes, reuse, cache limit, stats, threads.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

#include "core/tensor_arena.h"

namespace tritonx {
namespace {

std::shared_ptr<TensorArena> Pageable(size_t max_cached = 64u << 20) {
  return TensorArena::Create(max_cached, /*want_pinned=*/false);
}

TEST(TensorArena, BuffersAre64ByteAligned) {
  auto arena = Pageable();
  std::vector<ArenaBuffer> held;
  for (size_t bytes : {0, 1, 7, 63, 64, 65, 255, 256, 257, 1000, 4096, 1 << 20}) {
    ArenaBuffer buffer = arena->Allocate(bytes);
    ASSERT_TRUE(buffer) << bytes;
    EXPECT_EQ(reinterpret_cast<uintptr_t>(buffer->data()) % 64, 0u) << bytes;
    EXPECT_GE(buffer->capacity(), bytes);
    held.push_back(std::move(buffer));
  }
}

TEST(TensorArena, CapacityIsAPowerOfTwoSizeClass) {
  auto arena = Pageable();
  EXPECT_EQ(arena->Allocate(1)->capacity(), 256u);
  EXPECT_EQ(arena->Allocate(256)->capacity(), 256u);
  EXPECT_EQ(arena->Allocate(257)->capacity(), 512u);
  EXPECT_EQ(arena->Allocate(3000)->capacity(), 4096u);
}

TEST(TensorArena, ReleasedBufferIsReused) {
  auto arena = Pageable();
  char* first = nullptr;
  {
    ArenaBuffer buffer = arena->Allocate(1000);
    first = buffer->data();
  }
  ArenaStats stats = arena->Stats();
  EXPECT_EQ(stats.allocations, 1u);
  EXPECT_EQ(stats.reuses, 0u);
  EXPECT_EQ(stats.in_use_bytes, 0u);
  EXPECT_EQ(stats.reserved_bytes, 1024u);  // cached

  ArenaBuffer again = arena->Allocate(900);  // same size class
  EXPECT_EQ(again->data(), first);
  stats = arena->Stats();
  EXPECT_EQ(stats.allocations, 2u);
  EXPECT_EQ(stats.reuses, 1u);
  EXPECT_EQ(stats.reserved_bytes, 1024u);

  ArenaBuffer other = arena->Allocate(5000);  // a different class: fresh memory
  EXPECT_EQ(arena->Stats().reuses, 1u);
  EXPECT_EQ(arena->Stats().reserved_bytes, 1024u + 8192u);
}

TEST(TensorArena, StatsTrackInUseAndPeak) {
  auto arena = Pageable();
  {
    ArenaBuffer a = arena->Allocate(256);
    ArenaBuffer b = arena->Allocate(512);
    ArenaStats stats = arena->Stats();
    EXPECT_EQ(stats.in_use_bytes, 768u);
    EXPECT_EQ(stats.peak_in_use_bytes, 768u);
    EXPECT_FALSE(stats.pinned);
  }
  ArenaBuffer c = arena->Allocate(256);
  ArenaStats stats = arena->Stats();
  EXPECT_EQ(stats.in_use_bytes, 256u);
  EXPECT_EQ(stats.peak_in_use_bytes, 768u);
  EXPECT_EQ(stats.allocations, 3u);
  EXPECT_EQ(stats.reuses, 1u);
  EXPECT_FALSE(arena->pinned());
}

TEST(TensorArena, CacheLimitReturnsMemoryToTheSystem) {
  auto arena = Pageable(/*max_cached=*/1024);
  {
    ArenaBuffer a = arena->Allocate(1024);
    ArenaBuffer b = arena->Allocate(1024);
    EXPECT_EQ(arena->Stats().reserved_bytes, 2048u);
  }
  // One fits the cache, the other went back to the system.
  ArenaStats stats = arena->Stats();
  EXPECT_EQ(stats.reserved_bytes, 1024u);
  EXPECT_EQ(stats.in_use_bytes, 0u);
  ArenaBuffer again = arena->Allocate(1024);
  EXPECT_EQ(arena->Stats().reuses, 1u);
}

TEST(TensorArena, BufferOutlivesTheArenaHandle) {
  auto arena = Pageable();
  ArenaBuffer buffer = arena->Allocate(128);
  std::weak_ptr<TensorArena> weak = arena;
  arena.reset();
  EXPECT_FALSE(weak.expired());  // the buffer keeps the arena alive
  std::memset(buffer->data(), 0xab, 128);
  buffer.reset();
  EXPECT_TRUE(weak.expired());
}

TEST(TensorArena, GlobalArenaIsShared) {
  EXPECT_EQ(TensorArena::Global(), TensorArena::Global());
  ArenaBuffer buffer = TensorArena::Global()->Allocate(64);
  EXPECT_TRUE(buffer);
}

TEST(TensorArena, ConcurrentAllocateAndReleaseFromSeveralThreads) {
  auto arena = Pageable();
  constexpr int kThreads = 4;
  constexpr int kIterations = 2000;
  std::atomic<int> corrupt{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(t);
      std::vector<ArenaBuffer> held;
      for (int i = 0; i < kIterations; ++i) {
        const size_t bytes = 1 + rng() % 20000;
        ArenaBuffer buffer = arena->Allocate(bytes);
        if (!buffer || reinterpret_cast<uintptr_t>(buffer->data()) % 64 != 0) {
          ++corrupt;
          continue;
        }
        const char mark = static_cast<char>(t * 31 + i);
        std::memset(buffer->data(), mark, bytes);
        held.push_back(buffer);
        // Release some now, some later, some on another thread's schedule.
        if (held.size() > 8 || rng() % 3 == 0) {
          ArenaBuffer victim = held[rng() % held.size()];
          held.erase(std::find(held.begin(), held.end(), victim));
          victim.reset();
        }
        // The buffer just written must still hold its mark: nobody else got it.
        if (buffer->data()[bytes - 1] != mark || buffer->data()[0] != mark) ++corrupt;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(corrupt.load(), 0);
  ArenaStats stats = arena->Stats();
  EXPECT_EQ(stats.allocations, static_cast<uint64_t>(kThreads * kIterations));
  EXPECT_GT(stats.reuses, 0u);
  EXPECT_EQ(stats.in_use_bytes, 0u);
  EXPECT_GE(stats.peak_in_use_bytes, 256u);
}

TEST(TensorArena, BuffersReleasedOnAnotherThread) {
  auto arena = Pageable();
  std::vector<ArenaBuffer> buffers;
  for (int i = 0; i < 100; ++i) buffers.push_back(arena->Allocate(300));
  std::thread releaser([&] { buffers.clear(); });
  releaser.join();
  EXPECT_EQ(arena->Stats().in_use_bytes, 0u);
  for (int i = 0; i < 100; ++i) buffers.push_back(arena->Allocate(300));
  EXPECT_EQ(arena->Stats().reuses, 100u);
}

}  // namespace
}  // namespace tritonx
