// The load generator's view of one client connection to a KServe V2 server
// (tritonx-perf). A Connection sends one prepared request and waits for its last
// response; the LoadDriver (load_driver.h) runs many of them, one per thread.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace tritonx::perf {

// One input tensor of one request template: wire bytes inline, or a reference into a
// system shared memory region the caller registered with the server.
struct InputData {
  std::string name;
  std::string datatype;
  std::vector<int64_t> shape;
  std::string data;        // BYTES in wire form (4-byte LE length + bytes per element)
  std::string shm_region;  // non-empty: the tensor lives there, `data` is unused
  uint64_t shm_offset = 0;
  uint64_t shm_byte_size = 0;
};

struct OutputSpec {
  std::string name;
  std::string shm_region;  // non-empty: the server writes the output there
  uint64_t shm_offset = 0;
  uint64_t shm_byte_size = 0;
};

// A request parameter sent with every inference request (perf_analyzer's
// --request-parameter name:value:type), already typed.
struct RequestParameter {
  enum class Kind { kInt, kBool, kString };
  std::string name;
  Kind kind = Kind::kString;
  int64_t int_value = 0;
  bool bool_value = false;
  std::string string_value;
};

// gRPC channel security (perf_analyzer's --ssl-grpc-*): PEM contents, not paths, so
// that a file that cannot be read fails on the Python side before the load starts.
struct GrpcTls {
  bool use_ssl = false;
  std::string root_certs;   // empty: grpc's default roots
  std::string private_key;  // with cert_chain: a client certificate (mutual TLS)
  std::string cert_chain;
};

// HTTPS for the HTTP protocol (an https:// URL; perf_analyzer's --ssl-https-*, with
// libcurl's meanings): file paths, loaded when the load starts.
struct HttpsOptions {
  bool enabled = false;
  int verify_peer = 1;            // 0: accept any server certificate
  int verify_host = 2;            // 0: do not match the certificate to the host name
  std::string ca_file;            // empty: the system's CA store
  std::string cert_file;          // client certificate (mutual TLS), with key_file
  std::string cert_type = "PEM";  // PEM or DER
  std::string key_file;
  std::string key_type = "PEM";
};

// What every connection of a run talks to and sends. Immutable once the load
// starts; shared read-only by all worker threads.
struct Target {
  std::string protocol = "grpc";  // "grpc" | "http"
  std::string url;                // host:port
  std::string model;
  std::string version;  // "" = the server's choice
  // Request templates, used in turn (perf_analyzer's input-data "steps").
  std::vector<std::vector<InputData>> steps;
  std::vector<OutputSpec> outputs;  // empty: the server returns every output
  bool streaming = false;           // gRPC ModelStreamInfer
  bool decoupled = false;  // the model may answer 0..N times; wait for the final flag
  std::vector<std::pair<std::string, std::string>> http_headers;
  // HTTP only: tensors as JSON values instead of the binary tensor extension
  // (perf_analyzer's --input-tensor-format / --output-tensor-format json).
  bool json_inputs = false;
  bool json_outputs = false;
  // Sent in every request's parameters, next to the sequence parameters.
  std::vector<RequestParameter> parameters;
  // gRPC only: "none" | "gzip" | "deflate", the compression of the requests the
  // client sends (perf_analyzer's --grpc-compression-algorithm).
  std::string grpc_compression = "none";
  GrpcTls grpc_tls;
  HttpsOptions https;
  // OpenAI service kind (perf_analyzer's --service-kind openai, HTTP only): a
  // non-empty endpoint ("v1/chat/completions") makes each request an HTTP POST of
  // payloads[step % size] there instead of a KServe infer request (steps unused);
  // a server-sent event stream is read event by event, each event a response.
  std::string endpoint;
  std::vector<std::string> payloads;
  // Keep the bodies sent and received in each RequestRecord (the profile export's
  // request_inputs / response_outputs, and a chat session's history).
  bool keep_bodies = false;
};

struct SequenceParams {
  uint64_t id = 0;  // 0: not part of a sequence
  bool start = false;
  bool end = false;
};

// One request as the client saw it. Times are steady_clock nanoseconds.
struct RequestRecord {
  int64_t start_ns = 0;  // before the request was serialized and sent
  int64_t end_ns = 0;    // the last (final) response arrived
  int64_t send_ns = 0;   // client time spent preparing and writing the request
  int64_t recv_ns = 0;   // client time spent reading and decoding responses
  uint64_t sequence_id = 0;
  bool sequence_start = false;  // the request carried sequence_start / sequence_end
  bool sequence_end = false;
  bool ok = false;
  // Arrival of each response that carried data (streaming; unary: the one answer).
  std::vector<int64_t> response_ns;
  // Streams: every response read for it, an empty FINAL flag included (the count
  // perf_analyzer's --request-period is checked against).
  size_t responses = 0;
  // OpenAI service kind: the payload it sent (its data step, or a chat session's
  // turn with the history) and one body per response, when Target::keep_bodies.
  size_t step = 0;
  std::string request_body;
  std::vector<std::string> response_bodies;
};

int64_t NowNs();

// Copies the sequence parameters a request is sent with into its record.
inline void MarkSequence(const SequenceParams& seq, RequestRecord* rec) {
  rec->sequence_id = seq.id;
  rec->sequence_start = seq.start;
  rec->sequence_end = seq.end;
}

// Thread-safety: a Connection is used by one thread at a time (its worker).
// Ownership: it owns its socket / channel and its own copies of the templates.
class Connection {
 public:
  virtual ~Connection() = default;
  // Sends template `step` (with the sequence parameters) and waits for the final
  // response. Never throws: failures set rec->ok = false and error().
  virtual void Infer(size_t step, const SequenceParams& seq, RequestRecord* rec) = 0;
  const std::string& error() const { return error_; }

 protected:
  std::string error_;
};

// Thread-safety: used by one thread (its worker). Ownership: owns its sockets or
// completion queue and the calls in flight. Many requests in flight from one thread
// (perf_analyzer's async mode): Send starts one and returns at once; Poll collects
// those that finished: unary calls, or (--streaming) many requests on one gRPC
// stream, matched to their responses by request id. Sequences: the caller
// keeps at most one request of a sequence in flight, so that none overtakes another.
class AsyncClient {
 public:
  virtual ~AsyncClient() = default;
  // Starts template `step` (with the sequence parameters when seq.id != 0); false
  // (and error()) when it could not even be sent, in which case *failed holds its
  // record.
  virtual bool Send(size_t step, const SequenceParams& seq, RequestRecord* failed) = 0;
  // OpenAI service kind: like Send, with `payload` as the body instead of the
  // step's own (a chat session's turn, its history included).
  virtual bool SendPayload(size_t step, const std::string& payload,
                           RequestRecord* failed) {
    error_ = "this client sends no OpenAI payloads";
    failed->ok = false;
    return false;
  }
  // Waits until deadline_ns (steady ns) at most for requests to finish and appends
  // the records of those that did; returns as soon as at least one finished.
  virtual void Poll(int64_t deadline_ns, std::vector<RequestRecord>* done) = 0;
  virtual size_t InFlight() const = 0;
  // The responses (RequestRecord::responses) the n-th request this client was
  // given (1-based, every Send counted) has received so far while it is in flight;
  // nullopt once it has finished or failed. Streams only (perf_analyzer's periodic
  // concurrency); a unary client reports every request finished.
  virtual std::optional<size_t> ResponsesSoFar(uint64_t nth) const {
    return std::nullopt;
  }
  const std::string& error() const { return error_; }

 protected:
  std::string error_;
};

// Opens a connection of target.protocol; nullptr with *error set when it cannot.
std::unique_ptr<Connection> Connect(const std::shared_ptr<const Target>& target,
                                    std::string* error);
std::unique_ptr<Connection> ConnectHttp(const std::shared_ptr<const Target>& target,
                                        std::string* error);
std::unique_ptr<Connection> ConnectGrpc(const std::shared_ptr<const Target>& target,
                                        std::string* error);
// An AsyncClient of target.protocol (connections open on demand); nullptr with
// *error set when the protocol is not built in or a request cannot be built.
std::unique_ptr<AsyncClient> MakeAsyncClient(
    const std::shared_ptr<const Target>& target, std::string* error);
std::unique_ptr<AsyncClient> MakeHttpAsync(const std::shared_ptr<const Target>& target,
                                           std::string* error);
std::unique_ptr<AsyncClient> MakeGrpcAsync(const std::shared_ptr<const Target>& target,
                                           std::string* error);

}  // namespace tritonx::perf
