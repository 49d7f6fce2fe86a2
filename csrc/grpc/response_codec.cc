// The answer side of infer_codec.h: gRPC inference responses built from the
// core's responses, as messages or straight as wire bytes.
#include <google/protobuf/io/coded_stream.h>

#include <memory>
#include <string>
#include <type_traits>
#include <variant>
#include <vector>

#include "infer_codec.h"

namespace tritonx {
namespace grpcfe {
namespace {

using inference::InferParameter;

void SetParameter(const ParameterValue& value, InferParameter* param) {
  std::visit(
      [param](const auto& v) {
        using T = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<T, bool>) {
          param->set_bool_param(v);
        } else if constexpr (std::is_same_v<T, int64_t>) {
          param->set_int64_param(v);
        } else if constexpr (std::is_same_v<T, uint64_t>) {
          param->set_uint64_param(v);
        } else if constexpr (std::is_same_v<T, double>) {
          param->set_double_param(v);
        } else {
          param->set_string_param(v);
        }
      },
      value);
}

// The message without raw contents, or with them (`with_raw`); outputs bound to
// shared memory are written into their regions either way.
Status BuildResponseMessage(const InferenceResponse& response,
                            const std::string& request_id,
                            inference::ModelInferResponse* msg,
                            const ShmOutputs* shm_outputs, bool with_raw) {
  msg->set_model_name(response.model_name);
  msg->set_model_version(std::to_string(response.model_version));
  msg->set_id(response.id.empty() ? request_id : response.id);
  auto* outputs = msg->mutable_outputs();
  auto* raws = msg->mutable_raw_output_contents();
  outputs->Reserve(static_cast<int>(response.outputs.size()));
  if (with_raw) raws->Reserve(static_cast<int>(response.outputs.size()));
  for (const Tensor& tensor : response.outputs) {
    auto* out = outputs->Add();
    out->set_name(tensor.name);
    out->set_datatype(std::string(DataTypeName(tensor.dtype)));
    out->mutable_shape()->Add(tensor.shape.begin(), tensor.shape.end());
    std::string* raw = with_raw ? raws->Add() : nullptr;
    const ShmOutput* target =
        shm_outputs != nullptr ? FindShmOutput(*shm_outputs, tensor.name) : nullptr;
    if (target != nullptr) {
      Status status = WriteShmOutput(*target, tensor);
      if (!status.ok()) return status;
    } else if (raw != nullptr && tensor.data != nullptr) {
      raw->assign(tensor.data, tensor.byte_size);
    }
  }
  if (!response.parameters.empty()) {
    auto* params = msg->mutable_parameters();
    for (const auto& [key, value] : response.parameters)
      SetParameter(value, &(*params)[key]);
  }
  return Status::Ok();
}

}  // namespace

Status BuildInferResponse(const InferenceResponse& response,
                          const std::string& request_id,
                          inference::ModelInferResponse* msg,
                          const ShmOutputs* shm_outputs) {
  return BuildResponseMessage(response, request_id, msg, shm_outputs, true);
}

namespace {

// BuildInferResponse's message (`final`: a stream's, with its
// triton_final_response parameter, wrapped as a ModelStreamInferResponse's
// infer_response) as wire slices; see SerializeInferResponse.
Status SerializeResponseSlices(std::shared_ptr<const InferenceResponse> response,
                               const std::string& request_id,
                               const ShmOutputs* shm_outputs, const bool* final,
                               inference::ModelInferResponse* scratch,
                               grpc::ByteBuffer* out) {
  scratch->Clear();
  Status built =
      BuildResponseMessage(*response, request_id, scratch, shm_outputs, false);
  if (!built.ok()) return built;
  if (final != nullptr) {
    (*scratch->mutable_parameters())["triton_final_response"].set_bool_param(*final);
  }
  using google::protobuf::io::CodedOutputStream;
  constexpr uint32_t kRawTag =
      (inference::ModelInferResponse::kRawOutputContentsFieldNumber << 3) |
      2;  // length-delimited
  constexpr uint32_t kInferResponseTag =
      (inference::ModelStreamInferResponse::kInferResponseFieldNumber << 3) | 2;

  // Each output's raw entry: its size (0 for one written into shared memory).
  std::vector<size_t> raw_sizes;
  raw_sizes.reserve(response->outputs.size());
  size_t message_size = scratch->ByteSizeLong();
  for (const Tensor& tensor : response->outputs) {
    const bool in_shm =
        shm_outputs != nullptr && FindShmOutput(*shm_outputs, tensor.name) != nullptr;
    const size_t size = in_shm || tensor.data == nullptr ? 0 : tensor.byte_size;
    raw_sizes.push_back(size);
    message_size += CodedOutputStream::VarintSize32(kRawTag) +
                    CodedOutputStream::VarintSize64(size) + size;
  }

  std::string pending;
  if (final != nullptr) {
    // The stream message has nothing but this field: its tag and length lead.
    uint8_t prefix[16];
    uint8_t* end = CodedOutputStream::WriteVarint32ToArray(kInferResponseTag, prefix);
    end = CodedOutputStream::WriteVarint64ToArray(message_size, end);
    pending.assign(reinterpret_cast<const char*>(prefix), end - prefix);
  }
  scratch->AppendToString(&pending);
  std::vector<grpc::Slice> slices;
  for (size_t i = 0; i < raw_sizes.size(); ++i) {
    const size_t size = raw_sizes[i];
    const char* data = response->outputs[i].data;
    uint8_t prefix[16];  // two varints: a tag (at most 5 bytes), a size (10)
    uint8_t* end = CodedOutputStream::WriteVarint32ToArray(kRawTag, prefix);
    end = CodedOutputStream::WriteVarint64ToArray(size, end);
    pending.append(reinterpret_cast<const char*>(prefix), end - prefix);
    if (size < kZeroCopyOutputBytes) {
      pending.append(size == 0 ? "" : data, size);
      continue;
    }
    slices.emplace_back(pending);
    pending.clear();
    auto* hold = new std::shared_ptr<const InferenceResponse>(response);
    slices.emplace_back(
        const_cast<char*>(data), size,
        [](void* held) {
          delete static_cast<std::shared_ptr<const InferenceResponse>*>(held);
        },
        hold);
  }
  if (!pending.empty()) slices.emplace_back(pending);
  *out = grpc::ByteBuffer(slices.data(), slices.size());
  return Status::Ok();
}

}  // namespace

Status SerializeInferResponse(std::shared_ptr<const InferenceResponse> response,
                              const std::string& request_id,
                              const ShmOutputs* shm_outputs,
                              inference::ModelInferResponse* scratch,
                              grpc::ByteBuffer* out) {
  return SerializeResponseSlices(std::move(response), request_id, shm_outputs, nullptr,
                                 scratch, out);
}

Status SerializeStreamInferResponse(std::shared_ptr<const InferenceResponse> response,
                                    const std::string& request_id,
                                    const ShmOutputs* shm_outputs, bool final,
                                    inference::ModelInferResponse* scratch,
                                    grpc::ByteBuffer* out) {
  return SerializeResponseSlices(std::move(response), request_id, shm_outputs, &final,
                                 scratch, out);
}

}  // namespace grpcfe
}  // namespace tritonx
