// HTTP/1.1 pieces of tritonx-perf's HTTP clients (http_connection.cc: one blocking
// request at a time; http_async.cc: many non-blocking connections per thread):
// the prebuilt infer requests (binary tensor extension or plain JSON tensors) and an
// incremental response parser, so both clients send and read the same bytes.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "connection.h"

namespace tritonx::perf {

// Every request template of a Target as complete HTTP messages, built once (for
// the OpenAI service kind: each payload POSTed to the endpoint).
// Thread-safety: immutable after construction; Message/WithSequence are const.
// Ownership: owns the built messages; borrows the Target, which outlives it.
class HttpMessages {
 public:
  explicit HttpMessages(const Target& target);
  // Empty when every template could be built; else why not (e.g. a BYTES element
  // that is not UTF-8 cannot travel as a JSON string).
  const std::string& error() const { return error_; }
  size_t size() const { return whole_.size(); }
  // The request for template step % size(), without sequence parameters.
  const std::string& Message(size_t step) const { return whole_[step % whole_.size()]; }
  // The same request carrying sequence id/start/end parameters.
  std::string WithSequence(size_t step, const SequenceParams& seq) const;
  // OpenAI service kind: a POST of `payload` (JSON) to the target's endpoint.
  std::string OpenAIRequest(const std::string& payload) const;

 private:
  std::string Compose(const std::string& json, const std::string& binary) const;

  const Target& target_;
  std::string path_;
  // Target::parameters as JSON object members ("a":1,"b":true), empty when none:
  // every request's "parameters" object starts with them.
  std::string parameters_;
  std::string error_;
  // The JSON header of each template without its closing brace (request parameters
  // go there), and the binary tensor bytes that follow it (empty for JSON tensors).
  std::vector<std::string> jsons_, binaries_, whole_;
};

// Appends the JSON array of one tensor's values ("data" of the KServe V2 JSON
// tensor format) decoded from its raw little-endian bytes; false with *error when
// the bytes do not fit the datatype and shape.
bool AppendJsonTensorData(const InputData& input, std::string* out, std::string* error);

// A connected TCP socket (TCP_NODELAY) to host:port; -1 with *error when not.
int OpenHttpSocket(const std::string& url, std::string* error);

class HttpTlsContext;
// The run's TLS context for an https:// target (nullptr for plain HTTP, or with
// *ok false and *error set when its files cannot be loaded).
std::shared_ptr<HttpTlsContext> HttpTls(const Target& target, std::string* error,
                                        bool* ok);

// {"error":"..."}: the message alone reads better than the JSON.
std::string HttpErrorText(const std::string& body);

}  // namespace tritonx::perf
