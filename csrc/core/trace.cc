#include "trace.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <sstream>
#include <string_view>

#include "data_type.h"
#include "infer_request.h"
#include "tensor_memory.h"

namespace tritonx {
namespace {

template <typename T>
void AppendValues(const char* data, size_t count, std::ostringstream& out) {
  for (size_t i = 0; i < count; ++i) {
    T value;
    std::memcpy(&value, data + i * sizeof(T), sizeof(T));
    if (i > 0) out << ',';
    if constexpr (sizeof(T) == 1) {
      out << static_cast<int>(value);  // numbers, not characters
    } else {
      out << value;
    }
  }
}

// Triton's "data" text: values joined by ',' (FP16/BF16 left empty, BYTES elements
// quoted).
std::string TensorText(const Tensor& tensor) {
  std::ostringstream out;
  const size_t width = DataTypeByteSize(tensor.dtype);
  const size_t count = width == 0 ? 0 : tensor.byte_size / width;
  switch (tensor.dtype) {
    case DataType::kBool:
      for (size_t i = 0; i < tensor.byte_size; ++i) {
        out << (i > 0 ? "," : "") << (tensor.data[i] != 0 ? 1 : 0);
      }
      break;
    case DataType::kUint8:
      AppendValues<uint8_t>(tensor.data, count, out);
      break;
    case DataType::kUint16:
      AppendValues<uint16_t>(tensor.data, count, out);
      break;
    case DataType::kUint32:
      AppendValues<uint32_t>(tensor.data, count, out);
      break;
    case DataType::kUint64:
      AppendValues<uint64_t>(tensor.data, count, out);
      break;
    case DataType::kInt8:
      AppendValues<int8_t>(tensor.data, count, out);
      break;
    case DataType::kInt16:
      AppendValues<int16_t>(tensor.data, count, out);
      break;
    case DataType::kInt32:
      AppendValues<int32_t>(tensor.data, count, out);
      break;
    case DataType::kInt64:
      AppendValues<int64_t>(tensor.data, count, out);
      break;
    case DataType::kFp32:
      AppendValues<float>(tensor.data, count, out);
      break;
    case DataType::kFp64:
      AppendValues<double>(tensor.data, count, out);
      break;
    case DataType::kBytes: {
      bool first = true;
      ForEachBytesElement(tensor.data, tensor.byte_size,
                          [&](const char* data, size_t size) {
                            out << (first ? "" : ",") << '"';
                            out.write(data, static_cast<std::streamsize>(size));
                            out << '"';
                            first = false;
                          });
      break;
    }
    default:  // FP16 and BF16: Triton writes no text for them
      break;
  }
  return out.str();
}

// OpenTelemetry ids: random and never 0 (W3C calls an all-zero id invalid).
uint64_t RandomId() {
  thread_local std::mt19937_64 engine{std::random_device{}()};
  uint64_t id = 0;
  while (id == 0) id = engine();
  return id;
}

std::string Hex(uint64_t value) {
  char text[17];
  std::snprintf(text, sizeof(text), "%016llx", static_cast<unsigned long long>(value));
  return text;
}

bool LowerHex(std::string_view text) {
  for (char c : text) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

// The trace id of a W3C traceparent, or "" when the header is not valid. The rule is
// the OpenTelemetry SDK's propagator's (tracing/otel.py extracts the same header when
// it exports the spans, and both sides must agree on the id): blanks around it,
// "vv-<32 hex>-<16 hex>-ff" in lower case, version ff refused, version 00 with
// nothing after the flags, neither id all zeros.
std::string ParentTraceId(std::string_view header) {
  const auto blank = [](char c) { return c == ' ' || c == '\t'; };
  while (!header.empty() && blank(header.front())) header.remove_prefix(1);
  while (!header.empty() && blank(header.back())) header.remove_suffix(1);
  constexpr size_t kLength = 55;  // 2 + 1 + 32 + 1 + 16 + 1 + 2
  if (header.size() < kLength || header[2] != '-' || header[35] != '-' ||
      header[52] != '-') {
    return "";
  }
  const std::string_view version = header.substr(0, 2);
  const std::string_view trace_id = header.substr(3, 32);
  const std::string_view span_id = header.substr(36, 16);
  if (!LowerHex(version) || !LowerHex(trace_id) || !LowerHex(span_id) ||
      !LowerHex(header.substr(53, 2)) || version == "ff") {
    return "";
  }
  if (header.size() > kLength && (version == "00" || header[kLength] != '-')) return "";
  if (trace_id == std::string(32, '0') || span_id == std::string(16, '0')) return "";
  return std::string(trace_id);
}

// A W3C tracestate as the OpenTelemetry SDK's propagator reads it (the exporter
// reads the same header, and the context a model is told must name the state its
// span is exported with): members split at commas, blanks around each dropped,
// empty ones skipped; "" when the header is over 8192 bytes or any member is not
// `key=value` by the W3C grammar, a key repeats, or there are more than 32. What is
// left is joined again with bare commas.
std::string NormalizedTraceState(std::string_view header) {
  constexpr size_t kMaxLength = 8192;
  constexpr size_t kMaxMembers = 32;
  if (header.size() > kMaxLength) return "";
  const auto lower_alpha = [](char c) { return c >= 'a' && c <= 'z'; };
  const auto key_char = [&](char c) {
    return lower_alpha(c) || (c >= '0' && c <= '9') || c == '_' || c == '-' ||
           c == '*' || c == '/';
  };
  const auto all_key_chars = [&](std::string_view text) {
    return std::all_of(text.begin(), text.end(), key_char);
  };
  // "simple" (a lower-case letter first, 256 at most) or "tenant@system".
  const auto valid_key = [&](std::string_view key) {
    const size_t at = key.find('@');
    if (at == std::string_view::npos) {
      return !key.empty() && key.size() <= 256 && lower_alpha(key[0]) &&
             all_key_chars(key);
    }
    const std::string_view tenant = key.substr(0, at);
    const std::string_view system = key.substr(at + 1);
    return !tenant.empty() && tenant.size() <= 241 && key_char(tenant[0]) &&
           tenant[0] != '_' && tenant[0] != '-' && tenant[0] != '*' &&
           tenant[0] != '/' && all_key_chars(tenant) && !system.empty() &&
           system.size() <= 14 && lower_alpha(system[0]) && all_key_chars(system);
  };
  // 1 to 256 printable ASCII characters but ',' and '=', the last not a space.
  const auto valid_value = [](std::string_view value) {
    if (value.empty() || value.size() > 256 || value.back() == ' ') return false;
    return std::all_of(value.begin(), value.end(), [](char c) {
      return c >= 0x20 && c <= 0x7e && c != ',' && c != '=';
    });
  };
  std::vector<std::string_view> keys;
  std::string out;
  while (true) {
    const size_t comma = header.find(',');
    std::string_view member = header.substr(0, comma);
    while (!member.empty() && (member.front() == ' ' || member.front() == '\t')) {
      member.remove_prefix(1);
    }
    while (!member.empty() && (member.back() == ' ' || member.back() == '\t')) {
      member.remove_suffix(1);
    }
    if (!member.empty()) {
      const size_t equals = member.find('=');
      if (equals == std::string_view::npos) return "";
      const std::string_view key = member.substr(0, equals);
      if (!valid_key(key) || !valid_value(member.substr(equals + 1)) ||
          std::find(keys.begin(), keys.end(), key) != keys.end() ||
          keys.size() == kMaxMembers) {
        return "";
      }
      keys.push_back(key);
      if (!out.empty()) out += ',';
      out += member;
    }
    if (comma == std::string_view::npos) break;
    header.remove_prefix(comma + 1);
  }
  return out;
}

}  // namespace

TraceSetting::TraceSetting(uint64_t id, uint32_t level, uint32_t rate, int32_t count,
                           bool valid, bool propagate)
    : id(id),
      level(level),
      propagate(propagate),
      rate_(rate),
      valid_(valid),
      count_(count) {}

bool TraceSetting::Sample(bool forced) {
  std::lock_guard<std::mutex> lock(mu_);
  if (rate_ == 0) return forced;
  if ((!valid_ || count_ == 0) && !forced) return false;
  // As Triton: a forced request counts towards the rate and the count too.
  bool hit = ++sample_ % rate_ == 0;
  if (hit && count_ > 0) {
    --count_;
  } else if (hit && count_ == 0) {
    hit = false;
  }
  return hit || forced;
}

int32_t TraceSetting::count() const {
  std::lock_guard<std::mutex> lock(mu_);
  return count_;
}

uint64_t TraceSetting::sampled() const {
  std::lock_guard<std::mutex> lock(mu_);
  return sample_;
}

RequestTrace::RequestTrace(std::shared_ptr<Tracer> tracer,
                           std::shared_ptr<TraceSetting> setting, uint64_t id,
                           uint64_t parent_id, std::shared_ptr<RequestTrace> root)
    : tracer_(std::move(tracer)), setting_(std::move(setting)), root_(std::move(root)) {
  record_.id = id;
  record_.parent_id = parent_id;
  if (setting_->propagate) {
    record_.span_id = RandomId();
    if (!root_) {
      otel_trace_id_ = Hex(RandomId()) + Hex(RandomId());
      root_span_id_ = RandomId();
    }
  }
}

RequestTrace::~RequestTrace() {
  tracer_->Forget(record_.id);
  if (root_) {
    // A child whose request was refused before it started (no model set) has
    // nothing to show.
    if (!record_.model_name.empty()) root_->Adopt(std::move(record_));
    return;
  }
  CompletedTrace done;
  done.setting_id = setting_->id;
  done.traceparent = std::move(traceparent_);
  done.tracestate = std::move(tracestate_);
  done.otel_trace_id = std::move(otel_trace_id_);
  done.root_span_id = root_span_id_;
  done.records.reserve(1 + children_.size());
  done.records.push_back(std::move(record_));
  for (auto& child : children_) done.records.push_back(std::move(child));
  tracer_->Complete(std::move(done));
}

std::shared_ptr<RequestTrace> RequestTrace::SpawnChild() {
  // Children of a child hang off the same root (nested ensembles), with the
  // immediate parent's id, as Triton does.
  std::shared_ptr<RequestTrace> root = root_ ? root_ : shared_from_this();
  auto child = std::make_shared<RequestTrace>(tracer_, setting_, tracer_->NextTraceId(),
                                              record_.id, std::move(root));
  tracer_->Track(child);
  return child;
}

void RequestTrace::SetModel(const std::string& name, int64_t version,
                            const std::string& request_id) {
  std::lock_guard<std::mutex> lock(mu_);
  record_.model_name = name;
  record_.model_version = version;
  record_.request_id = request_id;
}

void RequestTrace::SetParentContext(std::string traceparent,
                                    std::string_view tracestate) {
  std::lock_guard<std::mutex> lock(mu_);
  std::string parent = ParentTraceId(traceparent);
  traceparent_ = std::move(traceparent);
  if (parent.empty()) return;
  // The spans continue the caller's trace, as the exporter will make them, and
  // carry its state (the SDK's samplers hand a parent's state to its children).
  tracestate_ = NormalizedTraceState(tracestate);
  if (!otel_trace_id_.empty()) otel_trace_id_ = std::move(parent);
}

std::pair<std::string, std::string> RequestTrace::OtelTrace() {
  std::lock_guard<std::mutex> lock(mu_);
  return {otel_trace_id_, tracestate_};
}

std::string RequestTrace::OtelContext() {
  if (record_.span_id == 0) return "";  // Triton mode (set once, in the constructor)
  const auto [trace_id, tracestate] = root_ ? root_->OtelTrace() : OtelTrace();
  std::string context =
      "{\"traceparent\":\"00-" + trace_id + "-" + Hex(record_.span_id) + "-01\"";
  if (!tracestate.empty()) {
    // Checked printable ASCII: only a value's quotes and backslashes need escaping.
    context += ",\"tracestate\":\"";
    for (char c : tracestate) {
      if (c == '"' || c == '\\') context += '\\';
      context += c;
    }
    context += '"';
  }
  return context + "}";
}

void RequestTrace::Record(const char* activity, uint64_t ns) {
  if (!timestamps()) return;
  std::lock_guard<std::mutex> lock(mu_);
  record_.stamps.push_back({activity, ns});
}

void RequestTrace::Record(const char* activity) { Record(activity, NowNs()); }

void RequestTrace::RecordFirstResponse(uint64_t ns) {
  if (root_ || !timestamps()) return;
  std::lock_guard<std::mutex> lock(mu_);
  if (responded_) return;
  responded_ = true;
  record_.stamps.push_back({trace_activity::kInferResponseComplete, ns});
}

void RequestTrace::RecordTensor(const char* activity, const Tensor& produced) {
  if (!tensors() || produced.data == nullptr) return;
  Tensor tensor;  // the values are written out from host memory
  if (!HostTensor(produced, &tensor).ok()) return;
  TraceRecord::TensorEntry entry;
  entry.activity = activity;
  entry.name = tensor.name;
  entry.data = TensorText(tensor);
  for (size_t i = 0; i < tensor.shape.size(); ++i) {
    entry.shape += (i > 0 ? "," : "") + std::to_string(tensor.shape[i]);
  }
  entry.dtype = std::string(DataTypeName(tensor.dtype));
  std::lock_guard<std::mutex> lock(mu_);
  record_.tensors.push_back(std::move(entry));
}

void RequestTrace::Adopt(TraceRecord record) {
  std::lock_guard<std::mutex> lock(mu_);
  children_.push_back(std::move(record));
}

void Tracer::Install(const std::string& model, std::shared_ptr<TraceSetting> setting) {
  std::lock_guard<std::mutex> lock(mu_);
  if (model.empty()) {
    global_ = std::move(setting);
  } else if (setting) {
    models_[model] = std::move(setting);
  } else {
    models_.erase(model);
  }
  UpdateActive();
}

void Tracer::UpdateActive() {
  bool any = global_ && global_->level != 0;
  for (const auto& [name, setting] : models_) any = any || setting->level != 0;
  active_.store(any, std::memory_order_relaxed);
}

bool ValidTraceparent(std::string_view header) {
  return !ParentTraceId(header).empty();
}

std::shared_ptr<RequestTrace> Tracer::Sample(const std::string& model,
                                             bool has_context) {
  std::shared_ptr<TraceSetting> setting;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = models_.find(model);
    setting = it != models_.end() ? it->second : global_;
  }
  if (!setting || setting->level == 0) return nullptr;
  if (!setting->Sample(has_context && setting->propagate)) return nullptr;
  auto trace = std::make_shared<RequestTrace>(shared_from_this(), std::move(setting),
                                              NextTraceId(), 0, nullptr);
  Track(trace);
  return trace;
}

void Tracer::Track(const std::shared_ptr<RequestTrace>& trace) {
  std::lock_guard<std::mutex> lock(mu_);
  live_[trace->id()] = trace;
}

void Tracer::Forget(uint64_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  live_.erase(id);
}

std::shared_ptr<RequestTrace> Tracer::Find(uint64_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = live_.find(id);
  return it != live_.end() ? it->second.lock() : nullptr;
}

void Tracer::Complete(CompletedTrace trace) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    done_.push_back(std::move(trace));
  }
  ready_.notify_one();
}

std::vector<CompletedTrace> Tracer::Drain(int timeout_ms) {
  std::unique_lock<std::mutex> lock(mu_);
  ready_.wait_for(lock, std::chrono::milliseconds(timeout_ms),
                  [this] { return !done_.empty() || closed_; });
  std::vector<CompletedTrace> out(std::make_move_iterator(done_.begin()),
                                  std::make_move_iterator(done_.end()));
  done_.clear();
  return out;
}

void Tracer::Close() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    closed_ = true;
  }
  ready_.notify_all();
}

}  // namespace tritonx
