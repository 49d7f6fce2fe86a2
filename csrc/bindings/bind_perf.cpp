// tritonx-perf's load generator (csrc/perf) for python/tritonx/tools/perf: the Python
// side describes the requests, starts a load, and reads the finished requests back
// between measurement windows. The load itself never takes the GIL.
#include <algorithm>
#include <tuple>

#include "load_driver.h"
#include "pybind_common.h"

namespace tritonx::bindings {
namespace {

using perf::InputData;
using perf::LoadDriver;
using perf::LoadOptions;
using perf::OutputSpec;
using perf::RequestParameter;
using perf::RequestRecord;
using perf::Target;

// {"verify_peer": int, "verify_host": int, "ca_file": str, "cert_file": str,
// "cert_type": "PEM" | "DER", "key_file": str, "key_type": ...}: every key optional.
perf::HttpsOptions HttpsFrom(const py::dict& d) {
  perf::HttpsOptions https;
  https.enabled = true;
  auto get = [&d](const char* key, auto* out) {
    if (d.contains(key)) *out = d[key].cast<std::remove_pointer_t<decltype(out)>>();
  };
  get("verify_peer", &https.verify_peer);
  get("verify_host", &https.verify_host);
  get("ca_file", &https.ca_file);
  get("cert_file", &https.cert_file);
  get("cert_type", &https.cert_type);
  get("key_file", &https.key_file);
  get("key_type", &https.key_type);
  return https;
}

// (name, value): the value's Python type (bool, int or str) is the parameter's.
RequestParameter ParameterFrom(const py::handle& item) {
  const auto t = item.cast<py::tuple>();
  if (t.size() != 2) throw py::value_error("a request parameter is (name, value)");
  RequestParameter param;
  param.name = t[0].cast<std::string>();
  const py::handle value = t[1];
  // bool before int: a Python bool is an int too.
  if (py::isinstance<py::bool_>(value)) {
    param.kind = RequestParameter::Kind::kBool;
    param.bool_value = value.cast<bool>();
  } else if (py::isinstance<py::int_>(value)) {
    param.kind = RequestParameter::Kind::kInt;
    param.int_value = value.cast<int64_t>();
  } else if (py::isinstance<py::str>(value)) {
    param.kind = RequestParameter::Kind::kString;
    param.string_value = value.cast<std::string>();
  } else {
    throw py::type_error("request parameter '" + param.name +
                         "': the value is a bool, an int or a str");
  }
  return param;
}

// (name, datatype, shape, data: bytes | None, shm_region, shm_offset, shm_byte_size)
InputData InputFrom(const py::tuple& t) {
  if (t.size() != 7) throw py::value_error("an input is a 7-tuple");
  InputData in;
  in.name = t[0].cast<std::string>();
  in.datatype = t[1].cast<std::string>();
  in.shape = t[2].cast<std::vector<int64_t>>();
  if (!t[3].is_none()) in.data = t[3].cast<std::string>();
  in.shm_region = t[4].cast<std::string>();
  in.shm_offset = t[5].cast<uint64_t>();
  in.shm_byte_size = t[6].cast<uint64_t>();
  return in;
}

template <typename T>
py::array_t<T> ToArray(std::vector<T>&& values) {
  auto* heap = new std::vector<T>(std::move(values));
  py::capsule owner(heap, [](void* p) { delete static_cast<std::vector<T>*>(p); });
  return py::array_t<T>(static_cast<py::ssize_t>(heap->size()), heap->data(), owner);
}

// Column-wise records: numpy arrays are what the statistics need, and a few
// arrays cost far less than one Python object per request.
// With `bodies` (Target::keep_bodies) also "request_body" per request and
// "response_body" per response (aligned with "response_ns"), as object arrays.
py::dict RecordsToDict(std::vector<RequestRecord>&& records, bool bodies) {
  const size_t n = records.size();
  std::vector<int64_t> start(n), end(n), send(n), recv(n), first(n), count(n),
      offsets(n + 1);
  std::vector<uint64_t> sequence(n), step(n);
  py::list request_bodies, response_bodies;
  std::vector<uint8_t> ok(n), seq_start(n), seq_end(n);
  std::vector<int64_t> responses;
  offsets[0] = 0;
  for (size_t i = 0; i < n; ++i) {
    const RequestRecord& r = records[i];
    start[i] = r.start_ns;
    end[i] = r.end_ns;
    send[i] = r.send_ns;
    recv[i] = r.recv_ns;
    sequence[i] = r.sequence_id;
    step[i] = r.step;
    if (bodies) {
      request_bodies.append(py::str(r.request_body));
      for (const std::string& body : r.response_bodies) {
        response_bodies.append(py::str(body));
      }
    }
    ok[i] = r.ok ? 1 : 0;
    seq_start[i] = r.sequence_start ? 1 : 0;
    seq_end[i] = r.sequence_end ? 1 : 0;
    count[i] = static_cast<int64_t>(r.response_ns.size());
    first[i] = r.response_ns.empty() ? 0 : r.response_ns.front();
    responses.insert(responses.end(), r.response_ns.begin(), r.response_ns.end());
    offsets[i + 1] = static_cast<int64_t>(responses.size());
  }
  py::dict out;
  out["start_ns"] = ToArray(std::move(start));
  out["end_ns"] = ToArray(std::move(end));
  out["send_ns"] = ToArray(std::move(send));
  out["recv_ns"] = ToArray(std::move(recv));
  out["sequence_id"] = ToArray(std::move(sequence));
  out["ok"] = ToArray(std::move(ok)).attr("astype")("bool");
  out["sequence_start"] = ToArray(std::move(seq_start)).attr("astype")("bool");
  out["sequence_end"] = ToArray(std::move(seq_end)).attr("astype")("bool");
  out["response_count"] = ToArray(std::move(count));
  out["first_response_ns"] = ToArray(std::move(first));
  out["response_ns"] = ToArray(std::move(responses));
  out["response_offsets"] = ToArray(std::move(offsets));
  out["step"] = ToArray(std::move(step));
  if (bodies) {
    const py::module_ np = py::module_::import("numpy");
    out["request_body"] = np.attr("array")(request_bodies, py::arg("dtype") = "object");
    out["response_body"] =
        np.attr("array")(response_bodies, py::arg("dtype") = "object");
  }
  return out;
}

}  // namespace

void RegisterPerf(py::module_& m) {
  py::class_<Target, std::shared_ptr<Target>>(
      m, "PerfTarget", "What tritonx-perf's connections talk to and send (immutable).")
      .def(py::init([](const std::string& protocol, const std::string& url,
                       const std::string& model, const std::string& version,
                       const py::list& steps, const py::list& outputs, bool streaming,
                       bool decoupled,
                       std::vector<std::pair<std::string, std::string>> headers,
                       bool json_inputs, bool json_outputs, const py::list& parameters,
                       const std::string& grpc_compression, bool grpc_use_ssl,
                       const std::string& grpc_root_certs,
                       const std::string& grpc_private_key,
                       const std::string& grpc_cert_chain, const py::object& https,
                       const std::string& endpoint, std::vector<std::string> payloads,
                       bool keep_bodies) {
             auto target = std::make_shared<Target>();
             target->protocol = protocol;
             target->url = url;
             target->model = model;
             target->version = version;
             for (const auto& step : steps) {
               std::vector<InputData> inputs;
               for (const auto& in : step.cast<py::list>()) {
                 inputs.push_back(InputFrom(in.cast<py::tuple>()));
               }
               target->steps.push_back(std::move(inputs));
             }
             for (const auto& item : outputs) {
               const auto t = item.cast<py::tuple>();
               OutputSpec out;
               out.name = t[0].cast<std::string>();
               out.shm_region = t[1].cast<std::string>();
               out.shm_offset = t[2].cast<uint64_t>();
               out.shm_byte_size = t[3].cast<uint64_t>();
               target->outputs.push_back(std::move(out));
             }
             target->streaming = streaming;
             target->decoupled = decoupled;
             target->http_headers = std::move(headers);
             target->json_inputs = json_inputs;
             target->json_outputs = json_outputs;
             for (const auto& item : parameters) {
               target->parameters.push_back(ParameterFrom(item));
             }
             if (grpc_compression != "none" && grpc_compression != "gzip" &&
                 grpc_compression != "deflate") {
               throw py::value_error("grpc_compression is none, gzip or deflate");
             }
             target->grpc_compression = grpc_compression;
             target->grpc_tls.use_ssl = grpc_use_ssl;
             target->grpc_tls.root_certs = grpc_root_certs;
             target->grpc_tls.private_key = grpc_private_key;
             target->grpc_tls.cert_chain = grpc_cert_chain;
             if (!https.is_none()) target->https = HttpsFrom(https.cast<py::dict>());
             target->endpoint = endpoint;
             target->payloads = std::move(payloads);
             target->keep_bodies = keep_bodies;
             return target;
           }),
           py::arg("protocol"), py::arg("url"), py::arg("model"), py::arg("version"),
           py::arg("steps"), py::arg("outputs"), py::arg("streaming") = false,
           py::arg("decoupled") = false,
           py::arg("http_headers") = std::vector<std::pair<std::string, std::string>>{},
           py::arg("json_inputs") = false, py::arg("json_outputs") = false,
           py::arg("parameters") = py::list(), py::arg("grpc_compression") = "none",
           py::arg("grpc_use_ssl") = false, py::arg("grpc_root_certs") = "",
           py::arg("grpc_private_key") = "", py::arg("grpc_cert_chain") = "",
           py::arg("https") = py::none(), py::arg("endpoint") = "",
           py::arg("payloads") = std::vector<std::string>{},
           py::arg("keep_bodies") = false);

  py::class_<LoadDriver>(m, "PerfLoad",
                         "One step of tritonx-perf's load: C++ client threads sending "
                         "to a server (closed loop, or open loop at a request rate).")
      .def(py::init([](std::shared_ptr<Target> target, int concurrency,
                       double request_rate, bool poisson, int max_threads,
                       int sequence_length, double sequence_variation,
                       uint64_t sequence_id_start, uint64_t sequence_id_end,
                       uint64_t seed, bool async, uint64_t max_requests,
                       int num_sequences, std::vector<int> stream_lengths,
                       bool length_from_stream, std::vector<int64_t> intervals_us,
                       std::vector<std::pair<int64_t, size_t>> schedule_us,
                       std::tuple<int, int, int> periodic, int request_period,
                       int session_concurrency,
                       std::vector<std::vector<size_t>> sessions,
                       std::vector<int64_t> turn_delays_us) {
             LoadOptions options;
             options.concurrency = concurrency;
             options.request_rate = request_rate;
             options.poisson = poisson;
             options.max_threads = max_threads;
             options.sequence_length = sequence_length;
             options.sequence_variation = sequence_variation;
             options.sequence_id_start = sequence_id_start;
             options.sequence_id_end = sequence_id_end;
             options.seed = seed;
             options.async = async;
             options.max_requests = max_requests;
             options.num_sequences = num_sequences;
             options.stream_lengths = std::move(stream_lengths);
             options.length_from_stream = length_from_stream;
             for (const int64_t us : intervals_us) {
               if (us < 0) throw py::value_error("a request interval is negative");
               options.intervals_ns.push_back(us * 1000);
             }
             for (const auto& [us, step] : schedule_us) {
               if (us < 0) throw py::value_error("a scheduled time is negative");
               options.schedule.emplace_back(us * 1000, step);
             }
             std::tie(options.periodic_start, options.periodic_end,
                      options.periodic_step) = periodic;
             options.request_period = request_period;
             options.session_concurrency = session_concurrency;
             options.sessions = std::move(sessions);
             for (const int64_t us : turn_delays_us) {
               if (us < 0) throw py::value_error("a turn's delay is negative");
               options.turn_delays_ns.push_back(us * 1000);
             }
             // Sent in time order; requests due at the same time in the given order.
             std::stable_sort(
                 options.schedule.begin(), options.schedule.end(),
                 [](const auto& a, const auto& b) { return a.first < b.first; });
             return std::make_unique<LoadDriver>(std::move(target), options);
           }),
           py::arg("target"), py::arg("concurrency") = 1, py::arg("request_rate") = 0.0,
           py::arg("poisson") = false, py::arg("max_threads") = 16,
           py::arg("sequence_length") = 0, py::arg("sequence_variation") = 20.0,
           py::arg("sequence_id_start") = 1, py::arg("sequence_id_end") = 0,
           py::arg("seed") = 0, py::arg("async_mode") = false,
           py::arg("max_requests") = 0, py::arg("num_sequences") = 4,
           py::arg("stream_lengths") = std::vector<int>{},
           py::arg("length_from_stream") = false,
           py::arg("intervals_us") = std::vector<int64_t>{},
           py::arg("schedule_us") = std::vector<std::pair<int64_t, size_t>>{},
           py::arg("periodic") = std::tuple<int, int, int>{1, 0, 1},
           py::arg("request_period") = 10, py::arg("session_concurrency") = 0,
           py::arg("sessions") = std::vector<std::vector<size_t>>{},
           py::arg("turn_delays_us") = std::vector<int64_t>{})
      .def(
          "start",
          [](LoadDriver& self) {
            std::string error;
            bool ok;
            {
              py::gil_scoped_release release;
              ok = self.Start(&error);
            }
            if (!ok) throw std::runtime_error(error);
          },
          "Connects and starts sending; RuntimeError when a connection fails.")
      .def("stop", &LoadDriver::Stop, py::call_guard<py::gil_scoped_release>(),
           "Stops sending and waits for the requests in flight.")
      .def(
          "drain",
          [](LoadDriver& self) {
            std::vector<RequestRecord> records;
            {
              py::gil_scoped_release release;
              records = self.Drain();
            }
            return RecordsToDict(std::move(records), self.KeepsBodies());
          },
          "Requests finished since the last drain, as numpy columns.")
      .def("first_error", &LoadDriver::FirstError)
      .def_property_readonly("delayed", &LoadDriver::Delayed)
      .def_property_readonly("completed", &LoadDriver::Completed);

  m.def("perf_now_ns", &perf::NowNs, "The load generator's clock (steady, ns).");
}

}  // namespace tritonx::bindings
