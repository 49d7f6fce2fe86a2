// Fuzz target: a script of concurrent calls from a grpc++ client to the C++ gRPC
// server on loopback (one server per process): unary ModelInfer, ModelStreamInfer
// streams that half-close, are cancelled after some writes, on their first answer or
// by the clock, and control RPCs (one group restricted). Payloads are raw bytes or
// ModelInferRequests built from the input, for a dynamic-batching echo model "m",
// a decoupled model "d" and two sequence-batched echo models, "s" (direct) and "o"
// (oldest), one slot each and a 5 ms idle limit, whose behaviour the first input
// value picks (fail, stall 1 ms; "d": answer 0-3 times). Checked: no crash or
// sanitizer report; every call ends within 10 s; a stream the client half-closed and
// never cancelled ends OK; no call that was neither cancelled nor timed out ends
// CANCELLED, DEADLINE_EXCEEDED or UNKNOWN; after each input, each sequence model's
// slot frees (a one-request sequence sent in process is answered within 5 s); at
// exit, LeakSanitizer finds no reactor or request left behind.
//
// Input: up to 8 calls, each an op byte, a timing byte and its payloads (Script
// below; reads past the end give zeros). Op bits 0-1: 0 or 1 a unary ModelInfer, 2
// a stream, 3 a control call; bit 2: the stream's triton_grpc_error header, or the
// control call's restricted-group header; bit 3: a header the server forwards;
// bits 3-7 of a control call: its method; bits 4-7 of a stream: 1-5 messages.
// Timing, unary: 1 a deadline of (t >> 2) * 50 us, 2 a cancel after (t >> 2) * 40
// us; stream: 1 a cancel after 1 + (t >> 2) % n writes, 2 a cancel on the first
// answer, 3 a cancel after (t >> 3) * 40 us, half-closed before it when bit 2 is
// set; control: the body's length (mod 16).
#include <google/protobuf/stubs/logging.h>
#include <grpcpp/generic/generic_stub.h>
#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/logging.h"
#include "core/model.h"
#include "core/model_registry.h"
#include "fuzz_models.h"
#include "grpc_server.h"
#include "grpc_service.pb.h"
#include "test_util.h"

using namespace tritonx;

namespace {

constexpr char kInfer[] = "/inference.GRPCInferenceService/ModelInfer";
constexpr char kStream[] = "/inference.GRPCInferenceService/ModelStreamInfer";
constexpr const char* kControlMethods[] = {
    "/inference.GRPCInferenceService/ServerLive",
    "/inference.GRPCInferenceService/ModelMetadata",
    "/inference.GRPCInferenceService/RepositoryModelLoad",  // restricted
    "/inference.GRPCInferenceService/LogSettings",
    "/grpc.health.v1.Health/Check",
    "/inference.GRPCInferenceService/NoSuchMethod",
    "/other.Service/Call",
};
constexpr char kRestrictedHeader[] = "triton-grpc-protocol-fuzz-key";

// The first FP32 value of a request's INPUT0, or 0.
float FirstValue(const InferenceRequest& request) {
  if (request.inputs.empty()) return 0.f;
  const Tensor& input = request.inputs[0];
  if (input.dtype != DataType::kFp32 || input.byte_size < sizeof(float)) return 0.f;
  float value;
  std::memcpy(&value, input.data, sizeof(value));
  return value;
}

// Echo INPUT0 as OUTPUT0; a first value below 0 fails the batch, one in [1, 2)
// stalls it 1 ms (so cancellations land while it runs).
class EchoExecutor : public Executor {
 public:
  void Execute(Batch& batch) override {
    for (const RequestPtr& request : batch.requests) {
      const float first = FirstValue(*request);
      if (first < 0.f) {
        batch.batch_status = Status(StatusCode::kInternal, "fuzz failure");
      }
      if (first >= 1.f && first < 2.f) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
    }
    if (!batch.batch_status.ok()) return;
    for (const RequestPtr& request : batch.requests) {
      batch.responses.push_back(tritonx::testing::EchoResponse(*request));
    }
  }
};

// Decoupled: a first value below 0 answers an error; otherwise min(int(value), 3)
// echoes, then a FINAL without data.
class DecoupledExecutor : public Executor {
 public:
  void Execute(Batch& batch) override {
    for (const RequestPtr& request : batch.requests) {
      const float first = FirstValue(*request);
      if (first < 0.f) {
        request->RespondError(Status(StatusCode::kInternal, "fuzz failure"));
        continue;
      }
      const int count = first < 4.f ? static_cast<int>(first) : 3;
      for (int i = 0; i < count; ++i) {
        request->Send(tritonx::testing::EchoResponse(*request), 0);
      }
      request->Send(nullptr, kResponseFlagFinal);
    }
  }
};

struct Served {
  std::vector<std::shared_ptr<Model>> models;  // m, d, s, o
  std::unique_ptr<GrpcServer> server;
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<grpc::GenericStub> stub;
};

// Started once and never destroyed: libFuzzer runs every input in this process, and
// tearing grpc down from a static destructor races its own globals at exit.
Served* Server() {
  static Served* served = [] {
    google::protobuf::SetLogHandler(nullptr);
    // Cancellations are logged (verbose) once each; thousands a second say nothing.
    SetLogSink([](LogLevel, const std::string&) {});
    auto* out = new Served;
    auto registry = std::make_shared<ModelRegistry>();
    auto add = [&](std::shared_ptr<Model> model) {
      out->models.push_back(model);
      registry->Add(std::move(model));
    };
    SchedulerConfig batching;
    batching.max_batch_size = 8;
    batching.dynamic_batching = true;
    add(std::make_shared<Model>(
        tritonx::testing::MakeSpec(8, {-1}, "m"), batching,
        std::vector<std::shared_ptr<Executor>>{std::make_shared<EchoExecutor>()}));
    ModelSpec decoupled = tritonx::testing::MakeSpec(8, {-1}, "d");
    decoupled.decoupled = true;
    SchedulerConfig plain;
    plain.max_batch_size = 8;
    add(std::make_shared<Model>(
        decoupled, plain,
        std::vector<std::shared_ptr<Executor>>{std::make_shared<DecoupledExecutor>()}));
    SchedulerConfig sequences;
    sequences.max_batch_size = 1;  // one slot: a slot never freed stops the model
    sequences.sequence.strategy = SequenceStrategy::kDirect;
    sequences.sequence.max_sequence_idle_us = 5000;  // cancelled sequences end soon
    add(std::make_shared<Model>(
        tritonx::testing::MakeSpec(1, {-1}, "s"), sequences,
        std::vector<std::shared_ptr<Executor>>{std::make_shared<EchoExecutor>()}));
    SchedulerConfig oldest;
    oldest.max_batch_size = 2;
    oldest.sequence.strategy = SequenceStrategy::kOldest;
    oldest.sequence.max_candidate_sequences = 1;  // one slot, as "s"
    oldest.sequence.max_queue_delay_us = 100;
    oldest.sequence.max_sequence_idle_us = 5000;
    add(std::make_shared<Model>(
        tritonx::testing::MakeSpec(2, {-1}, "o"), oldest,
        std::vector<std::shared_ptr<Executor>>{std::make_shared<EchoExecutor>()}));
    GrpcServerOptions options;
    options.control_threads = 2;
    options.restricted_protocols.push_back(
        {"model-repository", kRestrictedHeader, "yes"});
    options.header_forward_pattern = "^fuzz-";
    auto handler = [](const std::string& method, const std::string& request,
                      std::string* response) {
      if (request.size() % 3 == 2) {
        return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, "fuzz control refusal");
      }
      *response = method + request;
      return grpc::Status::OK;
    };
    out->server = std::make_unique<GrpcServer>(registry, handler, options);
    int port = 0;
    if (!out->server->Start("127.0.0.1", 0, &port).ok()) std::abort();
    out->channel = grpc::CreateChannel("127.0.0.1:" + std::to_string(port),
                                       grpc::InsecureChannelCredentials());
    out->stub = std::make_unique<grpc::GenericStub>(out->channel);
    return out;
  }();
  return served;
}

// Bytes of the input, read front to back; zeros once it is used up.
class Script {
 public:
  Script(const uint8_t* data, size_t size) : data_(data), size_(size) {}
  bool done() const { return at_ >= size_; }
  uint8_t Byte() { return at_ < size_ ? data_[at_++] : 0; }
  std::string Bytes(size_t count) {
    count = std::min(count, size_ - std::min(at_, size_));
    std::string out(reinterpret_cast<const char*>(data_ + at_), count);
    at_ += count;
    return out;
  }

  // A message: raw bytes (length byte first), or a ModelInferRequest built from
  // the bytes that follow (a kind byte, a shape byte, the first value, an extras
  // byte, and for model "s" a sequence byte).
  std::string Payload() {
    const uint8_t kind = Byte();
    last_model_.clear();
    if ((kind & 1) == 0) return Bytes(Byte());
    inference::ModelInferRequest request;
    constexpr const char* kModels[] = {"m", "d", "s", "unknown"};
    const char* model = kModels[(kind >> 1) & 3];
    request.set_model_name(model);
    last_model_ = model;
    if ((kind & 8) != 0) request.set_model_version((kind & 16) != 0 ? "1" : "7");
    if ((kind & 32) != 0) request.set_id(Bytes(Byte() % 8));
    const uint8_t shape = Byte();
    const int64_t batch = shape & 3;  // 0: no batch dimension
    const int64_t width = (shape >> 2) & 7;
    auto* input = request.add_inputs();
    constexpr const char* kTypes[] = {"FP32", "FP32", "INT32", "BYTES"};
    input->set_name((shape & 0x20) != 0 ? "INPUT0" : "IN");
    input->set_datatype(kTypes[(kind >> 6) & 3]);
    if (batch > 0) input->add_shape(batch);
    input->add_shape((shape & 0x40) != 0 ? -1 : width);
    // The first value picks the models' behaviour (-2 .. 5); the rest is filler.
    std::vector<float> values(static_cast<size_t>(std::max<int64_t>(batch, 1) * width));
    if (!values.empty()) values[0] = static_cast<float>(Byte() % 8) - 2.f;
    std::string raw(reinterpret_cast<const char*>(values.data()),
                    values.size() * sizeof(float));
    if ((shape & 0x80) != 0) raw.resize(Byte() % (raw.size() + 5));  // wrong size
    request.add_raw_input_contents(std::move(raw));
    const uint8_t extras = Byte();
    if ((extras & 1) != 0) request.add_outputs()->set_name("OUTPUT0");
    if ((extras & 2) != 0) request.add_outputs()->set_name("NOPE");
    if ((extras & 4) != 0) {
      (*request.mutable_parameters())["triton_enable_empty_final_response"]
          .set_bool_param(true);
    }
    if ((extras & 8) != 0) {
      (*request.mutable_parameters())["priority"].set_uint64_param(extras >> 6);
    }
    if ((extras & 16) != 0) {
      (*request.mutable_parameters())["timeout"].set_int64_param(extras >> 5);
    }
    if ((extras & 32) != 0) request.add_raw_input_contents("x");  // one too many
    if (model[0] == 's') {
      // Bits 0-1: the sequence (0: none), bit 2 START, bit 3 END, bit 4 a string id,
      // bit 5 model "o" instead.
      const uint8_t sequence = Byte();
      if ((sequence & 32) != 0) request.set_model_name(last_model_ = "o");
      auto& parameters = *request.mutable_parameters();
      if ((sequence & 3) != 0) {
        if ((sequence & 16) != 0) {
          parameters["sequence_id"].set_string_param("q" +
                                                     std::to_string(sequence & 3));
        } else {
          parameters["sequence_id"].set_uint64_param(sequence & 3);
        }
      }
      if ((sequence & 4) != 0) parameters["sequence_start"].set_bool_param(true);
      if ((sequence & 8) != 0) parameters["sequence_end"].set_bool_param(true);
    }
    return request.SerializeAsString();
  }

  // The model the last payload was built for ("" for raw bytes).
  const std::string& last_model() const { return last_model_; }

 private:
  std::string last_model_;
  const uint8_t* data_;
  size_t size_;
  size_t at_ = 0;
};

grpc::ByteBuffer ToBuffer(const std::string& bytes) {
  grpc::Slice slice(bytes);
  return grpc::ByteBuffer(&slice, 1);
}

// One call of the script. Finished from grpc's client threads; waited for, and
// cancelled on schedule, from the fuzzing thread.
struct Call {
  grpc::ClientContext context;
  std::mutex mu;
  std::condition_variable finished_cv;
  bool finished = false;
  grpc::Status status;
  bool cancelled = false;  // TryCancel was called, or may be
  bool timed = false;      // a short deadline was set
  // Its request goes to a sequence model: cancelling a queued request of a sequence
  // cancels every queued request of it, as in Triton, whichever call sent them.
  bool to_sequence = false;
  int cancel_after_us = -1;
  bool must_end_ok = false;

  void Finish(const grpc::Status& final_status) {
    std::lock_guard<std::mutex> lock(mu);
    status = final_status;
    finished = true;
    finished_cv.notify_all();
  }
  bool Wait(std::chrono::steady_clock::time_point deadline) {
    std::unique_lock<std::mutex> lock(mu);
    return finished_cv.wait_until(lock, deadline, [&] { return finished; });
  }
  void Cancel() {
    {
      std::lock_guard<std::mutex> lock(mu);
      cancelled = true;
    }
    context.TryCancel();
  }
};

// A unary call of `method` with a raw request.
struct UnaryCall : Call {
  std::string method;
  grpc::ByteBuffer request;
  grpc::ByteBuffer response;

  void Start(grpc::GenericStub* stub) {
    stub->UnaryCall(&context, method, grpc::StubOptions(), &request, &response,
                    [this](grpc::Status s) { Finish(s); });
  }
};

// A ModelStreamInfer call: writes its messages one after another, reads every
// answer, then half-closes, or is cancelled after `cancel_after_writes` writes or on
// its first answer.
class StreamCall : public Call,
                   public grpc::ClientBidiReactor<grpc::ByteBuffer, grpc::ByteBuffer> {
 public:
  std::vector<std::string> messages;
  int cancel_after_writes = -1;
  bool cancel_on_answer = false;
  bool half_close = true;

  void Start(grpc::GenericStub* stub) {
    stub->PrepareBidiStreamingCall(&context, kStream, grpc::StubOptions(), this);
    StartRead(&reading_);
    WriteNext();
    StartCall();
  }
  void OnWriteDone(bool ok) override {
    ++written_;
    if (!ok) return;  // the stream is over; reads see it end
    if (written_ == cancel_after_writes) {
      Cancel();
      return;
    }
    WriteNext();
  }
  void OnReadDone(bool ok) override {
    if (!ok) return;
    answers_.fetch_add(1);
    if (cancel_on_answer) Cancel();
    StartRead(&reading_);
  }
  void OnDone(const grpc::Status& s) override { Finish(s); }

 private:
  void WriteNext() {
    if (static_cast<size_t>(written_) < messages.size()) {
      writing_ = ToBuffer(messages[static_cast<size_t>(written_)]);
      StartWrite(&writing_);
    } else if (half_close) {
      StartWritesDone();
    }
  }
  grpc::ByteBuffer reading_;
  grpc::ByteBuffer writing_;
  int written_ = 0;

 public:
  // What the stream did, for a report of one that never ended.
  std::atomic<int> answers_{0};
  int written() const { return written_; }
};

const char* CodeName(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
      return "OK";
    case grpc::StatusCode::CANCELLED:
      return "CANCELLED";
    case grpc::StatusCode::UNKNOWN:
      return "UNKNOWN";
    case grpc::StatusCode::INVALID_ARGUMENT:
      return "INVALID_ARGUMENT";
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::NOT_FOUND:
      return "NOT_FOUND";
    case grpc::StatusCode::UNAVAILABLE:
      return "UNAVAILABLE";
    case grpc::StatusCode::INTERNAL:
      return "INTERNAL";
    case grpc::StatusCode::UNIMPLEMENTED:
      return "UNIMPLEMENTED";
    default:
      return "other";
  }
}

void TraceEnd(const char* kind, const Call& call) {
  fuzz::Trace(kind, call.status.ok() ? Status::Ok()
                                     : Status(StatusCode::kInternal,
                                              CodeName(call.status.error_code())));
}

// Where every model stands, for a report of a call that never ended.
void PrintModels() {
  for (const auto& model : Server()->models) {
    std::fprintf(stderr, "model %s: %zu pending, %zu in flight\n",
                 model->spec().name.c_str(), model->PendingCount(),
                 model->InflightCount());
  }
}

// A sequence of one request sent in process to sequence model `model`: answered
// once its slot is free (its sequences idle 5 ms at most), unless a sequence kept it
// for good.
bool SequenceSlotFrees(Model& model) {
  auto request = tritonx::testing::MakeRequest("probe", 1, 4, 0.f);
  request->correlation_id_str = "probe";
  request->flags = kFlagStart | kFlagEnd;
  auto answered = std::make_shared<std::promise<void>>();
  std::future<void> done = answered->get_future();
  request->SetResponseCallback(
      [answered](std::unique_ptr<InferenceResponse>) { answered->set_value(); });
  if (!model.Enqueue(request).ok()) std::abort();
  return done.wait_for(std::chrono::seconds(5)) == std::future_status::ready;
}

void Fail(const char* what, const Call& call) {
  std::fprintf(stderr, "%s: %s \"%s\"\n", what, CodeName(call.status.error_code()),
               call.status.error_message().c_str());
  __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  Served* served = Server();
  Script script(data, size);
  std::vector<std::unique_ptr<UnaryCall>> calls;
  std::vector<std::unique_ptr<StreamCall>> streams;
  while (!script.done() && calls.size() + streams.size() < 8) {
    const uint8_t op = script.Byte();
    const uint8_t timing = script.Byte();
    if ((op & 3) == 2) {  // a stream
      auto stream = std::make_unique<StreamCall>();
      if ((op & 4) != 0) stream->context.AddMetadata("triton_grpc_error", "true");
      if ((op & 8) != 0) stream->context.AddMetadata("fuzz-forwarded", "v");
      const int count = 1 + (op >> 4) % 5;
      for (int i = 0; i < count; ++i) stream->messages.push_back(script.Payload());
      switch (timing & 3) {
        case 1:
          stream->cancel_after_writes = 1 + (timing >> 2) % count;
          break;
        case 2:
          stream->cancel_on_answer = true;
          break;
        case 3:
          stream->half_close = (timing & 4) != 0;
          stream->cancel_after_us = (timing >> 3) * 40;
          break;
        default:
          break;
      }
      stream->cancelled = stream->cancel_after_writes > 0 || stream->cancel_on_answer ||
                          stream->cancel_after_us >= 0;
      stream->must_end_ok = stream->half_close && !stream->cancelled && (op & 4) == 0;
      streams.push_back(std::move(stream));
      continue;
    }
    auto unary = std::make_unique<UnaryCall>();
    if ((op & 3) == 3) {  // a control call
      unary->method = kControlMethods[(op >> 3) % 7];
      unary->request = ToBuffer(script.Bytes(timing % 16));
      if ((op & 4) != 0) unary->context.AddMetadata(kRestrictedHeader, "yes");
      calls.push_back(std::move(unary));
      continue;
    }
    unary->method = kInfer;
    unary->request = ToBuffer(script.Payload());
    unary->to_sequence = script.last_model() == "s" || script.last_model() == "o";
    if ((op & 8) != 0) unary->context.AddMetadata("fuzz-forwarded", "v");
    switch (timing & 3) {
      case 1:
        unary->timed = true;
        unary->context.set_deadline(std::chrono::system_clock::now() +
                                    std::chrono::microseconds((timing >> 2) * 50));
        break;
      case 2:
        unary->cancel_after_us = (timing >> 2) * 40;
        unary->cancelled = true;
        break;
      default:
        break;
    }
    calls.push_back(std::move(unary));
  }
  // Start everything, then cancel on schedule.
  const auto started = std::chrono::steady_clock::now();
  for (auto& call : calls) call->Start(served->stub.get());
  for (auto& stream : streams) stream->Start(served->stub.get());
  std::vector<Call*> scheduled;
  for (auto& call : calls) {
    if (call->cancel_after_us >= 0) scheduled.push_back(call.get());
  }
  for (auto& stream : streams) {
    if (stream->cancel_after_us >= 0) scheduled.push_back(stream.get());
  }
  std::sort(scheduled.begin(), scheduled.end(), [](const Call* a, const Call* b) {
    return a->cancel_after_us < b->cancel_after_us;
  });
  for (Call* call : scheduled) {
    std::this_thread::sleep_until(started +
                                  std::chrono::microseconds(call->cancel_after_us));
    call->Cancel();
  }
  // Whether some call may cancel requests: its own (client cancel, deadline) or, in
  // triton_grpc_error mode, the others of its stream.
  bool any_cancel = false;
  for (auto& call : calls) any_cancel = any_cancel || call->cancelled || call->timed;
  for (auto& stream : streams) {
    any_cancel = any_cancel || stream->cancelled || !stream->must_end_ok;
  }
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  for (auto& call : calls) {
    if (!call->Wait(deadline)) Fail("unary call not ended within 10 s", *call);
    TraceEnd("unary", *call);
    const grpc::StatusCode code = call->status.error_code();
    const bool cancelled_by_another = call->to_sequence && any_cancel;
    if (!call->cancelled && !call->timed &&
        !(code == grpc::StatusCode::CANCELLED && cancelled_by_another) &&
        (code == grpc::StatusCode::CANCELLED ||
         code == grpc::StatusCode::DEADLINE_EXCEEDED ||
         code == grpc::StatusCode::UNKNOWN)) {
      Fail("unary call ended so without being cancelled", *call);
    }
  }
  for (auto& stream : streams) {
    if (!stream->Wait(deadline)) {
      // A stream neither half-closed nor cancelled would wait for ever; the
      // script never makes one.
      std::fprintf(stderr, "stream: %zu messages, %d written, %d answers\n",
                   stream->messages.size(), stream->written(), stream->answers_.load());
      PrintModels();
      Fail("stream not ended within 10 s", *stream);
    }
    TraceEnd("stream", *stream);
    if (stream->must_end_ok && !stream->status.ok()) {
      Fail("half-closed stream did not end OK", *stream);
    }
  }
  for (size_t sequence_model : {2, 3}) {
    Model& model = *Server()->models[sequence_model];
    if (!SequenceSlotFrees(model)) {
      std::fprintf(stderr, "a sequence kept the slot of model %s\n",
                   model.spec().name.c_str());
      PrintModels();
      __builtin_trap();
    }
  }
  return 0;
}
