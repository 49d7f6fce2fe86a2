// HttpServer: the C++ HTTP/REST frontend, driven from tritonx.frontends.http_native.
// Python runs only for control-plane routes, through `handler(method, url, headers,
// body, reply)`, called on the server's control pool with the GIL; the handler
// answers by calling `reply(status, headers, body)` once, from any thread.
#include <optional>

#include "core/generate_json.h"
#include "core/model_registry.h"
#include "http/http_cloud.h"
#include "http/http_forward.h"
#include "http/http_infer_codec.h"
#include "http/http_json_tensor.h"
#include "http_server.h"
#include "http_tls.h"
#include "py_json_sink.h"
#include "pybind_common.h"

namespace tritonx::bindings {
namespace {

// Owns the Python handler for exactly as long as the server may call it, and stops
// the server with the GIL released when Python drops the object.
class PyHttpServer {
 public:
  PyHttpServer(std::shared_ptr<ModelRegistry> registry, py::object handler,
               HttpServerOptions options)
      : handler_(std::move(handler)) {
    PyObject* fn = handler_.ptr();  // kept alive by handler_, which outlives server_
    server_ = std::make_unique<HttpServer>(
        std::move(registry),
        [fn](HttpControlRequest request, HttpReplyFn reply) {
          GilAcquire gil;
          try {
            py::list headers;
            for (auto& [name, value] : request.headers) {
              headers.append(py::make_tuple(py::bytes(name), py::bytes(value)));
            }
            py::cpp_function respond(
                [reply](int status,
                        const std::vector<std::pair<std::string, std::string>>& hs,
                        const py::bytes& body) {
                  HttpReply out;
                  out.status = status;
                  out.headers = hs;
                  out.body = body.cast<std::string>();
                  reply(std::move(out));
                });
            py::reinterpret_borrow<py::object>(fn)(request.method,
                                                   py::bytes(request.url), headers,
                                                   py::bytes(request.body), respond);
          } catch (py::error_already_set& err) {
            HttpReply out;
            out.status = 500;
            out.headers.emplace_back("Content-Type", "application/json");
            out.body = httpfe::ErrorBody(py::str(err.value()).cast<std::string>());
            reply(std::move(out));
          }
        },
        std::move(options));
  }

  ~PyHttpServer() {
    // Stopping waits for control calls in flight, which need the GIL.
    py::gil_scoped_release release;
    server_.reset();
  }

  int Start(const std::string& address, int port, bool reuse_port) {
    int bound = 0;
    Status status;
    {
      py::gil_scoped_release release;
      status = server_->Start(address, port, reuse_port, &bound);
    }
    ThrowIfError(status);
    return bound;
  }

  void Stop(double grace) {
    py::gil_scoped_release release;
    server_->Stop(grace);
  }

  bool running() const { return server_->running(); }

 private:
  py::object handler_;
  std::unique_ptr<HttpServer> server_;
};

// Releases the GIL for the scope when the JSON is large enough to be read off the
// event loop (kJsonOffLoopBytes); a small body is read with the GIL kept (see there).
class GilReleaseForLargeJson {
 public:
  explicit GilReleaseForLargeJson(size_t size) {
    if (size >= kJsonOffLoopBytes) release_.emplace();
  }

 private:
  std::optional<py::gil_scoped_release> release_;
};

// Parses `body` as the native engine reads request JSON and hands the document to
// `walk` (Status(const rapidjson::Document&)), the GIL released for a large body:
// `walk` must not touch Python objects. Returns the parse's status or the walk's.
// The buffer view is released after the GIL is back (declaration order).
template <class Walk>
Status ParseAndWalk(const py::buffer& body, Walk walk) {
  py::buffer_info info = body.request();
  const auto* data = static_cast<const char*>(info.ptr);
  const auto size = static_cast<size_t>(info.size * info.itemsize);
  GilReleaseForLargeJson release(size);
  rapidjson::Document doc;
  Status status = httpfe::ParseRequestJson(data, size, &doc);
  return status.ok() ? walk(doc) : status;
}

}  // namespace

// A RapidJSON value as Python's json module would give it; a repeated member name
// keeps its first value (what RapidJSON's FindMember finds). Depth is bounded by the
// reader (kMaxDepth), so recursion is.
py::object ToPython(const rapidjson::Value& value) {
  switch (value.GetType()) {
    case rapidjson::kNullType:
      return py::none();
    case rapidjson::kFalseType:
      return py::bool_(false);
    case rapidjson::kTrueType:
      return py::bool_(true);
    case rapidjson::kStringType:
      return py::str(value.GetString(), value.GetStringLength());
    case rapidjson::kNumberType:
      if (value.IsInt64()) return py::int_(value.GetInt64());
      if (value.IsUint64()) return py::int_(value.GetUint64());
      return py::float_(value.GetDouble());
    case rapidjson::kArrayType: {
      py::list items;
      for (const auto& item : value.GetArray()) items.append(ToPython(item));
      return std::move(items);
    }
    case rapidjson::kObjectType: {
      py::dict members;
      for (const auto& member : value.GetObject()) {
        py::str name(member.name.GetString(), member.name.GetStringLength());
        if (!members.contains(name)) members[name] = ToPython(member.value);
      }
      return std::move(members);
    }
  }
  return py::none();
}

void RegisterHttp(py::module_& m) {
  py::class_<PyHttpServer>(m, "HttpServer",
                           "KServe v2 HTTP/REST served from C++ (evhttp)")
      .def(py::init([](std::shared_ptr<ModelRegistry> registry, py::object handler,
                       int thread_count, size_t max_input_size, size_t max_header_size,
                       size_t max_header_count, int control_threads,
                       const std::string& header_forward_pattern,
                       const std::string& infer_header, const std::string& infer_value,
                       bool live_in_cpp, const std::string& tls_server_cert,
                       const std::string& tls_server_key,
                       const std::string& tls_root_cert, bool tls, bool tls_mutual,
                       std::shared_ptr<SharedMemoryRegistry> shared_memory,
                       const py::object& cloud) {
             if (!registry) throw py::value_error("registry must not be None");
             if (!PyCallable_Check(handler.ptr()))
               throw py::type_error("handler must be callable");
             HttpServerOptions options;
             options.thread_count = thread_count;
             options.max_input_size = max_input_size;
             options.max_header_size = max_header_size;
             options.max_header_count = max_header_count;
             options.control_threads = control_threads;
             if (!header_forward_pattern.empty()) {
               ThrowIfError(httpfe::HeaderForwarder::Create(header_forward_pattern,
                                                            &options.forward));
             }
             options.infer_header = infer_header;
             options.infer_value = infer_value;
             options.live_in_cpp = live_in_cpp;
             options.shared_memory = std::move(shared_memory);
             if (!cloud.is_none()) {
               // A cloud endpoint's inference route (http_cloud.h).
               auto spec = cloud.cast<py::dict>();
               auto text = [&](const char* key) {
                 return spec.contains(key) ? spec[key].cast<std::string>()
                                           : std::string();
               };
               HttpCloudInfer route;
               route.path = text("path");
               route.path_pattern = text("path_pattern");
               route.model = text("model");
               route.binary_mime = text("binary_mime");
               route.control_header = text("control_header");
               route.binary_reply_mime = spec.contains("binary_reply_mime") &&
                                         spec["binary_reply_mime"].cast<bool>();
               ThrowIfError(httpfe::CloudInferRoute::Create(route, &options.cloud));
             }
             if (tls || tls_mutual) {
               // Loaded here, not at start, so that bad files fail server creation
               // as they do on the Python engine.
               HttpTlsOptions files{tls_server_cert, tls_server_key, tls_root_cert,
                                    tls_mutual};
               ThrowIfError(HttpTlsContext::Create(files, &options.tls));
             }
             return std::make_unique<PyHttpServer>(
                 std::move(registry), std::move(handler), std::move(options));
           }),
           py::arg("registry"), py::arg("handler"), py::kw_only(),
           py::arg("thread_count") = 2, py::arg("max_input_size") = size_t{64} << 20,
           py::arg("max_header_size") = size_t{64} << 10,
           py::arg("max_header_count") = 1000, py::arg("control_threads") = 4,
           py::arg("header_forward_pattern") = "", py::arg("infer_header") = "",
           py::arg("infer_value") = "", py::arg("live_in_cpp") = true,
           py::arg("tls_server_cert") = "", py::arg("tls_server_key") = "",
           py::arg("tls_root_cert") = "", py::arg("tls") = false,
           py::arg("tls_mutual") = false,
           py::arg("shared_memory") = std::shared_ptr<SharedMemoryRegistry>(),
           py::arg("cloud") = py::none())
      .def("start", &PyHttpServer::Start, py::arg("address"), py::arg("port"),
           py::arg("reuse_port") = false,
           "Binds and starts serving; returns the bound port (port 0 picks one).")
      .def("stop", &PyHttpServer::Stop, py::arg("grace") = 0.0,
           "Stops accepting, waits up to `grace` seconds for requests in flight, then "
           "drops the rest. Blocking; idempotent.")
      .def_property_readonly("running", &PyHttpServer::running);

  // The Python engine reads request bodies with the native engine's reader (Triton's
  // RapidJSON), so both engines take and refuse the same text with the same words.
  m.def(
      "native_json_loads",
      [](const py::buffer& body) -> py::object {
        py::buffer_info info = body.request();
        const auto* data = static_cast<const char*>(info.ptr);
        const auto size = static_cast<size_t>(info.size * info.itemsize);
        rapidjson::Document doc;
        Status status;
        {
          GilReleaseForLargeJson release(size);
          status = httpfe::ParseRequestJson(data, size, &doc);
        }
        ThrowIfError(status);
        return ToPython(doc);
      },
      py::arg("body"),
      "The JSON document in `body` as the native engine reads it (Python values); "
      "raises its parse error (InternalError, or InvalidArgumentError for a lone "
      "surrogate).");
  // Generate bodies are walked over the document itself: inputs are its member
  // names, and a name given twice must be refused as the native engine refuses it
  // (a dict of the document keeps one member per name).
  m.def(
      "native_decode_generate",
      [](const py::buffer& body, const py::tuple& spec) -> py::tuple {
        const ModelSpec model = GenerateSpecFromPy(spec);
        DescriptionSink sink;
        Parameters params;
        ThrowIfError(ParseAndWalk(body, [&](const rapidjson::Document& doc) {
          return DecodeGenerateJson<httpfe::RapidJsonReader>(&doc, model, &sink,
                                                             &params);
        }));
        return GenerateDecoded(sink, params);
      },
      py::arg("body"), py::arg("spec"),
      "decode_generate_json for the raw body, read and walked as the native engine "
      "does (RapidJSON; the GIL released for a large body): (id, inputs, parameters "
      "as (key, value) pairs); raises the native engine's errors.");
  // Output data as the native engine (and Triton's RapidJSON writer) writes it, for
  // the Python engine: the same number forms (1e-5, not Python's 1e-05), and a
  // tenth of numpy's tolist() + json.dumps for a large tensor.
  m.def(
      "native_json_data",
      [](const std::string& datatype, const Shape& shape,
         const py::buffer& raw) -> py::bytes {
        py::buffer_info info = raw.request();
        Tensor tensor;
        tensor.dtype = DataTypeFromName(datatype);
        tensor.shape = shape;
        tensor.data = static_cast<const char*>(info.ptr);
        tensor.byte_size = static_cast<size_t>(info.size * info.itemsize);
        rapidjson::StringBuffer text;
        Status status;
        {
          GilReleaseForLargeJson release(tensor.byte_size);
          httpfe::JsonWriter writer(text);
          writer.StartArray();
          status = httpfe::WriteTensorElements(tensor, &writer);
          writer.EndArray();
        }
        ThrowIfError(status);
        return py::bytes(text.GetString(), text.GetSize());
      },
      py::arg("datatype"), py::arg("shape"), py::arg("raw"),
      "The JSON text of an output's flat `data` array from its wire bytes; raises "
      "InvalidArgumentError for a datatype without a JSON form (FP16, BF16).");
  // The Python engine's infer bodies, read and walked as the native engine reads
  // them; only the few Python values of the result are made with the GIL, so a
  // large body can be decoded on a thread while the event loop runs.
  m.def(
      "native_parse_infer",
      [](const py::buffer& header, const py::object& header_length, size_t body_size,
         const std::string& model) -> py::tuple {
        InferBodyLayout layout;
        layout.has_header_length = !header_length.is_none();
        layout.header_length =
            layout.has_header_length ? header_length.cast<size_t>() : 0;
        layout.body_size = body_size;
        DescriptionSink sink;
        Parameters params;
        const Status status = ParseAndWalk(header, [&](const rapidjson::Document& doc) {
          return DecodeInferJson<httpfe::RapidJsonReader>(&doc, layout, model, &sink,
                                                          &params);
        });
        return InferDecoded(sink, params, status);
      },
      py::arg("header"), py::arg("header_length"), py::arg("body_size"),
      py::arg("model"),
      "decode_infer_json for the JSON text `header` (the whole body when "
      "`header_length` is None), read and walked as the native engine does "
      "(RapidJSON; the GIL released for a large body); a parse error is returned as "
      "the "
      "result's error, as a walk error is.");
}

}  // namespace tritonx::bindings
