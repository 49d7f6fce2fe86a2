#include "http_response_reader.h"

#include <strings.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>

namespace tritonx::perf {
namespace {

// A chunk-size line longer than this is not HTTP (a hex size and extensions).
constexpr size_t kMaxChunkLine = 4096;

bool HeaderIs(const std::string& head, size_t name, size_t name_len, const char* want) {
  return name_len == strlen(want) &&
         strncasecmp(head.data() + name, want, name_len) == 0;
}

bool ValueHas(const std::string& value, const char* token) {
  return strcasestr(value.c_str(), token) != nullptr;
}

}  // namespace

void HttpResponseReader::Reset(bool keep_body) {
  state_ = State::kHead;
  keep_all_ = keep_body;
  keep_ = false;
  status_ = 0;
  close_ = false;
  event_stream_ = false;
  left_ = 0;
  body_.clear();
}

bool HttpResponseReader::ParseHead(std::string* buffer, std::string* error) {
  const size_t head_end = buffer->find("\r\n\r\n");
  if (head_end == std::string::npos) return true;  // not whole yet
  const std::string& b = *buffer;
  const size_t space = b.find(' ');
  if (b.compare(0, 5, "HTTP/") != 0 || space == std::string::npos || space > head_end) {
    *error = "malformed HTTP response";
    return false;
  }
  status_ = atoi(b.c_str() + space + 1);
  int64_t content_length = -1;
  bool chunked = false;
  for (size_t line = b.find("\r\n") + 2; line < head_end;) {
    const size_t eol = b.find("\r\n", line);
    const size_t colon = b.find(':', line);
    if (colon != std::string::npos && colon < eol) {
      size_t at = colon + 1;
      while (at < eol && b[at] == ' ') ++at;
      const std::string value = b.substr(at, eol - at);
      const size_t name_len = colon - line;
      if (HeaderIs(b, line, name_len, "content-length")) {
        content_length = atoll(value.c_str());
      } else if (HeaderIs(b, line, name_len, "transfer-encoding")) {
        chunked = ValueHas(value, "chunked");
      } else if (HeaderIs(b, line, name_len, "connection")) {
        close_ = ValueHas(value, "close");
      } else if (HeaderIs(b, line, name_len, "content-type")) {
        event_stream_ = ValueHas(value, "text/event-stream");
      }
    }
    line = eol + 2;
  }
  buffer->erase(0, head_end + 4);
  keep_ = keep_all_ || status_ != 200;
  if (chunked) {
    state_ = State::kChunkSize;
  } else {
    left_ = static_cast<uint64_t>(std::max<int64_t>(content_length, 0));
    state_ = left_ == 0 ? State::kDone : State::kBody;
  }
  return true;
}

void HttpResponseReader::Append(const std::string& buffer, size_t pos, size_t n) {
  if (keep_) body_.append(buffer, pos, n);
}

ParseResult HttpResponseReader::Feed(std::string* buffer, std::string* error) {
  for (;;) {
    switch (state_) {
      case State::kHead:
        if (!ParseHead(buffer, error)) return ParseResult::kError;
        if (state_ == State::kHead) return ParseResult::kIncomplete;
        break;
      case State::kBody:
      case State::kChunkData: {
        const size_t n = static_cast<size_t>(std::min<uint64_t>(left_, buffer->size()));
        Append(*buffer, 0, n);
        buffer->erase(0, n);
        left_ -= n;
        if (left_ > 0) return ParseResult::kIncomplete;
        state_ = state_ == State::kBody ? State::kDone : State::kChunkEnd;
        break;
      }
      case State::kChunkSize: {
        const size_t eol = buffer->find("\r\n");
        if (eol == std::string::npos) {
          if (buffer->size() <= kMaxChunkLine) return ParseResult::kIncomplete;
          *error = "malformed chunked HTTP response";
          return ParseResult::kError;
        }
        char* end = nullptr;
        const uint64_t size = strtoull(buffer->c_str(), &end, 16);
        if (end == buffer->c_str()) {
          *error = "malformed chunked HTTP response";
          return ParseResult::kError;
        }
        buffer->erase(0, eol + 2);
        left_ = size;
        state_ = size == 0 ? State::kTrailer : State::kChunkData;
        break;
      }
      case State::kChunkEnd:
        if (buffer->size() < 2) return ParseResult::kIncomplete;
        buffer->erase(0, 2);
        state_ = State::kChunkSize;
        break;
      case State::kTrailer: {
        const size_t eol = buffer->find("\r\n");
        if (eol == std::string::npos) return ParseResult::kIncomplete;
        buffer->erase(0, eol + 2);
        if (eol == 0) state_ = State::kDone;  // the blank line after the trailers
        break;
      }
      case State::kDone:
        return ParseResult::kComplete;
    }
  }
}

bool HttpResponseReader::NextEvent(bool at_end, std::string* event) {
  for (;;) {
    // Events end with a blank line; lines end with \n or \r\n.
    size_t end = body_.find("\n\n");
    size_t separator = 2;
    const size_t crlf = body_.find("\r\n\r\n");
    if (crlf != std::string::npos && (end == std::string::npos || crlf < end)) {
      end = crlf;
      separator = 4;
    }
    if (end == std::string::npos) {
      if (!at_end || body_.find_first_not_of("\r\n") == std::string::npos) {
        if (at_end) body_.clear();
        return false;
      }
      end = body_.size();
      separator = 0;
    }
    event->assign(body_, 0, end);
    body_.erase(0, end + separator);
    if (event->find_first_not_of("\r\n") != std::string::npos) return true;
  }
}

}  // namespace tritonx::perf
