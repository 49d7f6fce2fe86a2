// EnsembleScheduler: steps run on composing models found in the server's registry,
// as soon as their inputs exist; tensors pass between steps without copies; a
// step's error, a cancellation and a decoupled step's stream reach the ensemble.
#include <gtest/gtest.h>

#include <mutex>
#include <string>
#include <tuple>
#include <vector>

#include "core/ensemble_spec.h"
#include "core/model_registry.h"
#include "core/server_context.h"
#include "test_util.h"

namespace tritonx {
namespace {

using testing::Collector;
using testing::ExecutionLog;
using testing::FloatTensor;
using testing::MakeRequest;
using testing::MakeSpec;
using testing::TestExecutor;

using Map = std::vector<std::pair<std::string, std::string>>;

// OUTPUT0 = INPUT0 + INPUT1 (INPUT1 optional: then INPUT0 + 1), in a new buffer.
class AddExecutor : public Executor {
 public:
  void Execute(Batch& batch) override {
    for (const auto& request : batch.requests) {
      const Tensor& a = request->inputs[0];
      const Tensor* b = request->inputs.size() > 1 ? &request->inputs[1] : nullptr;
      Tensor out = FloatTensor("OUTPUT0", a.shape);
      auto* dst = const_cast<float*>(reinterpret_cast<const float*>(out.data));
      const auto* x = reinterpret_cast<const float*>(a.data);
      const auto* y = b ? reinterpret_cast<const float*>(b->data) : nullptr;
      for (size_t i = 0; i < a.byte_size / sizeof(float); ++i) {
        dst[i] = x[i] + (y ? y[i] : 1.f);
      }
      auto response = std::make_unique<InferenceResponse>();
      response->outputs.push_back(std::move(out));
      batch.responses.push_back(std::move(response));
    }
  }
};

ModelSpec TwoInputSpec(const std::string& name) {
  ModelSpec spec = MakeSpec(8, {4}, name);
  spec.inputs.push_back({"INPUT1", DataType::kFp32, {4}, true, false, {}, {}});
  return spec;
}

class EnsembleTest : public ::testing::Test {
 protected:
  EnsembleTest() : context_(std::make_shared<ServerContext>()) {}

  std::shared_ptr<Model> AddModel(ModelSpec spec, std::shared_ptr<Executor> executor,
                                  SchedulerConfig config = {}) {
    auto model = std::make_shared<Model>(
        std::move(spec), config, std::vector<std::shared_ptr<Executor>>{executor},
        context_.get());
    context_->registry()->Add(model);
    return model;
  }

  std::shared_ptr<Model> Ensemble(std::vector<EnsembleStepSpec> steps,
                                  ModelSpec spec = MakeSpec(8, {4}, "ens")) {
    auto ensemble = std::make_shared<EnsembleSpec>();
    ensemble->steps = std::move(steps);
    SchedulerConfig config;
    config.ensemble = ensemble;
    auto model = std::make_shared<Model>(std::move(spec), config,
                                         std::vector<std::shared_ptr<Executor>>{},
                                         context_.get());
    context_->registry()->Add(model);
    return model;
  }

  std::shared_ptr<ServerContext> context_;
};

std::vector<float> Values(const Tensor& tensor) {
  const auto* data = reinterpret_cast<const float*>(tensor.data);
  return std::vector<float>(data, data + tensor.byte_size / sizeof(float));
}

TEST_F(EnsembleTest, LinearPipelinePassesBuffersWithoutCopies) {
  auto log = std::make_shared<ExecutionLog>();
  auto a = AddModel(MakeSpec(8, {4}, "a"), std::make_shared<TestExecutor>(log));
  auto b = AddModel(MakeSpec(8, {4}, "b"), std::make_shared<TestExecutor>(log));
  auto ens = Ensemble({{"a", -1, {{"INPUT0", "INPUT0"}}, {{"OUTPUT0", "t1"}}},
                       {"b", -1, {{"INPUT0", "t1"}}, {{"OUTPUT0", "t2"}}},
                       {"a", -1, {{"INPUT0", "t2"}}, {{"OUTPUT0", "OUTPUT0"}}}});
  RequestPtr request = MakeRequest("r", 2, 4, 3.f);
  const char* input_data = request->inputs[0].data;
  Collector collector;
  collector.Attach(request);
  ASSERT_TRUE(ens->Enqueue(request).ok());
  ASSERT_TRUE(collector.WaitFor(1));
  ASSERT_TRUE(collector.StatusOf("r").ok()) << collector.StatusOf("r").message();
  const InferenceResponse* response = collector.ResponseOf("r");
  ASSERT_EQ(response->outputs.size(), 1u);
  EXPECT_EQ(response->outputs[0].name, "OUTPUT0");
  EXPECT_EQ(response->outputs[0].shape, (Shape{2, 4}));
  EXPECT_EQ(response->model_name, "ens");
  // Three echo steps: the ensemble's output is the request's own buffer.
  EXPECT_EQ(response->outputs[0].data, input_data);
  EXPECT_EQ(log->ExecutedIds(), (std::vector<std::string>{"r", "r", "r"}));
  StatsSnapshot stats = ens->Statistics();
  EXPECT_EQ(stats.success.count, 1u);
  EXPECT_EQ(stats.inference_count, 2u);
  EXPECT_EQ(stats.execution_count, 1u);
  EXPECT_EQ(a->Statistics().inference_count, 4u);
  EXPECT_EQ(b->Statistics().execution_count, 1u);
}

TEST_F(EnsembleTest, ParallelBranchesJoin) {
  auto log = std::make_shared<ExecutionLog>();
  AddModel(MakeSpec(8, {4}, "echo"), std::make_shared<TestExecutor>(log));
  AddModel(TwoInputSpec("add"), std::make_shared<AddExecutor>());
  ModelSpec spec = MakeSpec(8, {4}, "ens");
  spec.outputs.push_back({"A", DataType::kFp32, {4}, false, false, {}, {}});
  auto ens = Ensemble(
      {{"echo", -1, {{"INPUT0", "INPUT0"}}, {{"OUTPUT0", "A"}}},
       {"add", -1, {{"INPUT0", "INPUT0"}}, {{"OUTPUT0", "B"}}},
       {"add", -1, {{"INPUT0", "A"}, {"INPUT1", "B"}}, {{"OUTPUT0", "OUTPUT0"}}}},
      spec);
  RequestPtr request = MakeRequest("r", 1, 4, 2.f);
  Collector collector;
  collector.Attach(request);
  ASSERT_TRUE(ens->Enqueue(request).ok());
  ASSERT_TRUE(collector.WaitFor(1));
  ASSERT_TRUE(collector.StatusOf("r").ok()) << collector.StatusOf("r").message();
  const InferenceResponse* response = collector.ResponseOf("r");
  // The outputs in Triton's order: its hash map of the names (A, then OUTPUT0).
  ASSERT_EQ(response->outputs.size(), 2u);
  EXPECT_EQ(response->outputs[0].name, "A");
  EXPECT_EQ(Values(response->outputs[0]), std::vector<float>(4, 2.f));
  EXPECT_EQ(response->outputs[1].name, "OUTPUT0");
  EXPECT_EQ(Values(response->outputs[1]), std::vector<float>(4, 5.f));  // 2 + (2+1)

  // Asking for A alone skips the join and the branch it does not need.
  RequestPtr only_a = MakeRequest("a", 1, 4, 2.f);
  only_a->requested_outputs = {"A"};
  collector.Attach(only_a);
  ASSERT_TRUE(ens->Enqueue(only_a).ok());
  ASSERT_TRUE(collector.WaitForId("a"));
  ASSERT_EQ(collector.ResponseOf("a")->outputs.size(), 1u);
  EXPECT_EQ(collector.ResponseOf("a")->outputs[0].name, "A");
}

TEST_F(EnsembleTest, StepErrorEndsTheRequest) {
  auto log = std::make_shared<ExecutionLog>();
  AddModel(MakeSpec(8, {4}, "bad"),
           std::make_shared<TestExecutor>(log, [](Batch& batch) {
             batch.batch_status = Status(StatusCode::kInternal, "boom");
           }));
  auto ens = Ensemble({{"bad", -1, {{"INPUT0", "INPUT0"}}, {{"OUTPUT0", "OUTPUT0"}}}});
  RequestPtr request = MakeRequest("r");
  Collector collector;
  collector.Attach(request);
  ASSERT_TRUE(ens->Enqueue(request).ok());
  ASSERT_TRUE(collector.WaitFor(1));
  EXPECT_EQ(collector.StatusOf("r").code(), StatusCode::kInternal);
  EXPECT_EQ(collector.StatusOf("r").message(), "in ensemble 'ens', boom");
  EXPECT_EQ(ens->Statistics().fail.count, 2u);  // as Triton counts it
}

TEST_F(EnsembleTest, MissingComposingModelFailsTheRequest) {
  auto ens = Ensemble({{"gone", -1, {{"INPUT0", "INPUT0"}}, {{"OUTPUT0", "OUTPUT0"}}}});
  RequestPtr request = MakeRequest("r");
  Collector collector;
  collector.Attach(request);
  ASSERT_TRUE(ens->Enqueue(request).ok());
  ASSERT_TRUE(collector.WaitFor(1));
  EXPECT_EQ(collector.StatusOf("r").message(),
            "in ensemble 'ens', Request for unknown model: 'gone' is not found");
}

TEST_F(EnsembleTest, CancellationReachesTheRunningStep) {
  auto log = std::make_shared<ExecutionLog>();
  std::atomic<bool> saw_cancel{false};
  AddModel(MakeSpec(8, {4}, "held"),
           std::make_shared<TestExecutor>(log, [&](Batch& batch) {
             const uint64_t until = NowNs() + 10'000'000'000ull;
             while (!batch.requests[0]->IsCancelled() && NowNs() < until) {
               std::this_thread::sleep_for(std::chrono::milliseconds(1));
             }
             saw_cancel = batch.requests[0]->IsCancelled();
           }));
  auto ens = Ensemble({{"held", -1, {{"INPUT0", "INPUT0"}}, {{"OUTPUT0", "OUTPUT0"}}}});
  RequestPtr request = MakeRequest("r");
  Collector collector;
  collector.Attach(request);
  ASSERT_TRUE(ens->Enqueue(request).ok());
  ASSERT_TRUE(log->WaitForStarted(1));
  ens->Cancel(request);
  ASSERT_TRUE(collector.WaitFor(1));
  EXPECT_TRUE(saw_cancel.load());
}

TEST_F(EnsembleTest, OptionalInputLeftOutReachesNoStep) {
  AddModel(TwoInputSpec("add"), std::make_shared<AddExecutor>());
  ModelSpec spec = TwoInputSpec("ens");
  auto ens = Ensemble({{"add",
                        -1,
                        {{"INPUT0", "INPUT0"}, {"INPUT1", "INPUT1"}},
                        {{"OUTPUT0", "OUTPUT0"}}}},
                      spec);
  RequestPtr request = MakeRequest("r", 1, 4, 2.f);  // no INPUT1: add uses + 1
  Collector collector;
  collector.Attach(request);
  ASSERT_TRUE(ens->Enqueue(request).ok());
  ASSERT_TRUE(collector.WaitFor(1));
  ASSERT_TRUE(collector.StatusOf("r").ok()) << collector.StatusOf("r").message();
  EXPECT_EQ(Values(collector.ResponseOf("r")->outputs[0]), std::vector<float>(4, 3.f));
}

TEST_F(EnsembleTest, NonBatchingStepInBatchingEnsemble) {
  auto log = std::make_shared<ExecutionLog>();
  // The step does not batch: a batch-1 tensor loses its batch dim on the way in and
  // gets it back on the way out (Triton's conversion).
  AddModel(MakeSpec(0, {4}, "flat"), std::make_shared<TestExecutor>(log));
  auto ens = Ensemble({{"flat", -1, {{"INPUT0", "INPUT0"}}, {{"OUTPUT0", "OUTPUT0"}}}});
  RequestPtr request = MakeRequest("r", 1, 4, 2.f);
  Collector collector;
  collector.Attach(request);
  ASSERT_TRUE(ens->Enqueue(request).ok());
  ASSERT_TRUE(collector.WaitFor(1));
  ASSERT_TRUE(collector.StatusOf("r").ok()) << collector.StatusOf("r").message();
  EXPECT_EQ(log->Records().at(0).shapes.at(0), (Shape{4}));
  EXPECT_EQ(collector.ResponseOf("r")->outputs[0].shape, (Shape{1, 4}));
}

// Decoupled: three responses (INPUT0 * k), then FINAL alone.
class RepeatExecutor : public Executor {
 public:
  void Execute(Batch& batch) override {
    for (const auto& request : batch.requests) {
      for (int k = 1; k <= 3; ++k) {
        const Tensor& in = request->inputs[0];
        Tensor out = FloatTensor("OUTPUT0", in.shape);
        auto* dst = const_cast<float*>(reinterpret_cast<const float*>(out.data));
        const auto* x = reinterpret_cast<const float*>(in.data);
        for (size_t i = 0; i < in.byte_size / sizeof(float); ++i) dst[i] = x[i] * k;
        auto response = std::make_unique<InferenceResponse>();
        response->outputs.push_back(std::move(out));
        EXPECT_TRUE(request->Send(std::move(response), 0).ok());
      }
      EXPECT_TRUE(request->Send(nullptr, kResponseFlagFinal).ok());
    }
  }
};

TEST_F(EnsembleTest, DecoupledStepStreamsThroughTheEnsemble) {
  ModelSpec repeat = MakeSpec(8, {4}, "repeat");
  repeat.decoupled = true;
  AddModel(repeat, std::make_shared<RepeatExecutor>());
  AddModel(TwoInputSpec("add"), std::make_shared<AddExecutor>());
  ModelSpec spec = MakeSpec(8, {4}, "ens");
  spec.decoupled = true;
  auto ens = Ensemble({{"repeat", -1, {{"INPUT0", "INPUT0"}}, {{"OUTPUT0", "r"}}},
                       {"add", -1, {{"INPUT0", "r"}}, {{"OUTPUT0", "OUTPUT0"}}}},
                      spec);
  RequestPtr request = MakeRequest("r", 1, 4, 1.f);
  std::mutex mu;
  std::condition_variable cv;
  std::vector<float> firsts;
  bool final = false;
  request->SetResponseStream(
      [&](std::unique_ptr<InferenceResponse> response, uint32_t flags) {
        std::lock_guard<std::mutex> lock(mu);
        if (response) {
          EXPECT_TRUE(response->status.ok()) << response->status.message();
          if (!response->outputs.empty())
            firsts.push_back(Values(response->outputs[0])[0]);
        }
        if (flags & kResponseFlagFinal) final = true;
        cv.notify_all();
      });
  ASSERT_TRUE(ens->Enqueue(request).ok());
  std::unique_lock<std::mutex> lock(mu);
  ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(10), [&] { return final; }));
  std::sort(firsts.begin(), firsts.end());
  EXPECT_EQ(firsts, (std::vector<float>{2.f, 3.f, 4.f}));  // k * 1 + 1
}

// Echoes INPUT0 and names the sequence of its response in `parameters`.
TestExecutor::Hook AnswerWith(Parameters parameters) {
  return [parameters](Batch& batch) {
    for (const auto& request : batch.requests) {
      auto response = std::make_unique<InferenceResponse>();
      Tensor output = request->inputs[0];
      output.name = "OUTPUT0";
      response->outputs.push_back(std::move(output));
      response->parameters = parameters;
      batch.responses.push_back(std::move(response));
    }
  };
}

// What sequence each executed request was in: (id, string id, flags).
struct SeenSequences {
  std::mutex mu;
  std::vector<std::tuple<uint64_t, std::string, uint32_t>> seen;
  TestExecutor::Hook Hook() {
    return [this](Batch& batch) {
      std::lock_guard<std::mutex> lock(mu);
      for (const auto& r : batch.requests)
        seen.emplace_back(r->correlation_id, r->correlation_id_str, r->flags);
    };
  }
};

const ParameterValue* Find(const InferenceResponse& response, const std::string& name) {
  for (const auto& [key, value] : response.parameters) {
    if (key == name) return &value;
  }
  return nullptr;
}

TEST_F(EnsembleTest, ResponsesReportTheSequenceOfTheStepThatMadeThem) {
  auto log = std::make_shared<ExecutionLog>();
  SeenSequences first, second;
  AddModel(MakeSpec(8, {4}, "a"), std::make_shared<TestExecutor>(log, first.Hook()));
  AddModel(MakeSpec(8, {4}, "b"), std::make_shared<TestExecutor>(log, second.Hook()));
  auto ens = Ensemble({{"a", -1, {{"INPUT0", "INPUT0"}}, {{"OUTPUT0", "t1"}}},
                       {"b", -1, {{"INPUT0", "t1"}}, {{"OUTPUT0", "OUTPUT0"}}}});
  Collector collector;
  RequestPtr plain = MakeRequest("plain");
  RequestPtr numbered = MakeRequest("numbered");
  numbered->correlation_id = 42;
  numbered->flags = 1u;  // START
  RequestPtr named = MakeRequest("named");
  named->correlation_id_str = "abc";
  named->flags = 2u;  // END
  for (const auto& request : {plain, numbered, named}) {
    collector.Attach(request);
    ASSERT_TRUE(ens->Enqueue(request).ok());
    ASSERT_TRUE(collector.WaitForId(request->id));
  }
  // Without a sequence: id 0 and no flags, as an integer.
  const InferenceResponse* response = collector.ResponseOf("plain");
  ASSERT_NE(Find(*response, "sequence_id"), nullptr);
  EXPECT_EQ(std::get<int64_t>(*Find(*response, "sequence_id")), 0);
  EXPECT_FALSE(std::get<bool>(*Find(*response, "sequence_start")));
  EXPECT_FALSE(std::get<bool>(*Find(*response, "sequence_end")));
  response = collector.ResponseOf("numbered");
  EXPECT_EQ(std::get<int64_t>(*Find(*response, "sequence_id")), 42);
  EXPECT_TRUE(std::get<bool>(*Find(*response, "sequence_start")));
  EXPECT_FALSE(std::get<bool>(*Find(*response, "sequence_end")));
  response = collector.ResponseOf("named");
  EXPECT_EQ(std::get<std::string>(*Find(*response, "sequence_id")), "abc");
  EXPECT_FALSE(std::get<bool>(*Find(*response, "sequence_start")));
  EXPECT_TRUE(std::get<bool>(*Find(*response, "sequence_end")));
  using Seen = std::tuple<uint64_t, std::string, uint32_t>;
  const std::vector<Seen> steps = {{0, "", 0}, {42, "", 1u}, {0, "abc", 2u}};
  EXPECT_EQ(first.seen, steps);
  EXPECT_EQ(second.seen, steps);
}

TEST_F(EnsembleTest, AStepResponseMovesTheStepsAfterItToItsSequence) {
  auto log = std::make_shared<ExecutionLog>();
  SeenSequences second;
  // Names sequence 7, ending; its flags replace the step's (START is not named).
  AddModel(MakeSpec(8, {4}, "tagger"),
           std::make_shared<TestExecutor>(
               log, AnswerWith({{"sequence_id", int64_t{7}}, {"sequence_end", true}})));
  AddModel(MakeSpec(8, {4}, "b"), std::make_shared<TestExecutor>(log, second.Hook()));
  auto ens = Ensemble({{"tagger", -1, {{"INPUT0", "INPUT0"}}, {{"OUTPUT0", "t1"}}},
                       {"b", -1, {{"INPUT0", "t1"}}, {{"OUTPUT0", "OUTPUT0"}}}});
  Collector collector;
  RequestPtr numbered = MakeRequest("numbered");
  numbered->correlation_id = 42;
  numbered->flags = 1u;
  RequestPtr named = MakeRequest("named");
  named->correlation_id_str = "abc";
  for (const auto& request : {numbered, named}) {
    collector.Attach(request);
    ASSERT_TRUE(ens->Enqueue(request).ok());
    ASSERT_TRUE(collector.WaitForId(request->id));
  }
  using Seen = std::tuple<uint64_t, std::string, uint32_t>;
  EXPECT_EQ(second.seen, (std::vector<Seen>{{7, "", 2u}, {7, "", 2u}}));
  const InferenceResponse* response = collector.ResponseOf("numbered");
  EXPECT_EQ(std::get<int64_t>(*Find(*response, "sequence_id")), 7);
  EXPECT_FALSE(std::get<bool>(*Find(*response, "sequence_start")));
  EXPECT_TRUE(std::get<bool>(*Find(*response, "sequence_end")));
  // The response's id has the type of the request's: Triton reads the integer id
  // 7 as a string, which is empty.
  response = collector.ResponseOf("named");
  EXPECT_EQ(std::get<std::string>(*Find(*response, "sequence_id")), "");
}

TEST_F(EnsembleTest, ASequenceParameterOfTheWrongTypeFailsTheRequest) {
  auto log = std::make_shared<ExecutionLog>();
  AddModel(MakeSpec(8, {4}, "tagger"),
           std::make_shared<TestExecutor>(log, AnswerWith({{"sequence_start", 1.5}})));
  auto ens =
      Ensemble({{"tagger", -1, {{"INPUT0", "INPUT0"}}, {{"OUTPUT0", "OUTPUT0"}}}});
  RequestPtr request = MakeRequest("r");
  Collector collector;
  collector.Attach(request);
  ASSERT_TRUE(ens->Enqueue(request).ok());
  ASSERT_TRUE(collector.WaitFor(1));
  EXPECT_EQ(collector.StatusOf("r").code(), StatusCode::kInvalidArg);
  EXPECT_EQ(collector.StatusOf("r").message(),
            "in ensemble 'ens', expect parameter 'sequence_start' to be "
            "TRITONSERVER_PARAMETER_BOOL");
}

}  // namespace
}  // namespace tritonx
