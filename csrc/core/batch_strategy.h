// BatchStrategy: a custom batching strategy library, as Triton loads one for a model
// with dynamic batching (`batchstrategy.so` in the model's version or model directory,
// or the model config parameter TRITON_BATCH_STRATEGY_PATH; the Python loader finds
// it). The library implements Triton's five TRITONBACKEND_ModelBatch* functions, all
// or none; the dynamic batcher asks it, request by request, whether a request joins
// the batch being formed, on top of its own rules (shapes, max_batch_size).
//
// The library is written against Triton's C API headers (tritonbackend.h,
// tritonserver.h) and calls back into the server: batch_strategy.cc exports the part
// of that API a strategy can use (errors, messages, the model's name, version and
// config, a request's id, correlation id, inputs and their properties and buffers,
// data types, logging) from this module, made globally visible before the library
// is opened so that its undefined symbols resolve here.
//
// Thread safety: BeginBatch/Include/EndBatch may be called from any thread but not
// concurrently (the dynamic batcher calls them under its queue mutex). The batch
// state (`userp`) belongs to the strategy between BeginBatch and EndBatch.
// Ownership: shared by the SchedulerConfig copies of one model version; the last
// owner calls TRITONBACKEND_ModelBatcherFinalize and closes the library.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "status.h"

// Triton's opaque C API types; defined in batch_strategy.cc (errors, the batcher is
// the strategy's own and never defined).
struct TRITONSERVER_Error;
struct TRITONBACKEND_Model;
struct TRITONBACKEND_Request;
struct TRITONBACKEND_Batcher;

namespace tritonx {

class InferenceRequest;

// What a strategy's TRITONBACKEND_Model* points to.
struct BatchStrategyModel {
  std::string name;
  uint64_t version = 1;
  std::string config_json;  // the model's configuration as Triton serializes it
};

class BatchStrategy {
 public:
  // Opens `path` and calls TRITONBACKEND_ModelBatcherInitialize. A library that
  // defines none of the five functions yields a strategy that is not enabled().
  static Status Load(const std::string& path, BatchStrategyModel model,
                     std::shared_ptr<BatchStrategy>* out);
  ~BatchStrategy();
  BatchStrategy(const BatchStrategy&) = delete;
  BatchStrategy& operator=(const BatchStrategy&) = delete;

  bool enabled() const { return include_ != nullptr; }
  const std::string& path() const { return path_; }

  // TRITONBACKEND_ModelBatchInitialize: the state of a batch about to be formed.
  void* BeginBatch() const;
  // TRITONBACKEND_ModelBatchIncludeRequest. An error is logged and counts as "no",
  // as in Triton.
  bool Include(InferenceRequest* request, void* batch_state) const;
  // TRITONBACKEND_ModelBatchFinalize (nothing for a null state).
  void EndBatch(void* batch_state) const;

 private:
  BatchStrategy() = default;
  // Logs a strategy function's error and deletes it (nothing for null).
  void LogError(const char* function, TRITONSERVER_Error* error) const;

  using IncludeFn = TRITONSERVER_Error* (*)(TRITONBACKEND_Request* request, void* userp,
                                            bool* should_include);
  using BatchInitFn = TRITONSERVER_Error* (*)(const TRITONBACKEND_Batcher* batcher,
                                              void** userp);
  using BatchFiniFn = TRITONSERVER_Error* (*)(void* userp);
  using BatcherInitFn = TRITONSERVER_Error* (*)(TRITONBACKEND_Batcher** batcher,
                                                TRITONBACKEND_Model* model);
  using BatcherFiniFn = TRITONSERVER_Error* (*)(TRITONBACKEND_Batcher* batcher);

  std::string path_;
  BatchStrategyModel model_;
  void* handle_ = nullptr;
  IncludeFn include_ = nullptr;
  BatchInitFn batch_init_ = nullptr;
  BatchFiniFn batch_fini_ = nullptr;
  BatcherInitFn batcher_init_ = nullptr;
  BatcherFiniFn batcher_fini_ = nullptr;
  // The strategy's own, from ModelBatcherInitialize.
  TRITONBACKEND_Batcher* batcher_ = nullptr;
};

}  // namespace tritonx
