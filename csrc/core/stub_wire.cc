#include "stub_wire.h"

#include "tensor_memory.h"
#include "trace.h"

namespace tritonx::stub {
namespace {

enum : uint8_t { kBool = 0, kInt = 1, kUint = 2, kDouble = 3, kString = 4 };
enum : uint8_t { kResponses = 0, kBatchError = 1 };

Parameters ReadParameters(MessageReader& r) {
  Parameters params;
  const uint32_t n = r.U32();
  for (uint32_t i = 0; i < n && r.ok(); ++i) {
    std::string key(r.Str());
    switch (r.U8()) {
      case kBool:
        params.emplace_back(std::move(key), r.U8() != 0);
        break;
      case kInt:
        params.emplace_back(std::move(key), r.I64());
        break;
      case kUint:
        params.emplace_back(std::move(key), r.U64());
        break;
      case kDouble:
        params.emplace_back(std::move(key), r.F64());
        break;
      default:
        params.emplace_back(std::move(key), std::string(r.Str()));
    }
  }
  return params;
}

WireTensor ReadTensor(MessageReader& r) {
  WireTensor t;
  t.name = r.Str();
  t.datatype = r.Str();
  const uint32_t dims = r.U32();
  for (uint32_t d = 0; d < dims && r.ok(); ++d) t.shape.push_back(r.I64());
  t.offset = r.U64();
  t.bytes = r.U64();
  return t;
}

void WriteStatus(MessageWriter& w, const Status& status) {
  w.U32(static_cast<uint32_t>(status.code()));
  w.Str(status.message());
}

Status ReadStatus(MessageReader& r) {
  const uint32_t code = r.U32();
  std::string message(r.Str());
  if (code == 0 || code > static_cast<uint32_t>(StatusCode::kCancelled)) {
    return Status(StatusCode::kInternal, message);
  }
  return Status(static_cast<StatusCode>(code), message);
}

void WriteIndices(MessageWriter& w, const std::vector<uint32_t>& indices) {
  w.U32(static_cast<uint32_t>(indices.size()));
  for (uint32_t index : indices) w.U32(index);
}

void ReadIndices(MessageReader& r, std::vector<uint32_t>* out) {
  const uint32_t count = r.U32();
  for (uint32_t i = 0; i < count && r.ok(); ++i) out->push_back(r.U32());
}

}  // namespace

void WriteTensor(MessageWriter& w, const WireTensor& t) {
  w.Str(t.name);
  w.Str(t.datatype);
  w.U32(static_cast<uint32_t>(t.shape.size()));
  for (int64_t d : t.shape) w.I64(d);
  w.U64(t.offset);
  w.U64(t.bytes);
}

void WriteParameters(MessageWriter& w, const Parameters& params) {
  w.U32(static_cast<uint32_t>(params.size()));
  for (const auto& [key, value] : params) {
    w.Str(key);
    if (const bool* b = std::get_if<bool>(&value)) {
      w.U8(kBool);
      w.U8(*b ? 1 : 0);
    } else if (const int64_t* i = std::get_if<int64_t>(&value)) {
      w.U8(kInt);
      w.I64(*i);
    } else if (const uint64_t* u = std::get_if<uint64_t>(&value)) {
      w.U8(kUint);
      w.U64(*u);
    } else if (const double* d = std::get_if<double>(&value)) {
      w.U8(kDouble);
      w.F64(*d);
    } else {
      w.U8(kString);
      w.Str(std::get<std::string>(value));
    }
  }
}

size_t WriteRequests(MessageWriter& w, const std::vector<RequestPtr>& requests,
                     uint64_t first_key) {
  size_t offset = 0;
  w.U32(static_cast<uint32_t>(requests.size()));
  uint64_t key = first_key;
  for (const RequestPtr& request : requests) {
    w.U64(key++);
    w.Str(request->id);
    const bool is_str = !request->correlation_id_str.empty();
    w.U8(is_str ? 1 : 0);
    if (is_str) {
      w.Str(request->correlation_id_str);
    } else {
      w.U64(request->correlation_id);
    }
    w.U32(request->flags);
    w.U64(request->timeout_us);
    w.U64(request->trace ? request->trace->id() : 0);
    w.Str(request->trace ? request->trace->OtelContext() : std::string());
    w.U32(static_cast<uint32_t>(request->requested_outputs.size()));
    for (const std::string& name : request->requested_outputs) w.Str(name);
    WriteParameters(w, request->parameters);
    w.U32(static_cast<uint32_t>(request->inputs.size()));
    for (const Tensor& input : request->inputs) {
      w.Str(input.name);
      w.Str(DataTypeName(input.dtype));
      w.U32(static_cast<uint32_t>(input.shape.size()));
      for (int64_t d : input.shape) w.I64(d);
      w.U64(offset);
      w.U64(input.byte_size);
      offset += Padded(input.byte_size);
    }
  }
  return offset;
}

bool ReadRequests(std::string_view message, std::vector<WireRequest>* out) {
  MessageReader r(message);
  const uint32_t count = r.U32();
  out->clear();
  for (uint32_t i = 0; i < count && r.ok(); ++i) {
    WireRequest q;
    q.key = r.U64();
    q.id = r.Str();
    q.correlation_is_string = r.U8() != 0;
    if (q.correlation_is_string) {
      q.correlation_id_str = r.Str();
    } else {
      q.correlation_id = r.U64();
    }
    q.flags = r.U32();
    q.timeout_us = r.U64();
    q.trace_id = r.U64();
    q.trace_context = r.Str();
    const uint32_t names = r.U32();
    for (uint32_t n = 0; n < names && r.ok(); ++n)
      q.requested_outputs.push_back(r.Str());
    q.parameters = ReadParameters(r);
    const uint32_t inputs = r.U32();
    for (uint32_t n = 0; n < inputs && r.ok(); ++n) q.inputs.push_back(ReadTensor(r));
    out->push_back(std::move(q));
  }
  return r.ok();
}

void WriteBatchError(MessageWriter& w, const Status& status,
                     const std::vector<uint32_t>& answered_by_sender) {
  w.U8(kBatchError);
  WriteStatus(w, status);
  WriteIndices(w, answered_by_sender);
}

void WriteReplyHeader(MessageWriter& w, uint32_t count) {
  w.U8(kResponses);
  w.U32(count);
}

void WriteError(MessageWriter& w, const Status& status) {
  w.U8(0);
  WriteStatus(w, status);
}

void WriteOutputs(MessageWriter& w, const std::vector<WireTensor>& outputs,
                  const Parameters& params) {
  w.U8(1);
  w.U32(static_cast<uint32_t>(outputs.size()));
  for (const WireTensor& t : outputs) WriteTensor(w, t);
  WriteParameters(w, params);
}

void WriteRequestMarks(MessageWriter& w, const std::vector<uint32_t>& rescheduled,
                       const std::vector<uint32_t>& answered_by_sender) {
  WriteIndices(w, rescheduled);
  WriteIndices(w, answered_by_sender);
}

bool ReadReply(std::string_view message, WireReply* out) {
  MessageReader r(message);
  out->responses.clear();
  out->rescheduled.clear();
  out->answered_by_sender.clear();
  if (r.U8() == kBatchError) {
    out->batch_status = ReadStatus(r);
    if (out->batch_status.ok()) {
      out->batch_status = Status(StatusCode::kInternal, "stub reported an empty error");
    }
    ReadIndices(r, &out->answered_by_sender);
    return r.ok();
  }
  const uint32_t count = r.U32();
  for (uint32_t i = 0; i < count && r.ok(); ++i) {
    WireResponse response;
    ReadResponse(r, &response);
    out->responses.push_back(std::move(response));
  }
  ReadIndices(r, &out->rescheduled);
  ReadIndices(r, &out->answered_by_sender);
  return r.ok();
}

uint64_t DescribeOutputs(const InferenceResponse& response, uint64_t first,
                         std::vector<WireTensor>* outputs) {
  uint64_t offset = first;
  for (const Tensor& out : response.outputs) {
    WireTensor w;
    w.name = out.name;
    w.datatype = DataTypeName(out.dtype);
    w.shape = out.shape;
    w.offset = offset;
    w.bytes = out.byte_size;
    outputs->push_back(std::move(w));
    offset += Padded(out.byte_size);
  }
  return offset;
}

Status CopyOutputs(const InferenceResponse& response, char* base, uint64_t* offset) {
  for (const Tensor& out : response.outputs) {
    Status copied = CopyTensorBytes(out, base + *offset);
    if (!copied.ok()) return copied;
    *offset += Padded(out.byte_size);
  }
  return Status::Ok();
}

bool TensorFromWire(const WireTensor& out, uint64_t area_bytes, Tensor* tensor) {
  tensor->name = std::string(out.name);
  tensor->dtype = DataTypeFromName(out.datatype);
  tensor->shape = out.shape;
  tensor->byte_size = out.bytes;
  if (tensor->dtype == DataType::kInvalid || out.offset > area_bytes ||
      out.bytes > area_bytes - out.offset) {
    return false;
  }
  // Whoever reads the tensor later slices it by its shape: the bytes must fill it
  // exactly (BYTES elements have no fixed size; their reader walks the bytes).
  int64_t elements = 0;
  if (CheckedElementCount(out.shape, &elements) != ShapeCount::kOk) return false;
  const size_t element_size = DataTypeByteSize(tensor->dtype);
  return element_size == 0 ||
         (static_cast<uint64_t>(elements) <= out.bytes / element_size &&
          static_cast<uint64_t>(elements) * element_size == out.bytes);
}

bool ReadResponse(MessageReader& r, WireResponse* out) {
  if (r.U8() == 0) {
    out->status = ReadStatus(r);
  } else {
    const uint32_t n = r.U32();
    for (uint32_t k = 0; k < n && r.ok(); ++k) out->outputs.push_back(ReadTensor(r));
    out->parameters = ReadParameters(r);
  }
  return r.ok();
}

}  // namespace tritonx::stub
