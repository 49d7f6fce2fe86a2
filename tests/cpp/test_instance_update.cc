// Model::UpdateInstances / WaitRetired (Triton's in-place instance update): added
// instances take work at once, numbered after the others; a retired instance
// finishes what it holds and leaves, under the sequence batcher only once the
// sequences bound to it end; requests keep flowing throughout and the statistics
// carry on.
#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "core/model.h"
#include "core/rate_limiter.h"
#include "test_util.h"

namespace tritonx {
namespace {

using std::chrono::milliseconds;
using testing::Collector;
using testing::ExecutionLog;
using testing::Gate;
using testing::MakeRequest;
using testing::MakeSpec;
using testing::TestExecutor;

constexpr auto kLong = std::chrono::seconds(10);
constexpr auto kShort = milliseconds(50);

std::vector<std::shared_ptr<Executor>> Instances(
    int count, const std::shared_ptr<ExecutionLog>& log,
    TestExecutor::Hook hook = nullptr) {
  std::vector<std::shared_ptr<Executor>> out;
  for (int i = 0; i < count; ++i) {
    out.push_back(std::make_shared<TestExecutor>(log, hook));
  }
  return out;
}

RequestPtr Sent(Model& model, Collector& collector, const std::string& id,
                uint64_t correlation_id = 0, uint32_t flags = 0) {
  RequestPtr request = MakeRequest(id, 1);
  request->correlation_id = correlation_id;
  request->flags = flags;
  collector.Attach(request);
  EXPECT_TRUE(model.Enqueue(request).ok()) << id;
  return request;
}

std::set<int> InstancesThatRan(const ExecutionLog& log) {
  std::set<int> out;
  for (const auto& record : log.Records()) out.insert(record.instance);
  return out;
}

TEST(InstanceUpdate, AddedInstancesServeAndRetiredOnesLeave) {
  auto log = std::make_shared<ExecutionLog>();
  Model model(MakeSpec(4), SchedulerConfig{}, Instances(2, log));
  Collector collector;
  ASSERT_TRUE(model.UpdateInstances(Instances(2, log), {0, 1}).ok());
  EXPECT_TRUE(model.WaitRetired({0, 1}, kLong));
  for (int i = 0; i < 8; ++i) Sent(model, collector, "r" + std::to_string(i));
  ASSERT_TRUE(collector.WaitFor(8));
  // Only the added instances, numbered 2 and 3, ran anything.
  for (int instance : InstancesThatRan(*log)) {
    EXPECT_TRUE(instance == 2 || instance == 3) << instance;
  }
  EXPECT_EQ(model.Statistics().inference_count, 8u);
  model.Stop();
}

TEST(InstanceUpdate, ARetiredInstanceFinishesItsBatchFirst) {
  auto log = std::make_shared<ExecutionLog>();
  Gate gate;
  Model model(MakeSpec(4), SchedulerConfig{},
              Instances(1, log, [&](Batch&) { gate.Wait(); }));
  Collector collector;
  Sent(model, collector, "held");
  ASSERT_TRUE(log->WaitForStarted(1));
  // Added and retired while instance 0 runs: the update does not wait for it, and
  // new requests go to the added instance.
  ASSERT_TRUE(model.UpdateInstances(Instances(1, log), {0}).ok());
  Sent(model, collector, "next");
  ASSERT_TRUE(collector.WaitFor(1));
  EXPECT_TRUE(collector.StatusOf("next").ok());
  EXPECT_FALSE(model.WaitRetired({0}, kShort));
  gate.Open();
  EXPECT_TRUE(model.WaitRetired({0}, kLong));
  ASSERT_TRUE(collector.WaitFor(2));
  EXPECT_TRUE(collector.StatusOf("held").ok());
  model.Stop();
}

TEST(InstanceUpdate, AHeldInstanceRunsOnlyItsWarmupUntilReleased) {
  auto log = std::make_shared<ExecutionLog>();
  Gate gate;
  Model model(MakeSpec(4), SchedulerConfig{},
              Instances(1, log, [&](Batch&) { gate.Wait(); }));
  Collector collector;
  Sent(model, collector, "busy");  // instance 0 is held at the gate
  ASSERT_TRUE(log->WaitForStarted(1));
  ASSERT_TRUE(model.UpdateInstances(Instances(1, log), {}, /*hold_added=*/true).ok());
  Sent(model, collector, "queued");
  // The held instance 1 runs what ExecuteOn hands it, not the queued request.
  RequestPtr warmup = MakeRequest("warmup", 1);
  collector.Attach(warmup);
  ASSERT_TRUE(model.ExecuteOn(1, {warmup}).ok());
  ASSERT_TRUE(collector.WaitForId("warmup"));
  EXPECT_EQ(model.PendingCount(), 1u);
  EXPECT_EQ(model.ReleaseInstances({0}).code(), StatusCode::kInvalidArg);  // not held
  ASSERT_TRUE(model.ReleaseInstances({1}).ok());
  ASSERT_TRUE(collector.WaitForId("queued"));
  gate.Open();
  ASSERT_TRUE(collector.WaitFor(3));
  for (const auto& record : log->Records()) {
    if (record.ids.at(0) != "busy") EXPECT_EQ(record.instance, 1) << record.ids.at(0);
  }
  model.Stop();
}

TEST(InstanceUpdate, RefusesWithNothingChanged) {
  auto log = std::make_shared<ExecutionLog>();
  Model model(MakeSpec(4), SchedulerConfig{}, Instances(2, log));
  EXPECT_EQ(model.UpdateInstances({}, {2}).code(), StatusCode::kInvalidArg);
  EXPECT_EQ(model.UpdateInstances({}, {0, 0}).code(), StatusCode::kInvalidArg);
  EXPECT_EQ(model.UpdateInstances({}, {0, 1}).code(), StatusCode::kInvalidArg);
  ASSERT_TRUE(model.UpdateInstances({}, {1}).ok());
  EXPECT_EQ(model.UpdateInstances({}, {1}).code(), StatusCode::kInvalidArg);
  Collector collector;
  Sent(model, collector, "r");
  ASSERT_TRUE(collector.WaitFor(1));
  EXPECT_EQ(InstancesThatRan(*log), (std::set<int>{0}));
  model.Stop();
  EXPECT_EQ(model.UpdateInstances(Instances(1, log), {}).code(),
            StatusCode::kUnavailable);
  // A stop lets every worker go.
  EXPECT_TRUE(model.WaitRetired({0, 1}, kLong));
}

TEST(InstanceUpdate, ARetiredSequenceInstanceLivesUntilItsSequencesEnd) {
  auto log = std::make_shared<ExecutionLog>();
  SchedulerConfig config;
  config.sequence.strategy = SequenceStrategy::kDirect;
  Model model(MakeSpec(4), config, Instances(2, log));
  Collector collector;
  constexpr uint32_t kStart = 1u, kEnd = 2u;
  Sent(model, collector, "s1a", 1, kStart);  // instance 0
  ASSERT_TRUE(collector.WaitFor(1));
  ASSERT_TRUE(model.UpdateInstances(Instances(1, log), {0, 1}).ok());
  // Instance 1 held no sequence: it leaves at once; instance 0 waits for sequence 1.
  EXPECT_TRUE(model.WaitRetired({1}, kLong));
  EXPECT_FALSE(model.WaitRetired({0}, kShort));
  Sent(model, collector, "s2a", 2, kStart);  // a new sequence: the added instance 2
  Sent(model, collector, "s1b", 1, 0);       // sequence 1 carries on on instance 0
  ASSERT_TRUE(collector.WaitFor(3));
  EXPECT_FALSE(model.WaitRetired({0}, kShort));
  Sent(model, collector, "s1c", 1, kEnd);
  ASSERT_TRUE(collector.WaitFor(4));
  EXPECT_TRUE(model.WaitRetired({0}, kLong));
  for (const auto& record : log->Records()) {
    const std::string& id = record.ids.at(0);
    EXPECT_EQ(record.instance, id.rfind("s1", 0) == 0 ? 0 : 2) << id;
  }
  model.Stop();
}

TEST(InstanceUpdate, RetiredRateLimitedInstanceGivesItsResourcesBack) {
  auto limiter = std::make_shared<RateLimiter>();
  limiter->Configure(true, {});
  auto registered = [&](uint64_t count, std::vector<std::shared_ptr<Executor>> out) {
    InstanceRateLimit limit;
    limit.resources.push_back({"R", count, false});
    std::vector<std::shared_ptr<RateLimiter::Slot>> slots;
    EXPECT_TRUE(limiter->Register({limit}, &slots).ok());
    out[0]->rate_limit = slots[0];
    return out;
  };
  auto log = std::make_shared<ExecutionLog>();
  Model model(MakeSpec(4), SchedulerConfig{}, registered(4, Instances(1, log)));
  EXPECT_EQ(limiter->Limits()[0]["R"], 4u);
  ASSERT_TRUE(model.UpdateInstances(registered(3, Instances(1, log)), {0}).ok());
  ASSERT_TRUE(model.WaitRetired({0}, kLong));
  // Only the added instance's requirement is left.
  EXPECT_EQ(limiter->Limits()[0]["R"], 3u);
  Collector collector;
  Sent(model, collector, "r");
  ASSERT_TRUE(collector.WaitFor(1));
  EXPECT_TRUE(collector.StatusOf("r").ok());
  model.Stop();
}

}  // namespace
}  // namespace tritonx
