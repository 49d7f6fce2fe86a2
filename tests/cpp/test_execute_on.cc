// Model::ExecuteOn (model warmup): a given list of requests runs as one batch on a
// given instance, past the queue and the batching rules, answered and counted like
// any request; refused with nothing run where it cannot.
#include <gtest/gtest.h>

#include <memory>
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

TEST(ExecuteOn, UnsupportedUnderSequenceBatchingAndForEnsembles) {
  auto log = std::make_shared<ExecutionLog>();
  SchedulerConfig sequence;
  sequence.sequence.strategy = SequenceStrategy::kDirect;
  Model sequence_model(MakeSpec(4), sequence, Instances(1, log));
  Collector collector;
  EXPECT_EQ(sequence_model.ExecuteOn(0, Requests("a", 1, &collector)).code(),
            StatusCode::kUnsupported);
  sequence_model.Stop();

  SchedulerConfig ensemble;
  ensemble.ensemble = std::make_shared<EnsembleSpec>();
  Model ensemble_model(MakeSpec(4, {4}, "ens"), ensemble, {});
  EXPECT_EQ(ensemble_model.ExecuteOn(0, Requests("b", 1, &collector)).code(),
            StatusCode::kUnsupported);
  EXPECT_TRUE(log->Records().empty());
}

}  // namespace
}  // namespace tritonx
