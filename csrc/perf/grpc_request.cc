// Request templates and channels shared by tritonx-perf's gRPC clients
// (grpc_connection.cc, grpc_async.cc).
#include "grpc_request.h"

#include <algorithm>
#include <map>
#include <mutex>
#include <string>

#include "grpc_process.h"

namespace tritonx::perf {
namespace {

void SetShm(google::protobuf::Map<std::string, inference::InferParameter>* params,
            const std::string& region, uint64_t offset, uint64_t size) {
  (*params)["shared_memory_region"].set_string_param(region);
  (*params)["shared_memory_offset"].set_int64_param(static_cast<int64_t>(offset));
  (*params)["shared_memory_byte_size"].set_int64_param(static_cast<int64_t>(size));
}

// Up to kChannelShare connections share one channel (one HTTP/2 connection), as
// tritonclient's cached channels do for perf_analyzer; more get a new one.
constexpr int kChannelShare = 6;

std::shared_ptr<grpc::ChannelCredentials> Credentials(const GrpcTls& tls) {
  if (!tls.use_ssl) return grpc::InsecureChannelCredentials();
  grpc::SslCredentialsOptions options;
  options.pem_root_certs = tls.root_certs;
  options.pem_private_key = tls.private_key;
  options.pem_cert_chain = tls.cert_chain;
  return grpc::SslCredentials(options);
}

}  // namespace

inference::ModelInferRequest BuildRequest(const Target& target,
                                          const std::vector<InputData>& inputs) {
  inference::ModelInferRequest request;
  request.set_model_name(target.model);
  request.set_model_version(target.version);
  for (const InputData& in : inputs) {
    auto* tensor = request.add_inputs();
    tensor->set_name(in.name);
    tensor->set_datatype(in.datatype);
    for (int64_t d : in.shape) tensor->add_shape(d);
    if (!in.shm_region.empty()) {
      SetShm(tensor->mutable_parameters(), in.shm_region, in.shm_offset,
             in.shm_byte_size);
    } else {
      request.add_raw_input_contents(in.data);
    }
  }
  for (const OutputSpec& out : target.outputs) {
    auto* tensor = request.add_outputs();
    tensor->set_name(out.name);
    if (!out.shm_region.empty()) {
      SetShm(tensor->mutable_parameters(), out.shm_region, out.shm_offset,
             out.shm_byte_size);
    }
  }
  auto& params = *request.mutable_parameters();
  for (const RequestParameter& param : target.parameters) {
    switch (param.kind) {
      case RequestParameter::Kind::kInt:
        params[param.name].set_int64_param(param.int_value);
        break;
      case RequestParameter::Kind::kBool:
        params[param.name].set_bool_param(param.bool_value);
        break;
      case RequestParameter::Kind::kString:
        params[param.name].set_string_param(param.string_value);
        break;
    }
  }
  if (target.decoupled && target.streaming) {
    // Without it a decoupled model's last response may carry no final flag.
    (*request.mutable_parameters())["triton_enable_empty_final_response"]
        .set_bool_param(true);
  }
  return request;
}

const inference::ModelInferRequest& WithSequence(inference::ModelInferRequest* request,
                                                 const SequenceParams& seq) {
  if (seq.id != 0) {
    auto& params = *request->mutable_parameters();
    params["sequence_id"].set_int64_param(static_cast<int64_t>(seq.id));
    params["sequence_start"].set_bool_param(seq.start);
    params["sequence_end"].set_bool_param(seq.end);
  }
  return *request;
}

std::chrono::system_clock::time_point QueueDeadline(int64_t deadline_ns) {
  return std::chrono::system_clock::now() +
         std::chrono::nanoseconds(std::max<int64_t>(deadline_ns - NowNs(), 0));
}

grpc::ByteBuffer Serialize(const google::protobuf::Message& message) {
  std::string bytes = message.SerializeAsString();
  grpc::Slice slice(bytes);
  return grpc::ByteBuffer(&slice, 1);
}

std::shared_ptr<grpc::Channel> SharedChannel(const Target& target) {
  struct Entry {
    std::weak_ptr<grpc::Channel> channel;
    int users = 0;
  };
  static std::mutex mu;  // guards cache
  static std::map<std::string, Entry> cache;
  // Channels of targets that differ in security or compression are not shared.
  const std::string key = target.url + '\n' + target.grpc_compression + '\n' +
                          (target.grpc_tls.use_ssl ? "ssl" : "plain");
  std::lock_guard<std::mutex> lock(mu);
  Entry& entry = cache[key];
  std::shared_ptr<grpc::Channel> channel = entry.channel.lock();
  if (channel && entry.users < kChannelShare) {
    ++entry.users;
    return channel;
  }
  grpcfe::TurnOffAbslDeadlockDetection();
  grpcfe::KeepGrpcForProcess();
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(-1);
  args.SetMaxSendMessageSize(-1);
  // A channel of its own TCP connection (grpc otherwise multiplexes every channel
  // with equal arguments onto one).
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  // The channel's default algorithm compresses every message the client sends
  // (unary and stream), which is what tritonclient's per-call setting does for
  // perf_analyzer; the server answers uncompressed unless it chooses otherwise.
  if (target.grpc_compression == "gzip") {
    args.SetCompressionAlgorithm(GRPC_COMPRESS_GZIP);
  } else if (target.grpc_compression == "deflate") {
    args.SetCompressionAlgorithm(GRPC_COMPRESS_DEFLATE);
  }
  channel = grpc::CreateCustomChannel(target.url, Credentials(target.grpc_tls), args);
  entry.channel = channel;
  entry.users = 1;
  return channel;
}

}  // namespace tritonx::perf
