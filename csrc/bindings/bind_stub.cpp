// Stub processes (EXECUTION_MODE "process"): the server's StubExecutor, driven by
// stub/process.py around the stub's lifetime, and the stub's end of the ring
// (StubEndpoint), used by the stub's main loop in stub/__main__.py. Every call that
// can block releases the GIL.
#include <algorithm>
#include <cstring>

#include "core/stub_executor.h"
#include "core/stub_wire.h"
#include "pybind_common.h"

namespace tritonx::bindings {
namespace {

py::object CorrelationId(const stub::WireRequest& q) {
  if (q.correlation_is_string)
    return py::str(q.correlation_id_str.data(), q.correlation_id_str.size());
  return py::int_(q.correlation_id);
}

// The stub's end of the ring. Thread-compatible: the stub's main loop only.
class StubEndpoint {
 public:
  StubEndpoint(int server_fd, size_t out_bytes, size_t growth) {
    client_ = stub::RingClient::Open(server_fd, out_bytes, growth);
    if (!client_) throw std::runtime_error("cannot map the server's stub ring");
  }

  int out_fd() const { return client_->out_fd(); }

  // (kind, requests): kind 1 execute (requests: a list of field tuples, inputs as
  // numpy views of the server's region), 2 finalize (requests None).
  py::tuple Wait() {
    std::string_view message;
    stub::RequestKind kind;
    {
      py::gil_scoped_release release;
      kind = client_->Wait(&message);
    }
    if (kind != stub::RequestKind::kExecute) {
      return py::make_tuple(static_cast<int>(kind), py::none());
    }
    if (!stub::ReadRequests(message, &requests_)) {
      throw std::runtime_error("malformed execute request from the server");
    }
    // Arrays keep the mapping they view alive (it may be replaced when it grows).
    auto* holder = new std::shared_ptr<stub::Mapping>(client_->server_mapping());
    py::capsule base(holder, [](void* p) {
      delete static_cast<std::shared_ptr<stub::Mapping>*>(p);
    });
    const char* data = client_->server_data();
    const size_t avail = client_->server_data_size();
    py::list out(requests_.size());
    for (size_t i = 0; i < requests_.size(); ++i) {
      const stub::WireRequest& q = requests_[i];
      py::list names(q.requested_outputs.size());
      for (size_t k = 0; k < q.requested_outputs.size(); ++k) {
        names[k] =
            py::str(q.requested_outputs[k].data(), q.requested_outputs[k].size());
      }
      py::list inputs(q.inputs.size());
      for (size_t k = 0; k < q.inputs.size(); ++k) {
        const stub::WireTensor& t = q.inputs[k];
        if (t.offset > avail || t.bytes > avail - t.offset) {
          throw std::runtime_error("execute request names bytes past the region");
        }
        py::object value;
        const DataType dtype_of = DataTypeFromName(t.datatype);
        if (dtype_of == DataType::kInvalid) {
          throw std::runtime_error("execute request names an unknown datatype");
        }
        if (dtype_of == DataType::kBytes) {
          // BYTES: bytes objects, decoded by the one BYTES rule (tensor.h).
          value = BytesObjectArray(data + t.offset, t.bytes, t.shape, t.name);
        } else {
          py::dtype dtype = NumpyDtype(dtype_of);  // BF16 as its uint16 bits
          const auto itemsize = static_cast<size_t>(dtype.itemsize());
          std::vector<py::ssize_t> shape(t.shape.begin(), t.shape.end());
          size_t elements = 1;
          for (int64_t d : t.shape)
            elements *= static_cast<size_t>(std::max<int64_t>(d, 0));
          if (elements * itemsize != t.bytes) {
            shape = {static_cast<py::ssize_t>(t.bytes / itemsize)};
          }
          // Writable, as in Triton: the bytes are this execute's own copy (the
          // server wrote them into its region for this request only), so a model
          // normalising in place (`x -= mean`) changes nothing anyone else reads.
          value = py::array(dtype, shape, {}, data + t.offset, base);
        }
        inputs[k] = py::make_tuple(py::str(t.name.data(), t.name.size()),
                                   py::str(t.datatype.data(), t.datatype.size()),
                                   py::cast(t.shape), value);
      }
      out[i] = py::make_tuple(py::str(q.id.data(), q.id.size()), CorrelationId(q),
                              names, q.flags, q.timeout_us,
                              ParametersToDict(q.parameters), inputs, q.trace_id, q.key,
                              py::str(q.trace_context.data(), q.trace_context.size()));
    }
    return py::make_tuple(static_cast<int>(kind), out);
  }

  // Answers the execute: per request what the backend returned (an output mapping,
  // an exception, or None for a request it rescheduled), turned into responses by
  // the same rule as in-process (ResponseFromPy); output bytes go straight into
  // this stub's reply region. `rescheduled`: the indices of the requests the
  // backend rescheduled (iterative sequences); `answered_by_sender`: those a
  // non-decoupled model's response senders answer on the response stream.
  void Reply(const py::list& items, const std::vector<uint32_t>& rescheduled,
             const std::vector<uint32_t>& answered_by_sender) {
    std::vector<std::unique_ptr<InferenceResponse>> responses;
    responses.reserve(items.size());
    for (const py::handle item : items) {
      responses.push_back(
          item.is_none() ? std::make_unique<InferenceResponse>()
                         : ResponseFromPy(py::reinterpret_borrow<py::object>(item)));
    }
    message_.Clear();
    stub::WriteReplyHeader(message_, static_cast<uint32_t>(responses.size()));
    std::vector<stub::WireTensor> outputs;
    uint64_t offset = 0;
    for (const auto& response : responses) {
      if (!response->status.ok()) {
        stub::WriteError(message_, response->status);
        continue;
      }
      outputs.clear();
      offset = stub::DescribeOutputs(*response, offset, &outputs);
      stub::WriteOutputs(message_, outputs, response->parameters);
    }
    stub::WriteRequestMarks(message_, rescheduled, answered_by_sender);
    const size_t total = offset;
    char* data = Reserve(total);
    offset = 0;
    for (const auto& response : responses) {
      if (response->status.ok())
        ThrowIfError(stub::CopyOutputs(*response, data, &offset));
    }
    Publish(total);
  }

  // The whole execute failed with `exc`. `answered_by_sender`: the requests of a
  // decoupled model the stub already ended on the response stream.
  void ReplyError(const py::handle& exc,
                  const std::vector<uint32_t>& answered_by_sender) {
    message_.Clear();
    stub::WriteBatchError(message_, StatusFromPyException(exc), answered_by_sender);
    Reserve(0);
    Publish(0);
  }

 private:
  // Room for `tensor_bytes` of outputs followed by the message written so far.
  char* Reserve(size_t tensor_bytes) {
    reserved_ = client_->Reserve(tensor_bytes + message_.bytes().size());
    if (reserved_ == nullptr) throw std::bad_alloc();
    return reserved_;
  }
  void Publish(size_t tensor_bytes) {
    const std::string& message = message_.bytes();
    std::memcpy(reserved_ + tensor_bytes, message.data(), message.size());
    client_->Reply(tensor_bytes, message.size());
  }

  std::unique_ptr<stub::RingClient> client_;
  std::vector<stub::WireRequest> requests_;
  stub::MessageWriter message_;
  char* reserved_ = nullptr;  // the reply being written (Reserve, Publish)
};

// A stub's response stream (stub_stream.h), for its requests' senders on any thread.
// Thread safe (StreamWriter's lock).
class StubStream {
 public:
  StubStream(size_t bytes, int socket_fd)
      : writer_(stub::StreamWriter::Create(bytes, socket_fd)) {
    if (!writer_) throw std::runtime_error("cannot create the response stream region");
  }
  int fd() const { return writer_->fd(); }
  void Send(uint64_t key, const py::object& item, bool final) {
    std::unique_ptr<InferenceResponse> response;
    if (!item.is_none()) response = ResponseFromPy(item);  // the in-process rule
    Status status;
    {
      py::gil_scoped_release release;
      status = writer_->Send(key, response.get(), final);
    }
    ThrowIfError(status);
  }
  uint64_t one_off_count() const { return writer_->one_off_count(); }

 private:
  std::unique_ptr<stub::StreamWriter> writer_;
};

}  // namespace

std::shared_ptr<Executor> NativeExecutorOf(const py::handle& obj) {
  return obj.cast<std::shared_ptr<StubExecutor>>();
}

void RegisterStub(py::module_& m) {
  using Release = py::call_guard<py::gil_scoped_release>;
  py::class_<StubExecutor, std::shared_ptr<StubExecutor>>(
      m, "StubExecutor", "The server's side of a stub process' execute ring")
      .def(py::init([](std::string name, double timeout_s, size_t shm_bytes,
                       size_t growth, bool decoupled) {
             return std::make_shared<StubExecutor>(
                 std::move(name), static_cast<int64_t>(timeout_s * 1e9), shm_bytes,
                 growth, decoupled);
           }),
           py::arg("name"), py::arg("timeout_s"), py::arg("shm_bytes"),
           py::arg("growth"), py::arg("decoupled") = false)
      .def("prepare", &StubExecutor::Prepare, Release())
      .def("attach", &StubExecutor::Attach, py::arg("stub_fd"), py::arg("pid"),
           py::arg("stream_fd") = -1, py::arg("stream_socket") = -1, Release())
      .def("detach", &StubExecutor::Detach, Release())
      .def("post_finalize", &StubExecutor::PostFinalize, Release())
      .def("is_cancelled", &StubExecutor::IsCancelled, py::arg("index"), py::arg("key"),
           Release())
      .def("fail_pending", &StubExecutor::FailPending, Release())
      .def("take_failure", &StubExecutor::TakeFailure, Release());

  py::class_<StubEndpoint>(m, "StubEndpoint", "A stub process' end of its execute ring")
      .def(py::init<int, size_t, size_t>(), py::arg("server_fd"), py::arg("out_bytes"),
           py::arg("growth"))
      .def_property_readonly("out_fd", &StubEndpoint::out_fd)
      .def("wait", &StubEndpoint::Wait)
      .def("reply", &StubEndpoint::Reply, py::arg("items"),
           py::arg("rescheduled") = std::vector<uint32_t>(),
           py::arg("answered_by_sender") = std::vector<uint32_t>())
      .def("reply_error", &StubEndpoint::ReplyError, py::arg("exc"),
           py::arg("answered_by_sender") = std::vector<uint32_t>());

  py::class_<StubStream>(m, "StubStream", "A stub's response stream, for its senders")
      .def(py::init<size_t, int>(), py::arg("bytes"), py::arg("socket_fd"))
      .def_property_readonly("fd", &StubStream::fd)
      .def("send", &StubStream::Send, py::arg("key"), py::arg("response"),
           py::arg("final"))
      .def_property_readonly("one_off_count", &StubStream::one_off_count);
}

}  // namespace tritonx::bindings
