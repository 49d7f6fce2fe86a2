// Model: one served model version (spec + scheduler + instances) and the executor that
// runs Python backend instances on the core's worker threads. The settings types a
// Model is built from are bound in bind_model_settings.cpp.
#include <condition_variable>
#include <future>
#include <mutex>

#include "core/load_generator.h"
#include "core/model.h"
#include "core/server_context.h"
#include "pybind_common.h"

namespace tritonx::bindings {
namespace {

// Leaked on purpose (see ErrorsModule in pybind_common.cpp).
// _native._call_many: runs [(on_response, value, final), ...] on the event loop.
py::object* call_many = nullptr;

// Future completions produced while an executor delivers a batch. Each
// call_soon_threadsafe wakes the event loop (a pipe write and a loop iteration), so
// a batch's completions for one loop are handed over in a single call.
struct PendingCompletion {
  py::object call_soon_threadsafe;
  py::object on_response;
  py::object value;
  bool final;
};
thread_local std::vector<PendingCompletion>* collecting_completions = nullptr;

// GIL held. Hands every collected completion to its loop, one call per loop.
void FlushCompletions(std::vector<PendingCompletion>& pending) {
  size_t start = 0;
  while (start < pending.size()) {
    size_t end = start + 1;
    while (end < pending.size() &&
           pending[end].call_soon_threadsafe.is(pending[start].call_soon_threadsafe)) {
      ++end;
    }
    try {
      if (end - start == 1) {
        PendingCompletion& one = pending[start];
        one.call_soon_threadsafe(one.on_response, one.value, py::bool_(one.final));
      } else {
        py::list items(end - start);
        for (size_t i = start; i < end; ++i) {
          items[i - start] = py::make_tuple(pending[i].on_response, pending[i].value,
                                            py::bool_(pending[i].final));
        }
        pending[start].call_soon_threadsafe(*call_many, items);
      }
    } catch (py::error_already_set& err) {
      // A closed loop (RuntimeError): nobody waits for these answers any more.
      if (!err.matches(PyExc_RuntimeError)) {
        err.discard_as_unraisable("tritonx: delivering responses");
      }
    }
    start = end;
  }
  pending.clear();
}

// Runs a Python backend instance (see the Instance protocol in docs/architecture.md) on
// the core worker thread that owns it. The GIL is held only around the Python call and
// the conversions next to it.
class PyExecutor : public Executor {
 public:
  explicit PyExecutor(const py::object& instance) {
    gather_ = py::bool_(py::getattr(instance, "gather_inputs", py::bool_(false)));
    staged_ = py::bool_(py::getattr(instance, "staged_inputs", py::bool_(false)));
    // An instance may refuse to run on its callers' threads (one of them is the
    // server's event loop, where e.g. an async execute cannot run its own loop).
    allows_inline_ = py::bool_(py::getattr(instance, "allow_inline", py::bool_(true)));
    py::object method = instance.attr(gather_ ? "execute_batch" : "execute");
    method_ = method.ptr();
    method_owner_ = MakePyOwner(method);
    instance_owner_ = MakePyOwner(instance);
  }

  bool WantsGatheredInputs() const override { return gather_; }
  bool WantsStagedInputs() const override { return staged_; }
  // Any thread may run a Python instance (Execute takes the GIL itself) unless it says
  // otherwise; whether it actually runs inline is the scheduler's call, from measured
  // execution times.
  bool AllowsInline() const override { return allows_inline_; }

  void Execute(Batch& batch) override {
    GilAcquire gil;
    ReleasePendingPyRefs();
    try {
      const size_t count = batch.requests.size();
      py::list requests(count);
      for (size_t i = 0; i < count; ++i) {
        requests[i] =
            py::cast(std::make_shared<PyRequest>(PyRequest{batch.requests[i]}));
      }
      if (gather_) {
        ExecuteGathered(batch, requests);
      } else {
        ExecutePerRequest(batch, requests);
      }
    } catch (py::error_already_set& err) {
      batch.batch_status = StatusFromErrorAlreadySet(err);
    } catch (const std::exception& err) {
      batch.batch_status = Status(StatusCode::kInternal, err.what());
    }
    // Answer Python futures now, while this thread holds the GIL: otherwise each
    // response callback would have to win the GIL back from the event loop.
    for (const auto& request : batch.requests) {
      if (request->deliver_in_executor) {
        std::vector<PendingCompletion> pending;
        collecting_completions = &pending;
        batch.finish();
        collecting_completions = nullptr;
        FlushCompletions(pending);
        break;
      }
    }
  }

 private:
  void ExecutePerRequest(Batch& batch, const py::list& requests) {
    batch.compute_input_end_ns = NowNs();
    py::object result = py::reinterpret_borrow<py::object>(method_)(requests);
    batch.compute_infer_end_ns = NowNs();
    const size_t count = batch.requests.size();
    // A decoupled model answers through its requests' senders: nothing to return.
    if (result.is_none() && count > 0 && batch.requests[0]->spec &&
        batch.requests[0]->spec->decoupled) {
      return;
    }
    if (!py::isinstance<py::sequence>(result) || py::len(result) != count) {
      batch.batch_status = Status(
          StatusCode::kInternal,
          "backend returned " +
              (py::isinstance<py::sequence>(result) ? std::to_string(py::len(result))
                                                    : std::string("no list of")) +
              " responses for " + std::to_string(count) + " requests");
      return;
    }
    py::sequence items = py::reinterpret_borrow<py::sequence>(result);
    batch.responses.resize(count);
    for (size_t i = 0; i < count; ++i) {
      // None: no response now (a rescheduled request of an iterative sequence;
      // anything else without a response fails in BatchRunner).
      if (!items[i].is_none()) batch.responses[i] = ResponseFromPy(items[i]);
    }
  }

  void ExecuteGathered(Batch& batch, const py::list& requests) {
    py::dict inputs;
    for (const Tensor& tensor : batch.gathered_inputs) {
      py::object wrapper = py::cast(std::make_shared<PyTensor>(PyTensor{tensor}));
      inputs[py::str(tensor.name)] = TensorToNumpy(wrapper);
    }
    batch.compute_input_end_ns = NowNs();
    py::object result = py::reinterpret_borrow<py::object>(method_)(inputs, requests);
    batch.compute_infer_end_ns = NowNs();
    for (const py::handle pair : result.attr("items")()) {
      py::tuple kv = py::reinterpret_borrow<py::tuple>(pair);
      Tensor tensor;
      Status status = TensorFromPy(kv[0].cast<std::string>(), kv[1], &tensor);
      if (!status.ok()) {
        batch.batch_status = status;
        return;
      }
      batch.gathered_outputs.push_back(std::move(tensor));
    }
  }

  bool gather_ = false;
  bool staged_ = false;
  bool allows_inline_ = true;
  PyObject* method_ = nullptr;  // borrowed from method_owner_
  std::shared_ptr<const void> method_owner_;
  std::shared_ptr<const void> instance_owner_;
};

// Python handle of a Model. Dropping it releases the GIL first: if it was the last
// reference, ~Model joins worker threads that may be waiting for the GIL.
struct PyModel {
  std::shared_ptr<Model> model;
  ~PyModel() {
    if (!model) return;
    if (PyGILState_Check()) {
      py::gil_scoped_release release;
      model.reset();
    } else {
      model.reset();
    }
  }
};

// What a submitted request's responses go to: `on_response(value, final)`, called
// on the event loop of `call_soon_threadsafe` when there is one (batched per loop
// while an executor delivers a batch), else on the delivering thread.
struct ResponseTarget {
  PyObject* on_response;
  PyObject* call_soon_threadsafe;  // null: call directly
  std::shared_ptr<const void> owners[2];
};

// Every response of the request, then FINAL: on_response(value, final) with value a
// Response, an error (TritonXError) or None (a FINAL without data). The GIL is taken
// per call; C++ threads never touch asyncio objects (call_soon_threadsafe does).
void Submit(PyModel& self, PyRequest& request, const py::object& on_response,
            const py::object& loop) {
  ReleasePendingPyRefs();
  if (!PyCallable_Check(on_response.ptr())) {
    throw py::type_error("on_response must be callable");
  }
  auto target = std::make_shared<ResponseTarget>();
  target->on_response = on_response.ptr();
  target->owners[0] = MakePyOwner(on_response);
  target->call_soon_threadsafe = nullptr;
  if (!loop.is_none()) {
    py::object call = loop.attr("call_soon_threadsafe");
    target->call_soon_threadsafe = call.ptr();
    target->owners[1] = MakePyOwner(call);
  }
  request.request->SetResponseStream(
      [target](std::unique_ptr<InferenceResponse> response, uint32_t flags) mutable {
        GilAcquire gil;
        const bool final = (flags & kResponseFlagFinal) != 0;
        try {
          py::object value = py::none();
          if (response && response->status.ok()) {
            std::shared_ptr<InferenceResponse> shared(std::move(response));
            value = py::cast(std::make_shared<PyResponse>(PyResponse{shared}));
          } else if (response) {
            value = MakeError(response->status);
          }
          py::handle fn(target->on_response);
          if (target->call_soon_threadsafe == nullptr) {
            fn(value, py::bool_(final));
          } else if (collecting_completions != nullptr) {
            collecting_completions->push_back(
                {py::reinterpret_borrow<py::object>(target->call_soon_threadsafe),
                 py::reinterpret_borrow<py::object>(fn), std::move(value), final});
          } else {
            py::handle(target->call_soon_threadsafe)(fn, value, py::bool_(final));
          }
        } catch (py::error_already_set& err) {
          // A closed loop (RuntimeError) means nobody waits for this answer any
          // more: dropping it is expected. Anything else is a bug worth a report.
          if (!err.matches(PyExc_RuntimeError)) {
            err.discard_as_unraisable("tritonx: delivering a response");
          }
        }
        if (final) target.reset();  // drop the Python references while the GIL is held
      });
  // Answered from inside Execute while the executor holds the GIL (see PyExecutor).
  request.request->deliver_in_executor = true;
  // Enqueue does not block (a mutex and a notify), so the GIL stays held.
  ThrowIfError(self.model->Enqueue(request.request));
}

// A backend's response sender: one response (a mapping, an exception, or None for
// a final flag alone) for `request`, possibly long after its execute returned.
void SendResponse(PyRequest& request, const py::object& item, bool final) {
  std::unique_ptr<InferenceResponse> response;
  if (!item.is_none()) response = ResponseFromPy(item);
  ThrowIfError(
      request.request->Send(std::move(response), final ? kResponseFlagFinal : 0));
}

// `errors_as_values`: an error the request is answered with (the model's, a queue
// timeout, a cancellation) is returned as the exception object instead of raised,
// so a caller can tell it from a request that was never taken (raised).
py::object Infer(PyModel& self, PyRequest& request, bool errors_as_values) {
  auto promise = std::make_shared<std::promise<std::unique_ptr<InferenceResponse>>>();
  std::future<std::unique_ptr<InferenceResponse>> done = promise->get_future();
  request.request->SetResponseCallback(
      [promise](std::unique_ptr<InferenceResponse> response) {
        promise->set_value(std::move(response));
      });
  // This thread only waits for the answer, so the request may run on it.
  ThrowIfError(self.model->Enqueue(request.request, /*caller_waits=*/true));
  std::unique_ptr<InferenceResponse> response;
  {
    // Waiting can take as long as the model runs; Python backends need the GIL to run.
    py::gil_scoped_release release;
    response = done.get();
  }
  if (errors_as_values && !response->status.ok()) return MakeError(response->status);
  ThrowIfError(response->status);
  return py::cast(std::make_shared<PyResponse>(PyResponse{std::move(response)}));
}

// Model warmup: runs `requests` as one batch on instance `instance` and waits for
// every one to be answered with FINAL; per request, the first error it was answered
// with (TritonXError) or None. Raises what the core refuses (nothing then ran).
// `override_inputs`: (name, datatype, shape, data) added to every request unchecked.
py::list ExecuteOn(PyModel& self, int instance, const py::sequence& items,
                   const py::sequence& override_inputs) {
  std::vector<Tensor> overrides;
  for (const py::handle item : override_inputs) overrides.push_back(InputFromPy(item));
  struct Answers {
    std::mutex mu;
    std::condition_variable done;
    size_t open = 0;
    std::vector<Status> first_error;
  };
  auto answers = std::make_shared<Answers>();
  std::vector<RequestPtr> requests;
  for (const py::handle item : items)
    requests.push_back(item.cast<PyRequest&>().request);
  answers->open = requests.size();
  answers->first_error.resize(requests.size());
  for (size_t i = 0; i < requests.size(); ++i) {
    // Every response, decoupled or not; collected without Python objects, so the
    // callbacks never need the GIL.
    requests[i]->SetResponseStream(
        [answers, i](std::unique_ptr<InferenceResponse> response, uint32_t flags) {
          std::lock_guard<std::mutex> lock(answers->mu);
          if (response && !response->status.ok() && answers->first_error[i].ok()) {
            answers->first_error[i] = response->status;
          }
          if ((flags & kResponseFlagFinal) != 0 && --answers->open == 0) {
            answers->done.notify_all();
          }
        });
  }
  Status status;
  {
    // The instances' workers may run Python (and need the GIL) for as long as the
    // model takes.
    py::gil_scoped_release release;
    status = self.model->ExecuteOn(instance, requests, overrides);
    if (status.ok()) {
      std::unique_lock<std::mutex> lock(answers->mu);
      answers->done.wait(lock, [&] { return answers->open == 0; });
    }
  }
  if (!status.ok()) {
    for (auto& request : requests) request->SetResponseStream(nullptr);
    ThrowIfError(status);
  }
  py::list out;
  for (const Status& error : answers->first_error) {
    out.append(error.ok() ? py::none() : MakeError(error));
  }
  return out;
}

// Registers the instances with the server's rate limiter (when it is on): entry i of
// `limits` is instance i's rate_limiter block; missing entries need no resources
// but still take turns by priority. Raises Triton's error when the resource counts
// cannot schedule them.
void AttachRateLimits(const ServerContext& context,
                      const std::vector<InstanceRateLimit>& limits,
                      std::vector<std::shared_ptr<Executor>>& executors) {
  std::vector<InstanceRateLimit> configs(executors.size());
  for (size_t i = 0; i < configs.size() && i < limits.size(); ++i) {
    configs[i] = limits[i];
  }
  std::vector<std::shared_ptr<RateLimiter::Slot>> slots;
  ThrowIfError(context.rate_limiter()->Register(configs, &slots));
  for (size_t i = 0; i < slots.size(); ++i) executors[i]->rate_limit = slots[i];
}

// What the core runs for each Python instance object: its own C++ executor when it
// brings one (stub processes, bind_stub.cpp), else a PyExecutor calling into it.
std::vector<std::shared_ptr<Executor>> ExecutorsOf(const py::sequence& instances) {
  std::vector<std::shared_ptr<Executor>> executors;
  for (const py::handle instance : instances) {
    py::object native = py::getattr(instance, "native_executor", py::none());
    if (!native.is_none()) {
      executors.push_back(NativeExecutorOf(native));
      continue;
    }
    executors.push_back(
        std::make_shared<PyExecutor>(py::reinterpret_borrow<py::object>(instance)));
  }
  return executors;
}

void UpdateInstances(PyModel& self, const py::sequence& added,
                     const std::vector<int>& retired,
                     const std::vector<InstanceRateLimit>& rate_limits,
                     std::shared_ptr<ServerContext> context, bool hold_added) {
  std::vector<std::shared_ptr<Executor>> executors = ExecutorsOf(added);
  if (context) AttachRateLimits(*context, rate_limits, executors);
  py::gil_scoped_release release;  // joins the threads of workers retired before
  ThrowIfError(self.model->UpdateInstances(std::move(executors), retired, hold_added));
}

py::tuple DurationPair(const Duration& d) { return py::make_tuple(d.count, d.ns); }

py::dict Statistics(const PyModel& self) {
  StatsSnapshot s = self.model->Statistics();
  py::dict out;
  out["inference_count"] = s.inference_count;
  out["execution_count"] = s.execution_count;
  out["last_inference"] = s.last_inference_ms;
  out["success"] = DurationPair(s.success);
  out["fail"] = DurationPair(s.fail);
  out["queue"] = DurationPair(s.queue);
  out["compute_input"] = DurationPair(s.compute_input);
  out["compute_infer"] = DurationPair(s.compute_infer);
  out["compute_output"] = DurationPair(s.compute_output);
  out["cache_hit"] = DurationPair(s.cache_hit);
  out["cache_miss"] = DurationPair(s.cache_miss);
  py::dict failures;
  failures["REJECTED"] = s.failures[0];
  failures["CANCELED"] = s.failures[1];
  failures["BACKEND"] = s.failures[2];
  failures["OTHER"] = s.failures[3];
  out["failures"] = failures;
  py::dict batches;
  for (const auto& [size, b] : s.batch_stats) {
    batches[py::int_(size)] = py::make_tuple(b.count, b.compute_input_ns,
                                             b.compute_infer_ns, b.compute_output_ns);
  }
  out["batch_stats"] = batches;
  py::dict responses;  // decoupled models only (Triton's response_stats)
  for (const auto& [index, r] : s.response_stats) {
    py::dict entry;
    entry["compute_infer"] = DurationPair(r.compute_infer);
    entry["compute_output"] = DurationPair(r.compute_output);
    entry["success"] = DurationPair(r.success);
    entry["fail"] = DurationPair(r.fail);
    entry["empty_response"] = DurationPair(r.empty_response);
    entry["cancel"] = DurationPair(r.cancel);
    responses[py::int_(index)] = entry;
  }
  out["response_stats"] = responses;
  out["pending"] = self.model->PendingCount();
  return out;
}

// Triton's summary families by LatencyKind: (count, sum in µs, quantile values in
// the configured order, NaN for an empty window); None when the server keeps none.
py::object LatencySummaries(const PyModel& self) {
  static constexpr const char* kNames[kLatencyKinds] = {
      "request",        "queue",     "compute_input", "compute_infer",
      "compute_output", "cache_hit", "cache_miss"};
  std::vector<SummarySnapshot> summaries;
  {
    // Copies and sorts up to a window of values per kind: no Python objects.
    py::gil_scoped_release release;
    summaries = self.model->LatencySummaries();
  }
  if (summaries.empty()) return py::none();
  py::dict out;
  for (size_t i = 0; i < summaries.size() && i < kLatencyKinds; ++i) {
    out[kNames[i]] = py::make_tuple(summaries[i].count, summaries[i].sum,
                                    py::cast(summaries[i].quantiles));
  }
  return out;
}

}  // namespace

std::shared_ptr<Model> ModelOf(const py::handle& obj) {
  return obj.cast<PyModel&>().model;
}

py::object WrapModel(std::shared_ptr<Model> model) {
  return py::cast(std::make_shared<PyModel>(PyModel{std::move(model)}));
}

void RegisterModel(py::module_& m) {
  py::class_<PyModel, std::shared_ptr<PyModel>>(m, "Model",
                                                "One served model version in the core")
      .def(py::init([](const ModelSpec& spec, const SchedulerConfig& config,
                       const py::sequence& instances,
                       std::shared_ptr<ServerContext> context,
                       const std::vector<InstanceRateLimit>& rate_limits) {
             std::vector<std::shared_ptr<Executor>> executors = ExecutorsOf(instances);
             if (context) AttachRateLimits(*context, rate_limits, executors);
             std::shared_ptr<Model> model;
             {
               // Creating the model may probe CUDA and start threads; nothing here
               // needs Python, and holding the GIL could deadlock with a parallel load.
               py::gil_scoped_release release;
               model = std::make_shared<Model>(spec, config, std::move(executors),
                                               context.get());
             }
             return std::make_shared<PyModel>(PyModel{std::move(model)});
           }),
           py::arg("spec"), py::arg("config"), py::arg("instances"),
           py::arg("context") = nullptr,
           py::arg("rate_limits") = std::vector<InstanceRateLimit>())
      .def_property_readonly("name",
                             [](const PyModel& m) { return m.model->spec().name; })
      .def_property_readonly("version",
                             [](const PyModel& m) { return m.model->spec().version; })
      .def_property_readonly(
          "max_batch_size",
          [](const PyModel& m) { return m.model->spec().max_batch_size; })
      .def_property_readonly("spec", [](const PyModel& m) { return m.model->spec(); })
      .def_property_readonly("decoupled",
                             [](const PyModel& m) { return m.model->spec().decoupled; })
      // Some trace setting is on (one atomic load): the Python HTTP engine then
      // takes the receive times and the traceparent header.
      .def_property_readonly("tracing",
                             [](const PyModel& m) { return m.model->Tracing(); })
      // Identity of the core model: handles from ModelRegistry.find are new Python
      // objects each time, so caches keyed on a served model compare this instead.
      .def_property_readonly(
          "core_id",
          [](const PyModel& m) { return reinterpret_cast<uintptr_t>(m.model.get()); })
      .def("submit", &Submit, py::arg("request"), py::arg("on_response"),
           py::arg("loop") = py::none())
      .def("infer", &Infer, py::arg("request"), py::arg("errors_as_values") = false)
      .def("execute_on", &ExecuteOn, py::arg("instance"), py::arg("requests"),
           py::arg("override_inputs") = py::tuple())
      .def(
          "validate",
          [](PyModel& self, PyRequest& request) {
            ThrowIfError(ValidateRequest(self.model->spec(), request.request.get()));
          },
          py::arg("request"),
          "Raises the refusal Enqueue would give the request (its checks only: "
          "nothing runs; warmup checks each sample's requests when preparing it).")
      .def("update_instances", &UpdateInstances, py::arg("added"), py::arg("retired"),
           py::arg("rate_limits") = std::vector<InstanceRateLimit>(),
           py::arg("context") = nullptr, py::arg("hold_added") = false,
           "Adds instances (numbered after every instance so far) and retires the "
           "numbered ones, which finish what they hold and leave (wait_retired). "
           "hold_added: the added ones run only execute_on batches until released.")
      .def(
          "release_instances",
          [](PyModel& self, const std::vector<int>& instances) {
            ThrowIfError(self.model->ReleaseInstances(instances));
          },
          py::arg("instances"), "Lets held instances take the model's work.")
      .def(
          "wait_retired",
          [](PyModel& self, const std::vector<int>& instances, double timeout_s) {
            py::gil_scoped_release release;  // their last batches may need the GIL
            return self.model->WaitRetired(
                instances, std::chrono::nanoseconds(
                               static_cast<int64_t>(std::max(timeout_s, 0.0) * 1e9)));
          },
          py::arg("instances"), py::arg("timeout_s"),
          "Waits until the retired instances run nothing more; True when all left.")
      .def("cancel",
           [](PyModel& self, PyRequest& request) {
             return self.model->Cancel(request.request);
           })
      .def("statistics", &Statistics)
      .def("latency_summaries", &LatencySummaries)
      .def("pending_count", [](const PyModel& m) { return m.model->PendingCount(); })
      .def("inflight_count", [](const PyModel& m) { return m.model->InflightCount(); })
      .def(
          "wait_idle",
          [](PyModel& self, double timeout_s) {
            // Blocks until requests finish, which may need the GIL.
            py::gil_scoped_release release;
            return self.model->WaitIdle(std::chrono::nanoseconds(
                static_cast<int64_t>(std::max(timeout_s, 0.0) * 1e9)));
          },
          py::arg("timeout_s"),
          "Waits until no request is in flight or timeout_s passes; True when idle.")
      .def(
          "stop",
          [](PyModel& self, bool drain) {
            // Stop joins worker threads that may be running Python and need the GIL.
            py::gil_scoped_release release;
            self.model->Stop(drain);
          },
          py::arg("drain") = true);

  m.def("_set_call_many",
        [](py::object fn) { call_many = new py::object(std::move(fn)); });
  m.def("_release_pending_refs", &ReleasePendingPyRefs);
  m.def("_pump_queued_logs", &PumpQueuedLogs, py::arg("timeout_s"));
  m.def("_wake_log_pump", &WakeLogPump);
  m.def("send_response", &SendResponse, py::arg("request"), py::arg("response"),
        py::arg("final"),
        "Sends one response for `request` through its sender (decoupled models): a "
        "mapping of outputs, an exception, or None with final=True.");
  m.def(
      "generate_load",
      [](PyModel& model, const py::sequence& inputs, int concurrency, double seconds) {
        std::vector<Tensor> tensors;
        for (const py::handle item : inputs) tensors.push_back(InputFromPy(item));
        LoadResult result;
        {
          // The clients are C++ threads: the point is that they never need the GIL.
          py::gil_scoped_release release;
          result = GenerateLoad(*model.model, tensors, concurrency, seconds);
        }
        py::dict out;
        out["completed"] = result.completed;
        out["failed"] = result.failed;
        out["seconds"] = result.seconds;
        return out;
      },
      py::arg("model"), py::arg("inputs"), py::arg("concurrency"), py::arg("seconds"),
      "Closed-loop load from C++ client threads (benchmarks): `concurrency` requests "
      "in flight for `seconds`, each with `inputs` (name, datatype, shape, buffer).");
}

}  // namespace tritonx::bindings
