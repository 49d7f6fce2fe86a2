// The core's wire tables for Python: datatypes (names, enum values, sizes, numpy
// types), status codes (Triton's names, HTTP statuses, gRPC codes) and the BYTES
// wire form. tritonx.dtypes, tritonx.errors and the BYTES helpers read these, so
// each table exists once, in C++. Also the texts both HTTP engines answer for
// checks each makes with its own machinery (core/http_messages.h).
#include "core/data_type.h"
#include "core/http_messages.h"
#include "core/status.h"
#include "pybind_common.h"

namespace tritonx::bindings {

void RegisterTables(py::module_& m) {
  m.def(
      "datatypes",
      [] {
        // (wire name, model_config enum value, bytes per element (0: BYTES), numpy
        // dtype or None for BYTES), in enum order.
        py::list out;
        for (int32_t v = 1; v <= static_cast<int32_t>(DataType::kBf16); ++v) {
          const auto dtype = static_cast<DataType>(v);
          py::object numpy =
              dtype == DataType::kBytes ? py::object(py::none()) : NumpyDtype(dtype);
          out.append(py::make_tuple(std::string(DataTypeName(dtype)), v,
                                    DataTypeByteSize(dtype), numpy));
        }
        return out;
      },
      "Every datatype: (name, enum value, byte size, numpy dtype | None)");
  m.def(
      "status_codes",
      [] {
        py::list out;
        size_t count = 0;
        const StatusCodeInfo* table = StatusCodeTable(&count);
        for (size_t i = 0; i < count; ++i) {
          out.append(py::make_tuple(table[i].name, table[i].words, table[i].http_status,
                                    table[i].grpc_name));
        }
        return out;
      },
      "Every error code: (Triton name, message word, HTTP status, gRPC code name)");
  m.def(
      "serialize_bytes",
      [](const py::array& array) {
        std::string out;
        ThrowIfError(SerializeBytes(array, &out));
        return py::bytes(out);
      },
      py::arg("array"), "An object/bytes/str array in BYTES wire form (row-major)");
  m.def(
      "deserialize_bytes",
      [](const py::buffer& data, int64_t count) {
        py::buffer_info info = data.request();
        const char* bytes = static_cast<const char*>(info.ptr);
        const size_t size = static_cast<size_t>(info.size * info.itemsize);
        std::vector<py::bytes> items;
        const int64_t seen = ForEachBytesElement(
            bytes, size,
            [&](const char* element, size_t length) {
              items.emplace_back(element, length);
            },
            count);
        if (seen < 0 || (count >= 0 && seen != count)) {
          ThrowInvalidArg("malformed BYTES data");
        }
        py::array out(py::dtype("O"),
                      std::vector<py::ssize_t>{static_cast<py::ssize_t>(items.size())});
        auto** slots = static_cast<PyObject**>(out.mutable_data());
        for (size_t i = 0; i < items.size(); ++i) {
          Py_XDECREF(slots[i]);
          slots[i] = items[i].release().ptr();
        }
        return out;
      },
      py::arg("data"), py::arg("count") = -1,
      "BYTES wire data as a 1-D object array of bytes (`count` elements, -1: all)");

  // The HTTP engines' shared texts, one function each, named as in C++.
  py::module_ http = m.def_submodule("http_messages", "core/http_messages.h");
  http.def("reason_phrase", &HttpReasonPhrase, py::arg("status"));
  http.def("restricted_api", &HttpRestrictedApi, py::arg("header"));
  http.def("header_reserved", &HttpHeaderReserved, py::arg("name"));
  http.def("reserved_header", &HttpReservedHeader, py::arg("name"));
  http.def("input_size_error", &HttpInputSizeError, py::arg("header_length"),
           py::arg("body_size"), py::arg("limit"));
  http.def("body_cap", &HttpBodyCap, py::arg("limit"));
  http.def("body_too_large", &HttpBodyTooLarge, py::arg("bound"));
  http.def("body_out_of_memory", &HttpBodyOutOfMemory, py::arg("size"));
  http.def("head_too_large", &HttpHeadTooLarge, py::arg("max_size"),
           py::arg("max_count"));
  http.def("unsupported_compression", &HttpUnsupportedCompression);
  http.def("request_log_line", &HttpRequestLogLine, py::arg("method"), py::arg("path"));
  http.def("error_log_line", &HttpErrorLogLine, py::arg("method"), py::arg("path"),
           py::arg("status"));
  http.def("decompress_failed", &HttpDecompressFailed, py::arg("detail"));
  http.def("output_not_json", &HttpOutputNotJson, py::arg("datatype"));
  http.def(
      "accept_encoding",
      [](const std::string& accept) { return std::string(HttpAcceptEncoding(accept)); },
      py::arg("accept"));
  http.def(
      "origin_form",
      [](const py::bytes& target) {
        return py::bytes(std::string(HttpOriginForm(std::string_view(target))));
      },
      py::arg("target"));
  http.def("tls_needs_cert", &HttpTlsNeedsCert);
  http.def("tls_needs_root", &HttpTlsNeedsRoot);
  http.def("tls_bad_server_cert", &HttpTlsBadServerCert, py::arg("cert"),
           py::arg("key"), py::arg("reason"));
  http.def("tls_bad_root_cert", &HttpTlsBadRootCert, py::arg("root"),
           py::arg("reason"));
}

}  // namespace tritonx::bindings
