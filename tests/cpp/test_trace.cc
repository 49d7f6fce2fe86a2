// Tracer: Triton's sampling rule (every rate-th request while count lasts), settings
// replaced per model, and a root trace finished once with its children's records.
#include <gtest/gtest.h>

#include <cstdio>
#include <map>
#include <string>
#include <utility>

#include "core/trace.h"

namespace tritonx {
namespace {

TEST(TracerTest, SamplesEveryRateThWhileCountLasts) {
  auto tracer = std::make_shared<Tracer>();
  EXPECT_FALSE(tracer->active());
  tracer->Install("", std::make_shared<TraceSetting>(1, kTraceLevelTimestamps, 3, 2,
                                                     /*valid=*/true));
  EXPECT_TRUE(tracer->active());
  std::vector<int> traced;
  for (int i = 1; i <= 12; ++i) {
    if (tracer->Sample("m", false)) traced.push_back(i);
  }
  EXPECT_EQ(traced, (std::vector<int>{3, 6}));
}

TEST(TracerTest, ModelSettingOverridesGlobalAndInvalidSamplesNothing) {
  auto tracer = std::make_shared<Tracer>();
  tracer->Install("", std::make_shared<TraceSetting>(1, kTraceLevelTimestamps, 1, -1,
                                                     /*valid=*/false));
  tracer->Install("a", std::make_shared<TraceSetting>(2, kTraceLevelTimestamps, 1, -1,
                                                      /*valid=*/true));
  EXPECT_EQ(tracer->Sample("b", false), nullptr);
  EXPECT_NE(tracer->Sample("a", false), nullptr);
  tracer->Install("a", nullptr);
  EXPECT_EQ(tracer->Sample("a", false), nullptr);
  // OpenTelemetry mode: a propagated context is traced whatever the rate.
  tracer->Install("", std::make_shared<TraceSetting>(3, kTraceLevelTimestamps, 1000, -1,
                                                     true, /*propagate=*/true));
  EXPECT_EQ(tracer->Sample("b", false), nullptr);
  EXPECT_NE(tracer->Sample("b", true), nullptr);
}

TEST(TracerTest, ForcedRequestsCountTowardsRateAndCountAsInTriton) {
  // rate 2, count 2: requests 2 and 4 take the count; 3 and 5 came with a context.
  TraceSetting setting(1, kTraceLevelTimestamps, 2, 2, true, /*propagate=*/true);
  std::vector<bool> traced;
  for (bool forced : {false, false, true, true, true, false, false}) {
    traced.push_back(setting.Sample(forced));
  }
  EXPECT_EQ(traced, (std::vector<bool>{false, true, true, true, true, false, false}));
  EXPECT_EQ(setting.count(), 0);
  EXPECT_EQ(setting.sampled(), 5u);  // once count is 0 only forced ones are seen
  // Rate 0 (Triton's way to trace only what came with a context).
  TraceSetting only_context(2, kTraceLevelTimestamps, 0, -1, false, true);
  EXPECT_FALSE(only_context.Sample(false));
  EXPECT_TRUE(only_context.Sample(true));
}

TEST(TracerTest, RootFinishesOnceAfterItsChildren) {
  auto tracer = std::make_shared<Tracer>();
  tracer->Install(
      "", std::make_shared<TraceSetting>(7, kTraceLevelTimestamps, 1, -1, true));
  auto root = tracer->Sample("ensemble", false);
  ASSERT_NE(root, nullptr);
  root->SetModel("ensemble", 1, "r1");
  root->Record(trace_activity::kRequestStart, 10);
  auto child = root->SpawnChild();
  auto grandchild = child->SpawnChild();
  grandchild->SetModel("inner", 1, "r1");
  auto refused = child->SpawnChild();  // never started: dropped
  refused.reset();
  child->SetModel("step", 1, "r1");
  child->Record(trace_activity::kComputeStart, 20);
  const uint64_t root_id = root->id();
  const uint64_t child_id = child->id();
  root.reset();
  child.reset();
  EXPECT_TRUE(tracer->Drain(0).empty());  // the grandchild still holds the root
  grandchild.reset();
  auto done = tracer->Drain(0);
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].setting_id, 7u);
  ASSERT_EQ(done[0].records.size(), 3u);
  EXPECT_EQ(done[0].records[0].id, root_id);
  EXPECT_EQ(done[0].records[0].parent_id, 0u);
  std::map<uint64_t, uint64_t> parents;
  for (const auto& record : done[0].records) parents[record.id] = record.parent_id;
  EXPECT_EQ(parents[child_id], root_id);
  int grand = 0;
  for (const auto& [id, parent] : parents) grand += parent == child_id ? 1 : 0;
  EXPECT_EQ(grand, 1);
}

// The traceparent in an OpenTelemetry context, split into its trace and span ids.
std::pair<std::string, std::string> ContextIds(const std::string& context) {
  const std::string prefix = "{\"traceparent\":\"00-";
  EXPECT_EQ(context.rfind(prefix, 0), 0u) << context;
  EXPECT_EQ(context.size(), prefix.size() + 32 + 1 + 16 + 5) << context;
  return {context.substr(prefix.size(), 32), context.substr(prefix.size() + 33, 16)};
}

TEST(TracerTest, OpenTelemetryContextsNameTheSpansTheExporterMakes) {
  auto tracer = std::make_shared<Tracer>();
  tracer->Install("", std::make_shared<TraceSetting>(1, kTraceLevelTimestamps, 1, -1,
                                                     true, /*propagate=*/true));
  auto root = tracer->Sample("ensemble", false);
  ASSERT_NE(root, nullptr);
  auto [own_trace, root_span] = ContextIds(root->OtelContext());
  EXPECT_NE(own_trace, std::string(32, '0'));
  // A valid traceparent's trace is continued; a malformed one (upper case, version
  // ff, all-zero ids, text after a version 00 header) is not.
  for (const char* bad : {"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
                          "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                          "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                          "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
                          "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
                          "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7"}) {
    EXPECT_FALSE(ValidTraceparent(bad)) << bad;
    root->SetParentContext(bad, "rojo=1");  // no state without a valid parent
    EXPECT_EQ(ContextIds(root->OtelContext()).first, own_trace) << bad;
  }
  const std::string parent =
      " 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\t";
  EXPECT_TRUE(ValidTraceparent(parent));
  root->SetParentContext(parent, "");
  EXPECT_EQ(ContextIds(root->OtelContext()),
            std::make_pair(std::string("4bf92f3577b34da6a3ce929d0e0e4736"), root_span));
  // A step of the ensemble: the root's trace, a span of its own.
  auto child = root->SpawnChild();
  child->SetModel("step", 1, "");
  auto [child_trace, child_span] = ContextIds(child->OtelContext());
  EXPECT_EQ(child_trace, "4bf92f3577b34da6a3ce929d0e0e4736");
  EXPECT_NE(child_span, root_span);
  root->SetModel("ensemble", 1, "");
  child.reset();
  root.reset();
  auto done = tracer->Drain(0);
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].otel_trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
  ASSERT_EQ(done[0].records.size(), 2u);
  char hex[17];
  std::snprintf(hex, sizeof(hex), "%016llx",
                static_cast<unsigned long long>(done[0].records[0].span_id));
  EXPECT_EQ(hex, root_span);
  std::snprintf(hex, sizeof(hex), "%016llx",
                static_cast<unsigned long long>(done[0].records[1].span_id));
  EXPECT_EQ(hex, child_span);
  EXPECT_NE(done[0].root_span_id, 0u);
  EXPECT_NE(done[0].root_span_id, done[0].records[0].span_id);
  // Triton mode: no context and no ids.
  tracer->Install("", std::make_shared<TraceSetting>(2, kTraceLevelTimestamps, 1, -1,
                                                     true, /*propagate=*/false));
  auto plain = tracer->Sample("m", false);
  ASSERT_NE(plain, nullptr);
  EXPECT_EQ(plain->OtelContext(), "");
  plain->SetModel("m", 1, "");
  plain.reset();
  done = tracer->Drain(0);
  ASSERT_EQ(done.size(), 1u);
  EXPECT_EQ(done[0].otel_trace_id, "");
  EXPECT_EQ(done[0].records[0].span_id, 0u);
}

// What the exporter's propagator keeps of a tracestate header (and so what the
// model is told, and what the drained trace hands the exporter).
std::string KeptState(const std::string& header) {
  auto tracer = std::make_shared<Tracer>();
  tracer->Install("", std::make_shared<TraceSetting>(1, kTraceLevelTimestamps, 1, -1,
                                                     true, /*propagate=*/true));
  auto trace = tracer->Sample("m", true);
  trace->SetModel("m", 1, "");
  trace->SetParentContext("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
                          header);
  const std::string context = trace->OtelContext();
  trace.reset();
  const std::string kept = tracer->Drain(0).at(0).tracestate;
  const size_t at = context.find(",\"tracestate\":");
  EXPECT_EQ(at == std::string::npos, kept.empty()) << context;
  return kept;
}

TEST(TracerTest, TracestateKeptByTheW3cRules) {
  EXPECT_EQ(KeptState("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"),
            "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE");
  // Blanks around members and empty members go.
  EXPECT_EQ(KeptState(" rojo=1 ,\t, congo=2\t"), "rojo=1,congo=2");
  // Multi-tenant keys, and values with any printable character but ',' and '='.
  EXPECT_EQ(KeptState("t0@sys=a b!~,k_-*/9=\"q\\\""), "t0@sys=a b!~,k_-*/9=\"q\\\"");
  EXPECT_EQ(KeptState(""), "");
  // Any bad member drops the whole state.
  for (const char* bad : {"Rojo=1", "rojo", "rojo=", "rojo=1,rojo=2", "9x=1", "a@Sys=1",
                          "@sys=1", "a@=1", "rojo=a\x7f", "rojo=1=2", "a@b@c=1"}) {
    EXPECT_EQ(KeptState(std::string("ok=1,") + bad), "") << bad;
  }
  std::string many;
  for (int i = 0; i < 32; ++i) many += "k" + std::to_string(i) + "=v,";
  EXPECT_EQ(KeptState(many), many.substr(0, many.size() - 1));
  EXPECT_EQ(KeptState(many + "k32=v"), "");  // more than 32 members
  EXPECT_EQ(KeptState("k=" + std::string(256, 'v')), "k=" + std::string(256, 'v'));
  EXPECT_EQ(KeptState("k=" + std::string(257, 'v')), "");
  EXPECT_EQ(KeptState(std::string(8193, ',')), "");  // over 8192 bytes
  // Key lengths: 256 (simple), 241 before '@' and 14 after it at most.
  const std::string keep_lengths[] = {
      std::string(256, 'a') + "=1",
      std::string(241, 't') + "@" + std::string(14, 's') + "=1", "k= v"};
  for (const std::string& kept : keep_lengths) EXPECT_EQ(KeptState(kept), kept);
  for (const std::string& bad :
       {std::string(257, 'a') + "=1", std::string(242, 't') + "@s=1",
        "t@" + std::string(15, 's') + "=1", std::string("_a@s=1")}) {
    EXPECT_EQ(KeptState(bad), "") << bad;
  }
}

TEST(TracerTest, ContextCarriesTheStateToTheStepsOfAnEnsemble) {
  auto tracer = std::make_shared<Tracer>();
  tracer->Install("", std::make_shared<TraceSetting>(1, kTraceLevelTimestamps, 1, -1,
                                                     true, /*propagate=*/true));
  auto root = tracer->Sample("ensemble", true);
  root->SetParentContext("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                         "rojo=\"1\"");
  auto child = root->SpawnChild();
  const std::string context = child->OtelContext();
  EXPECT_EQ(context.substr(context.find(",\"tracestate\"")),
            ",\"tracestate\":\"rojo=\\\"1\\\"\"}");
}

TEST(TracerTest, LiveTracesFoundByIdAndResponseCompleteOnceOnRoots) {
  auto tracer = std::make_shared<Tracer>();
  tracer->Install(
      "", std::make_shared<TraceSetting>(3, kTraceLevelTimestamps, 1, -1, true));
  auto root = tracer->Sample("bls", false);
  ASSERT_NE(root, nullptr);
  root->SetModel("bls", 1, "b1");
  auto child = root->SpawnChild();
  child->SetModel("add_one", 1, "");
  EXPECT_EQ(tracer->Find(root->id()), root);
  EXPECT_EQ(tracer->Find(child->id()), child);
  const uint64_t child_id = child->id();
  root->RecordFirstResponse(5);
  root->RecordFirstResponse(6);   // once
  child->RecordFirstResponse(7);  // children have none
  child.reset();
  EXPECT_EQ(tracer->Find(child_id), nullptr);
  root.reset();
  auto done = tracer->Drain(0);
  ASSERT_EQ(done.size(), 1u);
  ASSERT_EQ(done[0].records.size(), 2u);
  int complete = 0;
  for (const auto& record : done[0].records) {
    for (const auto& stamp : record.stamps) {
      if (std::string(stamp.name) == trace_activity::kInferResponseComplete) {
        EXPECT_EQ(record.parent_id, 0u);
        EXPECT_EQ(stamp.ns, 5u);
        ++complete;
      }
    }
  }
  EXPECT_EQ(complete, 1);
}

TEST(TracerTest, TensorsAsTritonWritesThem) {
  auto tracer = std::make_shared<Tracer>();
  tracer->Install("",
                  std::make_shared<TraceSetting>(1, kTraceLevelTensors, 1, -1, true));
  auto trace = tracer->Sample("m", false);
  ASSERT_NE(trace, nullptr);
  const float values[3] = {0.5f, 1.0f, 2.0f};
  Tensor tensor;
  tensor.name = "x";
  tensor.dtype = DataType::kFp32;
  tensor.shape = {1, 3};
  tensor.data = reinterpret_cast<const char*>(values);
  tensor.byte_size = sizeof(values);
  trace->RecordTensor(trace_activity::kTensorQueueInput, tensor);
  trace->Record(trace_activity::kRequestStart, 1);  // TIMESTAMPS is off: dropped
  trace.reset();
  auto done = tracer->Drain(0);
  ASSERT_EQ(done.size(), 1u);
  const TraceRecord& record = done[0].records[0];
  EXPECT_TRUE(record.stamps.empty());
  ASSERT_EQ(record.tensors.size(), 1u);
  EXPECT_EQ(record.tensors[0].data, "0.5,1,2");
  EXPECT_EQ(record.tensors[0].shape, "1,3");
  EXPECT_EQ(record.tensors[0].dtype, "FP32");
}

}  // namespace
}  // namespace tritonx
