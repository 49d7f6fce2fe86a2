// Helpers shared by the core's unit tests: specs, requests, a response collector and
// a configurable C++ executor that records what the scheduler sent it.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "core/executor.h"
#include "core/infer_request.h"
#include "core/model.h"
#include "core/model_spec.h"
#include "core/scheduler_config.h"
#include "core/status.h"
#include "core/tensor.h"

namespace tritonx::testing {

// The process' current virtual size, from /proc/self/status (VmSize): the base for
// an address-space limit (RLIMIT_AS) that leaves no room for a new thread's stack.
inline size_t VirtualBytes() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmSize:", 0) == 0) return std::stoull(line.substr(7)) * 1024;
  }
  return 0;
}

using std::chrono::milliseconds;

inline double MsSince(uint64_t start_ns) {
  return static_cast<double>(NowNs() - start_ns) / 1e6;
}

// FP32 input "INPUT0" and output "OUTPUT0" with the given non-batch dims.
inline ModelSpec MakeSpec(int32_t max_batch_size, Shape dims = {4},
                          std::string name = "m") {
  ModelSpec spec;
  spec.name = std::move(name);
  spec.version = 1;
  spec.max_batch_size = max_batch_size;
  spec.inputs.push_back({"INPUT0", DataType::kFp32, dims, false, false, {}, {}});
  spec.outputs.push_back({"OUTPUT0", DataType::kFp32, dims, false, false, {}, {}});
  return spec;
}

// An FP32 tensor whose bytes live in a vector the tensor owns.
inline Tensor FloatTensor(const std::string& name, Shape shape, float fill = 0.f) {
  auto values = std::make_shared<std::vector<float>>(
      static_cast<size_t>(ElementCount(shape)), fill);
  Tensor tensor;
  tensor.name = name;
  tensor.dtype = DataType::kFp32;
  tensor.shape = std::move(shape);
  tensor.data = reinterpret_cast<const char*>(values->data());
  tensor.byte_size = values->size() * sizeof(float);
  tensor.owner = values;
  return tensor;
}

// A request for MakeSpec(): `batch` rows of `width` floats (no batch dim when batch
// is 0, for max_batch_size 0 models).
inline RequestPtr MakeRequest(const std::string& id, int64_t batch = 1,
                              int64_t width = 4, float fill = 0.f) {
  auto request = std::make_shared<InferenceRequest>();
  request->id = id;
  Shape shape = batch > 0 ? Shape{batch, width} : Shape{width};
  request->inputs.push_back(FloatTensor("INPUT0", shape, fill));
  return request;
}

// Records every response by request id; counts duplicates.
class Collector {
 public:
  struct Entry {
    Status status;
    std::unique_ptr<InferenceResponse> response;
    uint64_t at_ns = 0;
  };

  // Installs a callback on `request` that stores its response here.
  void Attach(const RequestPtr& request) {
    const std::string id = request->id;
    request->SetResponseCallback([this, id](std::unique_ptr<InferenceResponse> r) {
      std::lock_guard<std::mutex> lock(mu_);
      ++calls_[id];
      order_.push_back(id);
      Entry entry;
      entry.status = r->status;
      entry.response = std::move(r);
      entry.at_ns = NowNs();
      entries_[id] = std::move(entry);
      cv_.notify_all();
    });
  }

  // Waits until `count` responses arrived; false on timeout.
  bool WaitFor(size_t count, milliseconds timeout = milliseconds(10000)) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return order_.size() >= count; });
  }

  bool WaitForId(const std::string& id, milliseconds timeout = milliseconds(10000)) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return entries_.count(id) > 0; });
  }

  size_t size() const {
    std::lock_guard<std::mutex> lock(mu_);
    return order_.size();
  }
  bool Has(const std::string& id) const {
    std::lock_guard<std::mutex> lock(mu_);
    return entries_.count(id) > 0;
  }
  Status StatusOf(const std::string& id) const {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = entries_.find(id);
    return it == entries_.end() ? Status(StatusCode::kUnknown, "no response")
                                : it->second.status;
  }
  uint64_t TimeOf(const std::string& id) const {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = entries_.find(id);
    return it == entries_.end() ? 0 : it->second.at_ns;
  }
  const InferenceResponse* ResponseOf(const std::string& id) const {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = entries_.find(id);
    return it == entries_.end() ? nullptr : it->second.response.get();
  }
  std::vector<std::string> Order() const {
    std::lock_guard<std::mutex> lock(mu_);
    return order_;
  }
  int Calls(const std::string& id) const {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = calls_.find(id);
    return it == calls_.end() ? 0 : it->second;
  }

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, Entry> entries_;
  std::map<std::string, int> calls_;
  std::vector<std::string> order_;
};

// A gate executions can be held at: closed until Open().
class Gate {
 public:
  void Open() {
    std::lock_guard<std::mutex> lock(mu_);
    open_ = true;
    cv_.notify_all();
  }
  void Wait() {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait(lock, [&] { return open_; });
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = false;
};

// What one execution looked like.
struct ExecutionRecord {
  int instance = 0;
  std::vector<std::string> ids;
  std::vector<int64_t> batch_sizes;
  std::vector<Shape> shapes;  // INPUT0 shape per request
  int64_t total = 0;
  uint64_t start_ns = 0;
  uint64_t end_ns = 0;
};

// Shared log of executions across the instances of one model.
class ExecutionLog {
 public:
  void Add(ExecutionRecord record) {
    std::lock_guard<std::mutex> lock(mu_);
    records_.push_back(std::move(record));
    cv_.notify_all();
  }
  std::vector<ExecutionRecord> Records() const {
    std::lock_guard<std::mutex> lock(mu_);
    return records_;
  }
  std::vector<int64_t> Totals() const {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<int64_t> totals;
    for (const auto& r : records_) totals.push_back(r.total);
    return totals;
  }
  std::vector<std::string> ExecutedIds() const {
    std::lock_guard<std::mutex> lock(mu_);
    std::vector<std::string> ids;
    for (const auto& r : records_) ids.insert(ids.end(), r.ids.begin(), r.ids.end());
    return ids;
  }
  // Waits until `count` executions have started.
  bool WaitForStarted(int count, milliseconds timeout = milliseconds(10000)) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, timeout, [&] { return started_ >= count; });
  }
  void MarkStarted() {
    std::lock_guard<std::mutex> lock(mu_);
    ++started_;
    cv_.notify_all();
  }

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<ExecutionRecord> records_;
  int started_ = 0;
};

// A response whose OUTPUT0 is the request's first input (no output without one).
inline std::unique_ptr<InferenceResponse> EchoResponse(
    const InferenceRequest& request) {
  auto response = std::make_unique<InferenceResponse>();
  if (!request.inputs.empty()) {
    Tensor output = request.inputs[0];
    output.name = "OUTPUT0";
    response->outputs.push_back(std::move(output));
  }
  return response;
}

// An executor that echoes INPUT0 as OUTPUT0 for every request, after an optional
// hook (block on a gate, sleep, fail). Tracks peak concurrency across instances.
class TestExecutor : public Executor {
 public:
  using Hook = std::function<void(Batch&)>;

  TestExecutor(std::shared_ptr<ExecutionLog> log, Hook hook = nullptr,
               std::shared_ptr<std::atomic<int>> running = nullptr,
               std::shared_ptr<std::atomic<int>> peak = nullptr)
      : log_(std::move(log)),
        hook_(std::move(hook)),
        running_(running ? std::move(running) : std::make_shared<std::atomic<int>>(0)),
        peak_(peak ? std::move(peak) : std::make_shared<std::atomic<int>>(0)) {}

  void Execute(Batch& batch) override {
    ExecutionRecord record;
    record.instance = batch.instance_index;
    record.total = batch.total_batch_size;
    record.start_ns = NowNs();
    for (const auto& request : batch.requests) {
      record.ids.push_back(request->id);
      record.batch_sizes.push_back(request->batch_size);
      record.shapes.push_back(request->inputs.empty() ? Shape{}
                                                      : request->inputs[0].shape);
    }
    log_->MarkStarted();
    const int now = running_->fetch_add(1) + 1;
    int seen = peak_->load();
    while (now > seen && !peak_->compare_exchange_weak(seen, now)) {
    }
    if (hook_) hook_(batch);
    running_->fetch_sub(1);
    if (batch.batch_status.ok() && batch.responses.empty()) {
      for (const auto& request : batch.requests) {
        batch.responses.push_back(EchoResponse(*request));
      }
    }
    record.end_ns = NowNs();
    log_->Add(std::move(record));
  }

  int peak() const { return peak_->load(); }

 private:
  std::shared_ptr<ExecutionLog> log_;
  Hook hook_;
  std::shared_ptr<std::atomic<int>> running_;
  std::shared_ptr<std::atomic<int>> peak_;
};

}  // namespace tritonx::testing
