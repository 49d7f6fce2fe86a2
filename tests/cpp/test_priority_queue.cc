// PriorityQueue: levels, default level, per-level policies, timeouts, removal.
#include <gtest/gtest.h>

#include "core/priority_queue.h"
#include "test_util.h"

namespace tritonx {
namespace {

using testing::MakeRequest;

constexpr uint64_t kNow = 1000000000;  // an arbitrary "now" in ns

RequestPtr WithPriority(const std::string& id, uint64_t priority,
                        uint64_t timeout_us = 0) {
  RequestPtr request = MakeRequest(id);
  request->priority = priority;
  request->timeout_us = timeout_us;
  return request;
}

std::vector<std::string> Ids(const PriorityQueue& queue) {
  std::vector<std::string> ids;
  queue.ForEach([&](const RequestPtr& request) {
    ids.push_back(request->id);
    return true;
  });
  return ids;
}

std::vector<std::string> Ids(const std::vector<RequestPtr>& requests) {
  std::vector<std::string> ids;
  for (const auto& request : requests) ids.push_back(request->id);
  return ids;
}

SchedulerConfig Levels(uint32_t levels, uint32_t default_level) {
  SchedulerConfig config;
  config.priority_levels = levels;
  config.default_priority_level = default_level;
  return config;
}

TEST(PriorityQueue, FifoWithinASingleLevel) {
  PriorityQueue queue{SchedulerConfig()};
  for (const char* id : {"a", "b", "c"})
    ASSERT_TRUE(queue.Push(MakeRequest(id), kNow).ok());
  EXPECT_EQ(queue.size(), 3u);
  EXPECT_EQ(Ids(queue), (std::vector<std::string>{"a", "b", "c"}));
  EXPECT_EQ(Ids(queue.PopFront(2)), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(queue.size(), 1u);
  EXPECT_EQ(Ids(queue.PopFront(5)), (std::vector<std::string>{"c"}));
  EXPECT_TRUE(queue.empty());
}

TEST(PriorityQueue, LevelOneFirst) {
  PriorityQueue queue(Levels(3, 2));
  ASSERT_TRUE(queue.Push(WithPriority("p3", 3), kNow).ok());
  ASSERT_TRUE(queue.Push(WithPriority("p2", 2), kNow).ok());
  ASSERT_TRUE(queue.Push(WithPriority("p1", 1), kNow).ok());
  ASSERT_TRUE(queue.Push(WithPriority("p1b", 1), kNow).ok());
  EXPECT_EQ(Ids(queue), (std::vector<std::string>{"p1", "p1b", "p2", "p3"}));
  EXPECT_EQ(Ids(queue.PopFront(3)), (std::vector<std::string>{"p1", "p1b", "p2"}));
}

TEST(PriorityQueue, ZeroAndOutOfRangePrioritiesUseTheDefaultLevel) {
  PriorityQueue queue(Levels(3, 2));
  RequestPtr zero = WithPriority("zero", 0);
  RequestPtr beyond = WithPriority("beyond", 4);
  ASSERT_TRUE(queue.Push(zero, kNow).ok());
  ASSERT_TRUE(queue.Push(beyond, kNow).ok());
  EXPECT_EQ(zero->priority_level, 2u);
  EXPECT_EQ(beyond->priority_level, 2u);
}

TEST(PriorityQueue, UnsetDefaultLevelIsTheLowestPriority) {
  PriorityQueue queue(Levels(3, 0));
  RequestPtr request = WithPriority("r", 0);
  ASSERT_TRUE(queue.Push(request, kNow).ok());
  EXPECT_EQ(request->priority_level, 3u);

  PriorityQueue single{SchedulerConfig()};
  RequestPtr other = WithPriority("o", 7);
  ASSERT_TRUE(single.Push(other, kNow).ok());
  EXPECT_EQ(other->priority_level, 1u);
}

TEST(PriorityQueue, MaxQueueSizeIsPerLevel) {
  SchedulerConfig config = Levels(2, 2);
  config.priority_queue_policy[1].max_queue_size = 1;
  PriorityQueue queue(config);
  ASSERT_TRUE(queue.Push(WithPriority("h1", 1), kNow).ok());
  const Status full = queue.Push(WithPriority("h2", 1), kNow);
  EXPECT_EQ(full.code(), StatusCode::kUnavailable);
  EXPECT_EQ(full.message(), "[request id: h2] Exceeds maximum queue size");
  // Level 2 uses the default policy: unbounded.
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(queue.Push(WithPriority("l", 2), kNow).ok());
  EXPECT_EQ(queue.size(), 11u);
  queue.PopFront(1);  // frees the slot of level 1
  EXPECT_TRUE(queue.Push(WithPriority("h3", 1), kNow).ok());
}

TEST(PriorityQueue, DefaultTimeoutSetsTheDeadline) {
  SchedulerConfig config;
  config.default_queue_policy.default_timeout_us = 500;
  PriorityQueue queue(config);
  RequestPtr request = MakeRequest("r");
  ASSERT_TRUE(queue.Push(request, kNow).ok());
  EXPECT_EQ(request->deadline_ns, kNow + 500000);
  EXPECT_EQ(queue.NextDeadline(), kNow + 500000);
}

TEST(PriorityQueue, NoTimeoutMeansNoDeadline) {
  PriorityQueue queue{SchedulerConfig()};
  RequestPtr request = WithPriority("r", 0, /*timeout_us=*/100);
  ASSERT_TRUE(queue.Push(request, kNow).ok());
  EXPECT_EQ(request->deadline_ns,
            0u);  // no override allowed: the request's own is ignored
  EXPECT_EQ(queue.NextDeadline(), 0u);
}

TEST(PriorityQueue, TimeoutOverrideOnlyShortens) {
  SchedulerConfig config;
  config.default_queue_policy.default_timeout_us = 1000;
  config.default_queue_policy.allow_timeout_override = true;
  PriorityQueue queue(config);
  RequestPtr shorter = WithPriority("short", 0, 200);
  RequestPtr longer = WithPriority("long", 0, 5000);
  RequestPtr unset = WithPriority("unset", 0, 0);
  for (const auto& r : {shorter, longer, unset}) ASSERT_TRUE(queue.Push(r, kNow).ok());
  EXPECT_EQ(shorter->deadline_ns, kNow + 200000);
  EXPECT_EQ(longer->deadline_ns, kNow + 1000000);
  EXPECT_EQ(unset->deadline_ns, kNow + 1000000);
  EXPECT_EQ(queue.NextDeadline(), kNow + 200000);

  // With no default timeout there is nothing to shorten: as in Triton, a
  // request's own timeout then sets none.
  SchedulerConfig open;
  open.default_queue_policy.allow_timeout_override = true;
  PriorityQueue open_queue(open);
  RequestPtr own = WithPriority("own", 0, 300);
  ASSERT_TRUE(open_queue.Push(own, kNow).ok());
  EXPECT_EQ(own->deadline_ns, 0u);
  EXPECT_EQ(open_queue.NextDeadline(), 0u);
}

// A default timeout far past every sweep in these tests (an override can only
// shorten a default one).
constexpr uint64_t kLongTimeoutUs = 10000000;

TEST(PriorityQueue, SweepRejectRemovesExpired) {
  SchedulerConfig config;
  config.default_queue_policy.timeout_action = TimeoutAction::kReject;
  config.default_queue_policy.default_timeout_us = kLongTimeoutUs;
  config.default_queue_policy.allow_timeout_override = true;
  PriorityQueue queue(config);
  ASSERT_TRUE(queue.Push(WithPriority("a", 0, 100), kNow).ok());
  ASSERT_TRUE(queue.Push(WithPriority("b", 0, 0), kNow).ok());
  ASSERT_TRUE(queue.Push(WithPriority("c", 0, 300), kNow).ok());
  std::vector<RequestPtr> rejected;
  queue.SweepExpired(kNow + 50000, &rejected);
  EXPECT_TRUE(rejected.empty());
  queue.SweepExpired(kNow + 100000, &rejected);  // the deadline itself counts
  EXPECT_EQ(Ids(rejected), (std::vector<std::string>{"a"}));
  EXPECT_EQ(queue.size(), 2u);
  EXPECT_EQ(queue.NextDeadline(), kNow + 300000);
  queue.SweepExpired(kNow + 1000000, &rejected);
  EXPECT_EQ(Ids(rejected), (std::vector<std::string>{"a", "c"}));
  EXPECT_EQ(Ids(queue), (std::vector<std::string>{"b"}));
  EXPECT_EQ(queue.NextDeadline(), kNow + kLongTimeoutUs * 1000);
}

TEST(PriorityQueue, SweepDelayMovesExpiredBehindItsLevel) {
  // As Triton's per-level delayed queues: a delayed request goes behind the
  // unexpired requests of its own level, still ahead of every lower level.
  SchedulerConfig config = Levels(2, 2);
  QueuePolicy delay;
  delay.timeout_action = TimeoutAction::kDelay;
  delay.default_timeout_us = kLongTimeoutUs;
  delay.allow_timeout_override = true;
  config.priority_queue_policy[1] = delay;
  PriorityQueue queue(config);
  ASSERT_TRUE(queue.Push(WithPriority("h-expiring", 1, 100), kNow).ok());
  ASSERT_TRUE(queue.Push(WithPriority("h", 1), kNow).ok());
  ASSERT_TRUE(queue.Push(WithPriority("l", 2), kNow).ok());
  std::vector<RequestPtr> rejected;
  queue.SweepExpired(kNow + 200000, &rejected);
  EXPECT_TRUE(rejected.empty());
  EXPECT_EQ(queue.size(), 3u);
  EXPECT_EQ(Ids(queue), (std::vector<std::string>{"h", "h-expiring", "l"}));
  // Delayed requests do not time out again; "h" keeps its default deadline.
  EXPECT_EQ(queue.NextDeadline(), kNow + kLongTimeoutUs * 1000);
  // A later request of the same level goes ahead of the delayed one.
  ASSERT_TRUE(queue.Push(WithPriority("h2", 1), kNow + 300000).ok());
  queue.SweepExpired(kNow + 900000000, &rejected);
  EXPECT_TRUE(rejected.empty());
  EXPECT_EQ(Ids(queue.PopFront(2)), (std::vector<std::string>{"h", "h2"}));
  EXPECT_EQ(Ids(queue.PopFront(2)), (std::vector<std::string>{"h-expiring", "l"}));
  EXPECT_TRUE(queue.empty());
}

TEST(PriorityQueue, PerLevelPolicies) {
  SchedulerConfig config = Levels(2, 1);
  config.default_queue_policy.default_timeout_us = 100;  // level 1 (no override entry)
  QueuePolicy untimed;
  config.priority_queue_policy[2] = untimed;
  PriorityQueue queue(config);
  RequestPtr one = WithPriority("one", 1);
  RequestPtr two = WithPriority("two", 2);
  ASSERT_TRUE(queue.Push(one, kNow).ok());
  ASSERT_TRUE(queue.Push(two, kNow).ok());
  EXPECT_EQ(one->deadline_ns, kNow + 100000);
  EXPECT_EQ(two->deadline_ns, 0u);
}

TEST(PriorityQueue, RemoveByUidFromLevelsAndDelayed) {
  SchedulerConfig config;
  config.default_queue_policy.timeout_action = TimeoutAction::kDelay;
  config.default_queue_policy.allow_timeout_override = true;
  PriorityQueue queue(config);
  RequestPtr a = WithPriority("a", 0, 10);
  RequestPtr b = WithPriority("b", 0);
  RequestPtr c = WithPriority("c", 0);
  for (const auto& r : {a, b, c}) ASSERT_TRUE(queue.Push(r, kNow).ok());
  std::vector<RequestPtr> rejected;
  queue.SweepExpired(kNow + 20000, &rejected);  // a is now delayed
  EXPECT_TRUE(queue.Remove(b->uid));
  EXPECT_FALSE(queue.Remove(b->uid));
  EXPECT_TRUE(queue.Remove(a->uid));
  EXPECT_EQ(queue.size(), 1u);
  EXPECT_EQ(Ids(queue), (std::vector<std::string>{"c"}));
  EXPECT_FALSE(queue.Remove(12345678901ull));
}

TEST(PriorityQueue, ForEachStopsWhenVisitReturnsFalse) {
  PriorityQueue queue{SchedulerConfig()};
  for (const char* id : {"a", "b", "c"})
    ASSERT_TRUE(queue.Push(MakeRequest(id), kNow).ok());
  int visited = 0;
  queue.ForEach([&](const RequestPtr&) { return ++visited < 2; });
  EXPECT_EQ(visited, 2);
}

TEST(PriorityQueue, DrainAllEmptiesEveryLevel) {
  SchedulerConfig config = Levels(2, 2);
  config.default_queue_policy.timeout_action = TimeoutAction::kDelay;
  config.default_queue_policy.allow_timeout_override = true;
  PriorityQueue queue(config);
  ASSERT_TRUE(queue.Push(WithPriority("l", 2, 10), kNow).ok());
  ASSERT_TRUE(queue.Push(WithPriority("h", 1), kNow).ok());
  std::vector<RequestPtr> rejected;
  queue.SweepExpired(kNow + 20000, &rejected);
  EXPECT_EQ(Ids(queue.DrainAll()), (std::vector<std::string>{"h", "l"}));
  EXPECT_TRUE(queue.empty());
  EXPECT_TRUE(queue.DrainAll().empty());
}

}  // namespace
}  // namespace tritonx
