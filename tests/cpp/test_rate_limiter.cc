// RateLimiter: default and explicit resource counts with Triton's errors, exclusive
// use of a resource, priority order among waiting instances, and abandoning a wait.
#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <thread>
#include <vector>

#include "core/rate_limiter.h"

namespace tritonx {
namespace {

using SlotPtr = std::shared_ptr<RateLimiter::Slot>;

InstanceRateLimit Needs(uint64_t count, uint32_t priority = 0, bool global = false,
                        int device = 0) {
  InstanceRateLimit limit;
  limit.resources.push_back({"R", count, global});
  limit.priority = priority;
  limit.device = device;
  return limit;
}

std::shared_ptr<RateLimiter> Limiter(RateLimiter::ResourceMap counts = {}) {
  auto limiter = std::make_shared<RateLimiter>();
  limiter->Configure(true, std::move(counts));
  return limiter;
}

SlotPtr RegisterOne(RateLimiter& limiter, const InstanceRateLimit& limit) {
  std::vector<SlotPtr> slots;
  EXPECT_TRUE(limiter.Register({limit}, &slots).ok());
  return slots.empty() ? nullptr : slots[0];
}

// Waits until `count` threads are blocked in Acquire.
void AwaitWaiting(const RateLimiter& limiter, size_t count) {
  while (limiter.WaitingCount() < count) std::this_thread::yield();
}

TEST(RateLimiter, OffRegistersNothing) {
  RateLimiter limiter;
  std::vector<SlotPtr> slots;
  ASSERT_TRUE(limiter.Register({Needs(1)}, &slots).ok());
  EXPECT_TRUE(slots.empty());
}

TEST(RateLimiter, DefaultCountIsTheLargestNeedAndShrinksOnUnregister) {
  auto limiter = Limiter();
  SlotPtr small = RegisterOne(*limiter, Needs(2));
  {
    SlotPtr big = RegisterOne(*limiter, Needs(5));
    EXPECT_EQ(limiter->Limits()[0]["R"], 5u);
  }
  EXPECT_EQ(limiter->Limits()[0]["R"], 2u);
}

TEST(RateLimiter, ExplicitCountsAndTritonsErrors) {
  auto limiter = Limiter({{RateLimiter::kEveryDevice, {{"R", 1}}}});
  std::vector<SlotPtr> slots;
  Status status = limiter->Register({Needs(2)}, &slots);
  EXPECT_EQ(status.code(), StatusCode::kInvalidArg);
  EXPECT_EQ(status.message(),
            "Resource count for \"R\" is limited to 1 which will prevent scheduling "
            "of one or more model instances, the minimum required count is 2");
  EXPECT_TRUE(slots.empty());

  auto mixed = Limiter();
  SlotPtr device = RegisterOne(*mixed, Needs(1));
  status = mixed->Register({Needs(1, 0, /*global=*/true)}, &slots);
  EXPECT_EQ(status.message(),
            "Resource \"R\" is present as both global and device-specific resource "
            "in the model configuration.");

  // A device-specific count applies to its device only.
  auto per_device = Limiter({{1, {{"R", 4}}}});
  status = per_device->Register({Needs(3, 0, false, /*device=*/0)}, &slots);
  EXPECT_EQ(status.code(), StatusCode::kInvalidArg);
  ASSERT_TRUE(per_device->Register({Needs(3, 0, false, 1)}, &slots).ok());
  EXPECT_EQ(per_device->Limits()[1]["R"], 4u);
}

TEST(RateLimiter, OneCopyIsHeldByOneInstanceAtATime) {
  auto limiter = Limiter();
  SlotPtr a = RegisterOne(*limiter, Needs(1));
  SlotPtr b = RegisterOne(*limiter, Needs(1));
  ASSERT_TRUE(a->Acquire());
  std::atomic<bool> b_got{false};
  std::thread waiter([&] {
    b_got = b->Acquire();
    b->Release();
  });
  AwaitWaiting(*limiter, 1);
  EXPECT_FALSE(b_got.load());
  a->Release();
  waiter.join();
  EXPECT_TRUE(b_got.load());
  // Devices are separate pools: an instance on device 1 is not blocked.
  SlotPtr other = RegisterOne(*limiter, Needs(1, 0, false, 1));
  ASSERT_TRUE(a->Acquire());
  ASSERT_TRUE(other->Acquire());
  other->Release();
  a->Release();
}

// Grants the one copy to whichever waiter the limiter picks first, recording order.
std::vector<int> GrantOrder(RateLimiter& limiter, const SlotPtr& holder,
                            const std::vector<SlotPtr>& waiters) {
  std::vector<int> order;
  std::mutex mu;
  EXPECT_TRUE(holder->Acquire());
  std::vector<std::thread> threads;
  for (size_t i = 0; i < waiters.size(); ++i) {
    threads.emplace_back([&, i] {
      EXPECT_TRUE(waiters[i]->Acquire());
      {
        std::lock_guard<std::mutex> lock(mu);
        order.push_back(static_cast<int>(i));
      }
      waiters[i]->Release();
    });
    AwaitWaiting(limiter, i + 1);  // arrival order is the tie-break
  }
  holder->Release();
  for (auto& thread : threads) thread.join();
  return order;
}

TEST(RateLimiter, FewerExecutionsTimesPriorityGoesFirst) {
  auto limiter = Limiter();
  SlotPtr holder = RegisterOne(*limiter, Needs(1));
  SlotPtr busy = RegisterOne(*limiter, Needs(1, /*priority=*/1));
  SlotPtr idle = RegisterOne(*limiter, Needs(1, 1));
  for (int i = 0; i < 3; ++i) {  // busy has executed 3 times, idle never
    ASSERT_TRUE(busy->Acquire());
    busy->Release();
  }
  EXPECT_EQ(GrantOrder(*limiter, holder, {busy, idle}), (std::vector<int>{1, 0}));

  // After one execution each, priority 4 weighs four times priority 1: the
  // priority-1 instance goes first although it arrived last.
  auto weighted = Limiter();
  SlotPtr hold = RegisterOne(*weighted, Needs(1));
  SlotPtr low = RegisterOne(*weighted, Needs(1, 4));
  SlotPtr high = RegisterOne(*weighted, Needs(1, 1));
  for (const SlotPtr& slot : {low, high}) {
    ASSERT_TRUE(slot->Acquire());
    slot->Release();
  }
  EXPECT_EQ(GrantOrder(*weighted, hold, {low, high}), (std::vector<int>{1, 0}));
}

TEST(RateLimiter, AbandonWakesAWaiter) {
  auto limiter = Limiter();
  SlotPtr a = RegisterOne(*limiter, Needs(1));
  SlotPtr b = RegisterOne(*limiter, Needs(1));
  ASSERT_TRUE(a->Acquire());
  std::atomic<int> result{-1};
  std::thread waiter([&] { result = b->Acquire() ? 1 : 0; });
  AwaitWaiting(*limiter, 1);
  b->Abandon();
  waiter.join();
  EXPECT_EQ(result.load(), 0);
  EXPECT_FALSE(b->Acquire());
  a->Release();
}

}  // namespace
}  // namespace tritonx
