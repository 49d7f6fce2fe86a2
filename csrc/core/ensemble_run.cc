#include "ensemble_run.h"

#include <algorithm>

#include "logging.h"
#include "model.h"
#include "response_cache.h"
#include "trace.h"

namespace tritonx {

namespace {

bool DimsMatch(const Shape& config, const Shape& dims) {
  if (config.size() != dims.size()) return false;
  for (size_t i = 0; i < dims.size(); ++i) {
    if (config[i] != -1 && dims[i] != -1 && config[i] != dims[i]) return false;
  }
  return true;
}

// Triton's batch / non-batch conversion between a tensor and the model (or ensemble
// output) that receives it: a tensor from a non-batching model gets a batch dim of 1
// when the receiver batches and the shape matches its dims; a batch-1 tensor from a
// batching model loses it when the receiver does not batch and the shape does not
// match as it is. `batch_size` 0: the producer does not batch.
Shape ConvertShape(const Shape& config_dims, bool receiver_batches, int64_t batch_size,
                   const Shape& dims) {
  if (receiver_batches == (batch_size != 0)) return dims;
  if (receiver_batches) {
    if (!DimsMatch(config_dims, dims)) return dims;
    Shape out;
    out.reserve(dims.size() + 1);
    out.push_back(1);
    out.insert(out.end(), dims.begin(), dims.end());
    return out;
  }
  if (!DimsMatch(config_dims, dims) && batch_size == 1 && !dims.empty()) {
    return Shape(dims.begin() + 1, dims.end());
  }
  return dims;
}

}  // namespace

void EnsembleRun::Start(const std::shared_ptr<ModelRegistry>& registry,
                        bool caller_waits) {
  const EnsemblePlan& plan = *plan_;
  const size_t tensor_count = plan.tensor_names.size();
  values_.resize(tensor_count);
  next_iteration_.assign(tensor_count, 0);
  readers_.assign(tensor_count, 0);
  requested_.assign(tensor_count, 0);
  active_.assign(plan.steps.size(), 0);

  Status status;
  models_.resize(plan.steps.size());
  for (size_t i = 0; i < plan.steps.size() && status.ok(); ++i) {
    const auto& step = plan.steps[i];
    for (size_t j = 0; j < i; ++j) {  // the same model in several steps: one lookup
      if (plan.steps[j].model_name == step.model_name &&
          plan.steps[j].model_namespace == step.model_namespace &&
          plan.steps[j].version == step.version) {
        models_[i] = models_[j];
        break;
      }
    }
    if (models_[i]) continue;
    if (!registry) {
      status = Status(StatusCode::kUnavailable, "the server is shutting down");
    } else {
      status = registry->FindIn({step.model_namespace, step.model_name}, step.version,
                                &models_[i]);
    }
  }

  // The requested outputs (every output when none is named) and, backwards from
  // them, the steps they need: steps feeding only outputs nobody asked for are
  // skipped, as in Triton. A response the cache will keep has every output (the
  // request's own filter applies when it is sent): Triton caches what the request
  // asked for and later hits then answer with those outputs only.
  if (parent_->requested_outputs.empty() || parent_->response_cache) {
    for (int id : plan.output_ids) requested_[id] = 1;
  } else {
    for (const auto& name : parent_->requested_outputs) {
      const int id = plan.TensorId(name);
      if (id >= 0) requested_[id] = 1;
    }
  }
  std::vector<int> pending;
  for (size_t id = 0; id < tensor_count; ++id) {
    if (requested_[id]) pending.push_back(static_cast<int>(id));
  }
  while (!pending.empty()) {
    const int id = pending.back();
    pending.pop_back();
    const int producer = plan.producer[id];
    if (producer < 0 || active_[producer]) continue;
    active_[producer] = 1;
    for (const auto& input : plan.steps[producer].inputs)
      pending.push_back(input.tensor);
  }
  for (size_t id = 0; id < tensor_count; ++id) {
    int readers = requested_[id] ? 1 : 0;
    for (int step : plan.consumers[id]) readers += active_[step] ? 1 : 0;
    readers_[id] = readers;
  }

  std::vector<Launch> launches;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!status.ok()) {
      Fail(status);
    } else {
      const int64_t batch = plan.model.max_batch_size > 0 ? parent_->batch_size : 0;
      std::vector<Updated> updated;
      std::vector<char> given(tensor_count, 0);
      for (const Tensor& input : parent_->inputs) {
        const int id = plan.TensorId(input.name);
        if (id < 0 || given[id]) continue;
        given[id] = 1;
        AddValue(id, input, true, batch, nullptr, &updated);
      }
      // Optional inputs the request left out exist as absent values, so that steps
      // reading them (as optional inputs of their own) can run.
      for (int id : plan.input_ids) {
        if (!given[id]) AddValue(id, Tensor(), false, batch, nullptr, &updated);
      }
      NextSteps(updated, &launches);
      CollectOutputs(updated);
      MaybeFinish();
    }
  }
  LaunchAll(std::move(launches), caller_waits);
  Flush();
}

EnsembleRun::Value* EnsembleRun::Find(int tensor, uint64_t iteration) {
  for (Value& value : values_[tensor]) {
    if (value.iteration == iteration) return &value;
  }
  return nullptr;
}

void EnsembleRun::Release(int tensor, uint64_t iteration) {
  auto& list = values_[tensor];
  for (auto it = list.begin(); it != list.end(); ++it) {
    if (it->iteration == iteration) {
      if (--it->refs <= 0) list.erase(it);
      return;
    }
  }
}

void EnsembleRun::AddValue(int tensor, Tensor data, bool present, int64_t batch_size,
                           const SequenceTag* sequence, std::vector<Updated>* updated) {
  const uint64_t iteration = next_iteration_[tensor]++;
  if (readers_[tensor] == 0) return;  // nobody reads it (a pruned branch)
  Value value;
  value.iteration = iteration;
  value.tensor = std::move(data);
  value.present = present;
  value.batch_size = batch_size;
  value.refs = readers_[tensor];
  if (sequence != nullptr) {
    value.tagged = true;
    value.sequence = *sequence;
  }
  values_[tensor].push_back(std::move(value));
  updated->push_back({tensor, iteration});
}

void EnsembleRun::NextSteps(const std::vector<Updated>& updated,
                            std::vector<Launch>* launches) {
  if (done_) return;
  std::vector<std::pair<int, uint64_t>> ready;
  for (const Updated& u : updated) {
    for (int step : plan_->consumers[u.tensor]) {
      if (!active_[step]) continue;
      const std::pair<int, uint64_t> key(step, u.iteration);
      if (std::find(ready.begin(), ready.end(), key) != ready.end()) continue;
      bool all = true;
      for (const auto& input : plan_->steps[step].inputs) {
        if (Find(input.tensor, u.iteration) == nullptr) {
          all = false;
          break;
        }
      }
      if (all) ready.push_back(key);
    }
  }
  for (const auto& [step, iteration] : ready) {
    Launch launch;
    launch.step = step;
    launch.request = MakeStepRequest(step, iteration, &launch.warning);
    launches->push_back(std::move(launch));
  }
  inflight_steps_ += static_cast<int>(ready.size());
}

RequestPtr EnsembleRun::MakeStepRequest(int step, uint64_t iteration,
                                        std::string* warning) {
  const EnsemblePlan::Step& plan_step = plan_->steps[step];
  const ModelSpec& spec = models_[step]->spec();
  auto request = std::make_shared<InferenceRequest>();
  request->id = parent_->id;
  request->parameters = parent_->parameters;
  request->priority = parent_->priority;
  request->timeout_us = parent_->timeout_us;
  // The step runs in the ensemble request's sequence unless an input made by an
  // earlier step names another: the first such input decides (Triton logs and
  // ignores disagreeing ones).
  SequenceTag sequence{parent_->correlation_id, parent_->correlation_id_str,
                       parent_->flags};
  bool sequence_set = false;
  for (const auto& input : plan_step.inputs) {
    const Value* value = Find(input.tensor, iteration);
    if (!value->tagged) continue;
    if (sequence_set && value->sequence != sequence) {
      *warning = "in ensemble '" + plan_->model.name + "', the inputs of step '" +
                 plan_step.model_name +
                 "' come from different sequences; the first one's is used";
      continue;
    }
    sequence = value->sequence;
    sequence_set = true;
  }
  request->correlation_id = sequence.id;
  request->correlation_id_str = sequence.id_str;
  request->flags = sequence.flags;
  // A traced ensemble request traces its steps as children (Triton's parent_id).
  if (parent_->trace) request->trace = parent_->trace->SpawnChild();
  request->inputs.reserve(plan_step.inputs.size());
  for (const auto& input : plan_step.inputs) {
    Value* value = Find(input.tensor, iteration);
    if (value->present) {
      Tensor tensor = value->tensor;  // shares the producer's buffer
      tensor.aliased = true;          // with other steps, the response, the producer
      tensor.name = input.model_tensor;
      if (const TensorSpec* config = spec.FindInput(input.model_tensor)) {
        tensor.shape = ConvertShape(config->dims, spec.max_batch_size > 0,
                                    value->batch_size, tensor.shape);
      }
      request->inputs.push_back(std::move(tensor));
    }
  }
  // Released after every input was read: one tensor may feed two inputs.
  for (const auto& input : plan_step.inputs) Release(input.tensor, iteration);
  request->requested_outputs.reserve(plan_step.outputs.size());
  for (const auto& output : plan_step.outputs) {
    request->requested_outputs.push_back(output.model_tensor);
  }
  InferenceRequest* raw = request.get();
  request->SetResponseStream(
      [run = shared_from_this(), step, raw, sequence = std::move(sequence)](
          std::unique_ptr<InferenceResponse> response, uint32_t flags) {
        run->OnStepResponse(step, raw, sequence, std::move(response), flags);
      });
  inflight_.emplace_back(step, request);
  return request;
}

void EnsembleRun::CollectOutputs(const std::vector<Updated>& updated) {
  if (done_) return;
  const EnsemblePlan& plan = *plan_;
  for (const Updated& u : updated) {
    if (!requested_[u.tensor]) continue;
    bool ready = true;
    for (int id : plan.output_ids) {
      if (requested_[id] && Find(id, u.iteration) == nullptr) {
        ready = false;
        break;
      }
    }
    if (!ready) continue;
    auto response = std::make_unique<InferenceResponse>();
    const bool batching = plan.model.max_batch_size > 0;
    for (int id : plan.response_order) {
      if (!requested_[id]) continue;
      Value* value = Find(id, u.iteration);
      if (value->present) {
        Tensor tensor = value->tensor;
        tensor.name = plan.tensor_names[id];
        const TensorSpec* config = plan.ensemble_io[id];
        const Shape& dims = config->has_reshape ? config->reshape : config->dims;
        tensor.shape = ConvertShape(dims, batching, value->batch_size, tensor.shape);
        // Triton reports the sequence from each output with bytes (an empty
        // output skips the rest of its handling): a response of empty outputs
        // carries no sequence parameters.
        const bool has_bytes = tensor.byte_size != 0;
        response->outputs.push_back(std::move(tensor));
        if (value->tagged && has_bytes) {
          ReportSequence(value->sequence, !parent_->correlation_id_str.empty(),
                         &response->parameters);
        }
      }
      Release(id, u.iteration);
    }
    responded_ = true;
    if (plan.model.decoupled) {
      outbox_.emplace_back(std::move(response), 0);
    } else {
      held_ = std::move(response);  // one response, sent with FINAL at the end
    }
  }
}

void EnsembleRun::Fail(const Status& status) {
  if (done_) return;
  done_ = true;
  // Triton counts a failed ensemble request once when it answers the error and once
  // more when it releases the request, which it does then only if no step is in
  // flight (a later step completion no longer reaches that code, so the request
  // and its second count stay behind). Kept so that the counters agree.
  const uint64_t now = NowNs();
  stats_->RecordFailure(FailureReason::kOther, now - parent_->enqueue_ns);
  if (inflight_steps_ == 0)
    stats_->RecordFailure(FailureReason::kOther, now - parent_->enqueue_ns);
  auto response = std::make_unique<InferenceResponse>();
  response->status = Status(
      status.code(), "in ensemble '" + plan_->model.name + "', " + status.message());
  outbox_.clear();
  held_.reset();
  outbox_.emplace_back(std::move(response), kResponseFlagFinal);
}

void EnsembleRun::MaybeFinish() {
  if (done_ || inflight_steps_ > 0) return;
  done_ = true;
  if (!responded_ && !plan_->model.decoupled) {
    done_ = false;
    Fail(Status(StatusCode::kInvalidArg,
                "unexpected deadlock, at least one output is not set while no more "
                "ensemble steps can be made"));
    return;
  }
  const uint64_t now = NowNs();
  const uint64_t batch = static_cast<uint64_t>(
      std::max<int64_t>(1, plan_->model.max_batch_size > 0 ? parent_->batch_size : 1));
  stats_->RecordSuccess(now - parent_->enqueue_ns, 0, compute_input_ns_,
                        compute_infer_ns_, compute_output_ns_);
  stats_->RecordExecution(batch, compute_input_ns_, compute_infer_ns_,
                          compute_output_ns_);
  // For an enclosing ensemble that uses this one as a step.
  parent_->compute_input_ns.store(compute_input_ns_, std::memory_order_relaxed);
  parent_->compute_infer_ns.store(compute_infer_ns_, std::memory_order_relaxed);
  parent_->compute_output_ns.store(compute_output_ns_, std::memory_order_relaxed);
  // The last response carries FINAL when it is still queued; a decoupled ensemble
  // may also end without data.
  if (held_) {
    outbox_.emplace_back(std::move(held_), kResponseFlagFinal);
  } else if (!outbox_.empty() && outbox_.back().second == 0) {
    outbox_.back().second = kResponseFlagFinal;
  } else {
    outbox_.emplace_back(nullptr, kResponseFlagFinal);
  }
}

void EnsembleRun::OnStepResponse(int step, InferenceRequest* step_request,
                                 const SequenceTag& sequence,
                                 std::unique_ptr<InferenceResponse> response,
                                 uint32_t flags) {
  const bool final = (flags & kResponseFlagFinal) != 0;
  std::vector<Launch> launches;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (final) {
      --inflight_steps_;
      for (auto it = inflight_.begin(); it != inflight_.end(); ++it) {
        if (it->second.lock().get() == step_request) {
          inflight_.erase(it);
          break;
        }
      }
      compute_input_ns_ +=
          step_request->compute_input_ns.load(std::memory_order_relaxed);
      compute_infer_ns_ +=
          step_request->compute_infer_ns.load(std::memory_order_relaxed);
      compute_output_ns_ +=
          step_request->compute_output_ns.load(std::memory_order_relaxed);
    }
    // The outputs' sequence: the step's, or the one its response names. Outputs the
    // response left out get the named one, or the step's id without flags (Triton's
    // quirk, visible only to steps reading them as optional inputs).
    SequenceTag named = sequence;
    bool overridden = false;
    Status read;
    if (response && !done_ && response->status.ok()) {
      read = ReadSequenceParameters(response->parameters, &named, &overridden);
    }
    if (response && !done_) {
      if (!response->status.ok()) {
        Fail(response->status);
      } else if (!read.ok()) {
        Fail(read);
      } else {
        const EnsemblePlan::Step& plan_step = plan_->steps[step];
        const int64_t batch =
            models_[step]->spec().max_batch_size > 0 ? step_request->batch_size : 0;
        std::vector<Updated> updated;
        for (const auto& output : plan_step.outputs) {
          Tensor* found = nullptr;
          for (Tensor& tensor : response->outputs) {
            if (tensor.name == output.model_tensor) {
              found = &tensor;
              break;
            }
          }
          if (found != nullptr) {
            AddValue(output.tensor, std::move(*found), true, batch,
                     overridden ? &named : &sequence, &updated);
          } else {
            AddValue(output.tensor, Tensor(), false, batch, &named, &updated);
          }
        }
        NextSteps(updated, &launches);
        CollectOutputs(updated);
      }
    }
    if (final) MaybeFinish();
  }
  // This thread is a core thread that finished the previous step, not a frontend's:
  // the next step may run on it (inline, when its model is idle and cheap), saving
  // a worker wake-up. Not while the finished step's model has requests waiting:
  // this thread is then its worker's, and under load queueing the next step keeps
  // the models pipelined and batching.
  const bool caller_waits = !launches.empty() && models_[step]->PendingCount() == 0;
  LaunchAll(std::move(launches), caller_waits);
  Flush();
}

void EnsembleRun::LaunchAll(std::vector<Launch> launches, bool caller_waits) {
  for (Launch& launch : launches) {
    if (!launch.warning.empty()) Log(LogLevel::kError, launch.warning);
    if (parent_->IsCancelled()) launch.request->MarkCancelled();
    Status status = models_[launch.step]->Enqueue(launch.request, caller_waits);
    if (status.ok()) continue;
    // Not taken: it will never answer, so account for it here.
    {
      std::lock_guard<std::mutex> lock(mu_);
      --inflight_steps_;
      for (auto it = inflight_.begin(); it != inflight_.end(); ++it) {
        if (it->second.lock() == launch.request) {
          inflight_.erase(it);
          break;
        }
      }
      Fail(status);
    }
    Flush();
  }
}

void EnsembleRun::Flush() {
  std::unique_lock<std::mutex> lock(mu_);
  if (sending_) return;  // the sending thread delivers what was queued
  sending_ = true;
  while (!outbox_.empty()) {
    auto [response, flags] = std::move(outbox_.front());
    outbox_.pop_front();
    lock.unlock();
    // A cached ensemble is never decoupled: its one data response is the answer.
    if (parent_->response_cache && response) CacheResponse(*response);
    parent_->Send(std::move(response), flags);
    lock.lock();
  }
  sending_ = false;
}

void EnsembleRun::CacheResponse(const InferenceResponse& response) {
  // A response cache miss of the ensemble as a whole (Model::Enqueue looked it up):
  // its response is cached as a model's is in BatchRunner.
  // Triton's cache keeps outputs only: a hit answers without the sequence
  // parameters this response reports.
  const uint64_t start = NowNs();
  if (response.status.ok()) {
    InferenceResponse entry;
    entry.model_name = response.model_name;
    entry.model_version = response.model_version;
    entry.id = response.id;
    entry.outputs = response.outputs;
    LogFailedInsert(parent_->cache_key,
                    parent_->response_cache->Insert(parent_->cache_key, entry));
  }
  stats_->RecordCacheMiss(parent_->cache_lookup_ns + (NowNs() - start));
}

void EnsembleRun::CancelSteps() {
  std::vector<std::pair<int, RequestPtr>> running;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto& [step, weak] : inflight_) {
      if (RequestPtr request = weak.lock()) running.emplace_back(step, request);
    }
  }
  for (auto& [step, request] : running) models_[step]->Cancel(request);
}

}  // namespace tritonx
