// Fuzz target: a stream of requests through a model's scheduler (tritonx::Model with
// a C++ echo executor): no batching, the dynamic batcher (preferred sizes, queue
// delay, priority levels, queue timeouts and a bounded queue) or the sequence batcher
// (direct or oldest, short idle timeout), with requests cancelled after they were
// queued and batches the executor fails. Then the model is stopped with drain.
// Checked: every request Enqueue took is answered exactly once by the time Stop has
// returned and the callbacks settled (when the input asks, already before Stop: no
// request waits for ever), and none it refused ever is (Model::Enqueue's contract);
// no crash, hang or sanitizer report.
//
// Input: 4 bytes of configuration, then 3 bytes per request (see Decode* below).
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "core/model.h"
#include "fuzz_models.h"
#include "test_util.h"

using namespace tritonx;
using testing::Collector;
using testing::ExecutionLog;
using testing::MakeRequest;
using testing::MakeSpec;
using testing::TestExecutor;

namespace {

struct Setup {
  ModelSpec spec;
  SchedulerConfig config;
  int instances = 1;
  bool answered_before_stop = false;
};

// Byte 0: bits 0-1 the scheduler (none, dynamic, sequence direct, sequence oldest),
// bit 2 preserve_ordering, bit 3 two instances, bits 4-5 priority levels (0-3), bit
// 6 a queue of at most 4, bit 7 timed-out requests delayed instead of refused.
// Byte 1: bits 0-2 max_batch_size 0-7, bit 3 every accepted request must be answered
// before Stop (nothing may wait for ever: a sequence's slot left taken, say), not
// only by it. Byte 2: queue delay 0-255 µs. Byte 3: bits 0-2 max
// candidate sequences (oldest), bit 3 a preferred batch size of 2, bits 4-7 the
// default queue timeout in 100 µs (0: none).
Setup DecodeSetup(const uint8_t* bytes) {
  Setup setup;
  const int mode = bytes[0] & 3;
  const int32_t max_batch = bytes[1] & 7;
  setup.spec = MakeSpec(max_batch);
  SchedulerConfig& config = setup.config;
  config.max_batch_size = max_batch;
  config.preserve_ordering = (bytes[0] & 4) != 0;
  setup.instances = (bytes[0] & 8) != 0 ? 2 : 1;
  setup.answered_before_stop = (bytes[1] & 8) != 0;
  if (mode == 1 && max_batch > 0) {
    config.dynamic_batching = true;
    config.max_queue_delay_us = bytes[2];
    if ((bytes[3] & 8) != 0) config.preferred_batch_sizes = {2};
    config.priority_levels = (bytes[0] >> 4) & 3;
    if (config.priority_levels > 0) config.default_priority_level = 1;
    QueuePolicy& policy = config.default_queue_policy;
    policy.max_queue_size = (bytes[0] & 64) != 0 ? 4 : 0;
    policy.timeout_action =
        (bytes[0] & 128) != 0 ? TimeoutAction::kDelay : TimeoutAction::kReject;
    policy.default_timeout_us = static_cast<uint64_t>((bytes[3] >> 4) & 15) * 100;
    policy.allow_timeout_override = true;
    if (config.priority_levels > 1) config.priority_queue_policy[2] = policy;
  } else if (mode >= 2) {
    SequenceBatchingConfig& sequence = config.sequence;
    sequence.strategy =
        mode == 2 ? SequenceStrategy::kDirect : SequenceStrategy::kOldest;
    sequence.max_sequence_idle_us = 2000;  // short, so idle sequences end in a run
    sequence.max_queue_delay_us = bytes[2];
    sequence.max_candidate_sequences = bytes[3] & 7;
    sequence.preserve_ordering = config.preserve_ordering;
  }
  return setup;
}

// A request, from 3 bytes. Byte 0: bits 0-1 the sequence flags (START, END), bit 2
// no correlation ID, bit 3 cancelled once queued, bits 4-5 priority, bit 6 a 50 µs
// timeout, bit 7 its batch fails in the executor. Byte 1: correlation ID 1-8 (bits
// 0-2), bit 3 a second, narrower shape. Byte 2: batch size 1-4 (bits 0-1), bit 2
// sent only once every request before it is answered (a pause: the model's threads
// go idle, as between a client's bursts).
struct Op {
  RequestPtr request;
  bool cancel = false;
  bool after_pause = false;
};

Op DecodeOp(const uint8_t* bytes, size_t index, const ModelSpec& spec) {
  const int64_t batch = spec.max_batch_size > 0 ? 1 + (bytes[2] & 3) : 0;
  const int64_t width = (bytes[1] & 8) != 0 ? 2 : 4;
  Op op;
  op.request = MakeRequest(
      (bytes[0] & 128) != 0 ? "fail-" + std::to_string(index) : std::to_string(index),
      batch, width);
  op.request->flags = bytes[0] & 3;
  if ((bytes[0] & 4) == 0) op.request->correlation_id = 1 + (bytes[1] & 7);
  op.cancel = (bytes[0] & 8) != 0;
  op.after_pause = (bytes[2] & 4) != 0;
  op.request->priority = (bytes[0] >> 4) & 3;
  if ((bytes[0] & 64) != 0) op.request->timeout_us = 50;
  return op;
}

// Fails the whole batch when any of its requests asks for it.
void FailSome(Batch& batch) {
  for (const auto& request : batch.requests) {
    if (request->id.rfind("fail-", 0) == 0) {
      batch.batch_status = Status(StatusCode::kInternal, "executor failed the batch");
      return;
    }
  }
}

// Every accepted request so far is answered within 20 s: none waits for ever.
void ExpectAnswered(Collector& collector, size_t accepted, const char* when) {
  if (collector.WaitFor(accepted, std::chrono::milliseconds(20000))) return;
  std::fprintf(stderr, "%zu of %zu accepted requests answered %s\n", collector.size(),
               accepted, when);
  __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 4) return 0;
  Setup setup = DecodeSetup(data);
  // The spec allows the narrower shape too, so that requests of both shapes are
  // accepted and must not be batched together.
  setup.spec.inputs[0].dims = {-1};
  setup.spec.outputs[0].dims = {-1};
  auto log = std::make_shared<ExecutionLog>();
  std::vector<std::shared_ptr<Executor>> executors;
  for (int i = 0; i < setup.instances; ++i) {
    executors.push_back(std::make_shared<TestExecutor>(log, FailSome));
  }
  Collector collector;
  std::vector<std::string> accepted;
  std::vector<std::string> refused;
  {
    auto model = std::make_shared<Model>(setup.spec, setup.config, executors);
    const size_t count = std::min<size_t>((size - 4) / 3, 64);
    for (size_t i = 0; i < count; ++i) {
      Op op = DecodeOp(data + 4 + 3 * i, i, setup.spec);
      if (op.after_pause) ExpectAnswered(collector, accepted.size(), "before a pause");
      collector.Attach(op.request);
      const Status queued = model->Enqueue(op.request);
      fuzz::Trace("enqueue", queued);
      if (queued.ok()) {
        accepted.push_back(op.request->id);
        if (op.cancel) model->Cancel(op.request);
      } else {
        refused.push_back(op.request->id);
      }
    }
    if (setup.answered_before_stop) {
      ExpectAnswered(collector, accepted.size(), "before Stop");
    }
    model->Stop();
  }
  // Stop ran or failed everything queued; the last callbacks may still be on their
  // way from a core thread.
  if (!collector.WaitFor(accepted.size(), std::chrono::milliseconds(20000))) {
    std::fprintf(stderr, "%zu of %zu accepted requests answered\n", collector.size(),
                 accepted.size());
    __builtin_trap();
  }
  std::this_thread::sleep_for(std::chrono::microseconds(200));
  fuzz::Trace(("answered " + std::to_string(collector.size()) + ", executions " +
               std::to_string(log->Records().size()))
                  .c_str(),
              Status::Ok());
  for (const std::string& id : accepted) {
    if (collector.Calls(id) != 1) {
      std::fprintf(stderr, "request %s answered %d times\n", id.c_str(),
                   collector.Calls(id));
      __builtin_trap();
    }
  }
  for (const std::string& id : refused) {
    if (collector.Calls(id) != 0) {
      std::fprintf(stderr, "refused request %s answered\n", id.c_str());
      __builtin_trap();
    }
  }
  return 0;
}
