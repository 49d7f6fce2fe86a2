// Model::ExecuteOn (model warmup): a given list of requests runs as one batch on a
// given instance, past the queue and the batching rules, answered and counted like
// any request (under sequence batching, outside every sequence); refused with
// nothing run where it cannot.
#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/ensemble_spec.h"
#include "core/model.h"
#include "test_util.h"

namespace tritonx {
namespace {

using testing::Collector;
using testing::ExecutionLog;
using testing::MakeRequest;
using testing::MakeSpec;
using testing::TestExecutor;

std::vector<std::shared_ptr<Executor>> Instances(
    int count, const std::shared_ptr<ExecutionLog>& log) {
  std::vector<std::shared_ptr<Executor>> out;
  for (int i = 0; i < count; ++i) out.push_back(std::make_shared<TestExecutor>(log));
  return out;
}

std::vector<RequestPtr> Requests(const std::string& prefix, int count,
                                 Collector* collector) {
  std::vector<RequestPtr> out;
  for (int i = 0; i < count; ++i) {
    out.push_back(MakeRequest(prefix + std::to_string(i)));
    collector->Attach(out.back());
  }
  return out;
}

TEST(ExecuteOn, RunsTheRequestsAsOneBatchOnTheGivenInstance) {
  auto log = std::make_shared<ExecutionLog>();
  // Dynamic batching with a max batch of 4 and a preferred size of 2 would split
  // these; ExecuteOn hands them over as they are.
  SchedulerConfig config;
  config.dynamic_batching = true;
  config.preferred_batch_sizes = {2};
  Model model(MakeSpec(4), config, Instances(2, log));
  Collector collector;
  ASSERT_TRUE(model.ExecuteOn(1, Requests("a", 3, &collector)).ok());
  ASSERT_TRUE(collector.WaitFor(3));
  ASSERT_TRUE(model.ExecuteOn(0, Requests("b", 1, &collector)).ok());
  ASSERT_TRUE(collector.WaitFor(4));
  for (const char* id : {"a0", "a1", "a2", "b0"}) {
    EXPECT_TRUE(collector.StatusOf(id).ok()) << id;
  }
  const auto records = log->Records();
  ASSERT_EQ(records.size(), 2u);
  EXPECT_EQ(records[0].instance, 1);
  EXPECT_EQ(records[0].ids, (std::vector<std::string>{"a0", "a1", "a2"}));
  EXPECT_EQ(records[0].total, 3);
  EXPECT_EQ(records[1].instance, 0);
  // Counted as executions of their batch (Triton's warmup statistics), once the
  // responses are out.
  StatsSnapshot stats = model.Statistics();
  EXPECT_EQ(stats.inference_count, 4u);
  EXPECT_EQ(stats.success.count, 4u);
  EXPECT_EQ(stats.execution_count, 2u);
  EXPECT_EQ(stats.batch_stats.at(3).count, 1u);
  EXPECT_EQ(stats.batch_stats.at(1).count, 1u);
  model.Stop();
}

TEST(ExecuteOn, RefusesWithNothingRun) {
  auto log = std::make_shared<ExecutionLog>();
  Model model(MakeSpec(4), SchedulerConfig{}, Instances(1, log));
  Collector collector;
  // A request its validation refuses: the first refusal, none of them taken.
  std::vector<RequestPtr> requests = Requests("a", 2, &collector);
  requests[1]->inputs[0].name = "NOPE";
  EXPECT_FALSE(model.ExecuteOn(0, requests).ok());
  EXPECT_EQ(model.ExecuteOn(1, Requests("b", 1, &collector)).code(),
            StatusCode::kInvalidArg);
  EXPECT_EQ(model.ExecuteOn(0, {}).code(), StatusCode::kInvalidArg);
  model.Stop();
  EXPECT_EQ(model.ExecuteOn(0, Requests("c", 1, &collector)).code(),
            StatusCode::kUnavailable);
  EXPECT_TRUE(log->Records().empty());
  EXPECT_EQ(model.Statistics().inference_count, 0u);
}

TEST(ExecuteOn, RunsOutsideEverySequenceUnderSequenceBatching) {
  // Triton's warmup hands a sequence model's instance its requests past the
  // sequence batcher: one batch as given (here more requests than the instance has
  // slots), no control input added, no slot taken.
  std::mutex mu;
  std::map<std::string, std::vector<std::string>> inputs;  // per request id
  std::map<std::string, uint64_t> ids;                     // correlation id
  auto hook = [&](Batch& batch) {
    std::lock_guard<std::mutex> lock(mu);
    for (const auto& request : batch.requests) {
      if (request->null_request) continue;
      for (const Tensor& tensor : request->inputs) {
        inputs[request->id].push_back(tensor.name);
      }
      ids[request->id] = request->correlation_id;
    }
  };
  auto log = std::make_shared<ExecutionLog>();
  SchedulerConfig config;
  config.sequence.strategy = SequenceStrategy::kDirect;
  SequenceControl start;
  start.kind = SequenceControlKind::kStart;
  start.name = "START";
  start.dtype = DataType::kInt32;
  start.false_value = std::string(4, '\0');
  start.true_value = std::string("\x01\0\0\0", 4);
  config.sequence.controls.push_back(start);
  std::vector<std::shared_ptr<Executor>> executors{
      std::make_shared<TestExecutor>(log, hook)};
  Model model(MakeSpec(2), config, executors);
  Collector collector;
  ASSERT_TRUE(model.ExecuteOn(0, Requests("w", 3, &collector)).ok());
  ASSERT_TRUE(collector.WaitFor(3));
  // A sequence afterwards starts in slot 0 as on a fresh model.
  RequestPtr first = MakeRequest("s1", 1);
  first->correlation_id = 7;
  first->flags = 3u;  // START | END
  collector.Attach(first);
  ASSERT_TRUE(model.Enqueue(first).ok());
  ASSERT_TRUE(collector.WaitFor(4));
  model.Stop();
  const auto records = log->Records();
  ASSERT_EQ(records.size(), 2u);
  EXPECT_EQ(records[0].ids, (std::vector<std::string>{"w0", "w1", "w2"}));
  EXPECT_EQ(records[0].total, 3);
  EXPECT_EQ(records[1].ids, (std::vector<std::string>{"s1"}));
  std::lock_guard<std::mutex> lock(mu);
  for (const char* id : {"w0", "w1", "w2"}) {
    EXPECT_EQ(inputs[id], (std::vector<std::string>{"INPUT0"})) << id;
    EXPECT_EQ(ids[id], 0u) << id;
  }
  EXPECT_EQ(inputs["s1"], (std::vector<std::string>{"INPUT0", "START"}));
  EXPECT_EQ(ids["s1"], 7u);
  EXPECT_EQ(model.Statistics().execution_count, 2u);
}

TEST(ExecuteOn, UnsupportedForEnsembles) {
  auto log = std::make_shared<ExecutionLog>();
  Collector collector;
  SchedulerConfig ensemble;
  ensemble.ensemble = std::make_shared<EnsembleSpec>();
  Model ensemble_model(MakeSpec(4, {4}, "ens"), ensemble, {});
  EXPECT_EQ(ensemble_model.ExecuteOn(0, Requests("b", 1, &collector)).code(),
            StatusCode::kUnsupported);
  EXPECT_TRUE(log->Records().empty());
}

}  // namespace
}  // namespace tritonx
