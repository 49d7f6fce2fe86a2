// Reads one HTTP/1.1 response as its bytes arrive, for tritonx-perf's HTTP clients
// (http_connection.cc, http_async.cc): the head once it is whole, then the body
// decoded (Content-Length or chunked) as far as it has come. A KServe answer is
// taken whole at the end; a server-sent event stream (the OpenAI service kind)
// yields each event when its last byte arrives, which is when a token's response
// time is taken.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace tritonx::perf {

enum class ParseResult { kIncomplete, kComplete, kError };

// Thread-safety: one thread at a time (a connection's). Ownership: owns the body
// decoded so far; Feed consumes the caller's buffer.
class HttpResponseReader {
 public:
  // Starts a new response. keep_body: keep a 200 answer's body too (a non-200
  // body, the error text, is always kept).
  void Reset(bool keep_body);
  // Consumes the front of *buffer as far as this response goes; kComplete once the
  // whole response was read (bytes after it stay in *buffer), kError with *error.
  ParseResult Feed(std::string* buffer, std::string* error);

  int status() const { return status_; }
  bool close() const { return close_; }  // the server ends the connection after it
  bool event_stream() const { return event_stream_; }  // text/event-stream
  bool head_done() const { return state_ != State::kHead; }
  // The kept body decoded so far and not yet taken.
  std::string& body() { return body_; }
  // The next whole server-sent event of the body so far (its lines, without the
  // blank line that ends it); with `at_end` (the response is complete) a last
  // event without its blank line too. False when there is none.
  bool NextEvent(bool at_end, std::string* event);

 private:
  enum class State { kHead, kBody, kChunkSize, kChunkData, kChunkEnd, kTrailer, kDone };
  bool ParseHead(std::string* buffer, std::string* error);
  void Append(const std::string& buffer, size_t pos, size_t n);

  State state_ = State::kHead;
  bool keep_all_ = false;
  bool keep_ = false;
  int status_ = 0;
  bool close_ = false;
  bool event_stream_ = false;
  uint64_t left_ = 0;  // body or chunk bytes still to come
  std::string body_;
};

}  // namespace tritonx::perf
