// Microbenchmark (not a test): what an ensemble step costs in the core beyond the
// composing model's own request. Three echo models (C++ executors, so the numbers
// are the core's alone) are called one by one from a waiting caller, then as a
// 3-step ensemble; prints the median per-request times and the overhead per step.
//
//   build/dev/tests/cpp/ensemble_overhead [iterations]
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <thread>

#include "core/ensemble_spec.h"
#include "core/model.h"
#include "core/server_context.h"
#include "test_util.h"

namespace tritonx {
namespace {

class EchoExecutor : public Executor {
 public:
  bool AllowsInline() const override { return true; }
  void Execute(Batch& batch) override {
    for (const auto& request : batch.requests) {
      auto response = std::make_unique<InferenceResponse>();
      Tensor output = request->inputs[0];
      output.name = "OUTPUT0";
      response->outputs.push_back(std::move(output));
      batch.responses.push_back(std::move(response));
    }
  }
};

// One request through `model` from a caller that waits; returns its ns.
uint64_t Call(Model& model, const Tensor& input) {
  auto request = std::make_shared<InferenceRequest>();
  request->inputs.push_back(input);
  std::atomic<bool> done{false};
  request->SetResponseCallback(
      [&done](std::unique_ptr<InferenceResponse>) { done.store(true); });
  const uint64_t start = NowNs();
  if (!model.Enqueue(request, /*caller_waits=*/true).ok()) std::abort();
  while (!done.load()) std::this_thread::yield();
  return NowNs() - start;
}

uint64_t Median(std::vector<uint64_t> values) {
  std::sort(values.begin(), values.end());
  return values[values.size() / 2];
}

}  // namespace
}  // namespace tritonx

int main(int argc, char** argv) {
  using namespace tritonx;
  const int iterations = argc > 1 ? std::atoi(argv[1]) : 20000;
  auto context = std::make_shared<ServerContext>();
  std::vector<std::shared_ptr<Model>> steps;
  for (const char* name : {"s1", "s2", "s3"}) {
    auto model = std::make_shared<Model>(
        testing::MakeSpec(8, {16}, name), SchedulerConfig{},
        std::vector<std::shared_ptr<Executor>>{std::make_shared<EchoExecutor>()},
        context.get());
    context->registry()->Add(model);
    steps.push_back(model);
  }
  auto ensemble = std::make_shared<EnsembleSpec>();
  ensemble->steps = {{"s1", -1, {{"INPUT0", "INPUT0"}}, {{"OUTPUT0", "a"}}},
                     {"s2", -1, {{"INPUT0", "a"}}, {{"OUTPUT0", "b"}}},
                     {"s3", -1, {{"INPUT0", "b"}}, {{"OUTPUT0", "OUTPUT0"}}}};
  SchedulerConfig config;
  config.ensemble = ensemble;
  Model ens(testing::MakeSpec(8, {16}, "ens"), config, {}, context.get());
  const Tensor input = testing::FloatTensor("INPUT0", {1, 16}, 1.f);

  std::vector<uint64_t> direct, chained;
  for (int round = 0; round < 2; ++round) {  // the first round warms up
    direct.clear();
    chained.clear();
    for (int i = 0; i < iterations; ++i) {
      uint64_t total = 0;
      for (auto& step : steps) total += Call(*step, input);
      direct.push_back(total);
      chained.push_back(Call(ens, input));
    }
  }
  const double d = static_cast<double>(Median(direct)) / 1e3;
  const double e = static_cast<double>(Median(chained)) / 1e3;
  std::printf("three models one by one: %.2f us\n", d);
  std::printf("3-step ensemble:         %.2f us\n", e);
  std::printf("overhead per step:       %.2f us\n", (e - d) / 3.0);
  return 0;
}
