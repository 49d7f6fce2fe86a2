// Raw HTTP/1.1 keep-alive client for KServe V2 infer with Triton's binary tensor
// extension: one blocking socket per connection, every request prebuilt when the
// load starts, so the client costs a send() and a few recv() per request.
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <thread>

#include "connection.h"

namespace tritonx::perf {
namespace {

void AppendJsonString(std::string* out, const std::string& value) {
  out->push_back('"');
  for (char c : value) {
    if (c == '"' || c == '\\') {
      out->push_back('\\');
      out->push_back(c);
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      snprintf(buf, sizeof(buf), "\\u%04x", static_cast<unsigned char>(c));
      out->append(buf);
    } else {
      out->push_back(c);
    }
  }
  out->push_back('"');
}

std::string ShmParameters(const std::string& region, uint64_t offset, uint64_t size) {
  std::string json = "\"parameters\":{\"shared_memory_region\":";
  AppendJsonString(&json, region);
  json += ",\"shared_memory_offset\":" + std::to_string(offset) +
          ",\"shared_memory_byte_size\":" + std::to_string(size) + "}";
  return json;
}

// The JSON header of one request without its closing brace (request parameters
// go there), and the binary tensor bytes that follow it.
void BuildBody(const Target& target, const std::vector<InputData>& inputs,
               std::string* json, std::string* binary) {
  *json = "{\"inputs\":[";
  for (size_t i = 0; i < inputs.size(); ++i) {
    const InputData& in = inputs[i];
    if (i) *json += ",";
    *json += "{\"name\":";
    AppendJsonString(json, in.name);
    *json += ",\"datatype\":";
    AppendJsonString(json, in.datatype);
    *json += ",\"shape\":[";
    for (size_t d = 0; d < in.shape.size(); ++d) {
      if (d) *json += ",";
      *json += std::to_string(in.shape[d]);
    }
    *json += "],";
    if (!in.shm_region.empty()) {
      *json += ShmParameters(in.shm_region, in.shm_offset, in.shm_byte_size);
    } else {
      *json +=
          "\"parameters\":{\"binary_data_size\":" + std::to_string(in.data.size()) +
          "}";
      *binary += in.data;
    }
    *json += "}";
  }
  *json += "]";
  if (!target.outputs.empty()) {
    *json += ",\"outputs\":[";
    for (size_t i = 0; i < target.outputs.size(); ++i) {
      const OutputSpec& out = target.outputs[i];
      if (i) *json += ",";
      *json += "{\"name\":";
      AppendJsonString(json, out.name);
      *json += ",";
      *json += out.shm_region.empty()
                   ? std::string("\"parameters\":{\"binary_data\":true}")
                   : ShmParameters(out.shm_region, out.shm_offset, out.shm_byte_size);
      *json += "}";
    }
    *json += "]";
  }
}

bool IEquals(const char* a, size_t n, const char* b) {
  if (strlen(b) != n) return false;
  for (size_t i = 0; i < n; ++i) {
    if (tolower(static_cast<unsigned char>(a[i])) != b[i]) return false;
  }
  return true;
}

// Thread-safety: one worker thread at a time. Ownership: owns its socket.
class HttpConnection : public Connection {
 public:
  explicit HttpConnection(std::shared_ptr<const Target> target)
      : target_(std::move(target)) {
    const auto colon = target_->url.rfind(':');
    host_ = colon == std::string::npos ? target_->url : target_->url.substr(0, colon);
    port_ = colon == std::string::npos ? "80" : target_->url.substr(colon + 1);
    path_ = "/v2/models/" + target_->model;
    if (!target_->version.empty()) path_ += "/versions/" + target_->version;
    path_ += "/infer";
    for (const auto& step : target_->steps) {
      std::string json, binary;
      BuildBody(*target_, step, &json, &binary);
      jsons_.push_back(std::move(json));
      binaries_.push_back(std::move(binary));
      whole_.push_back(Compose(jsons_.back() + "}", binaries_.back()));
    }
  }
  ~HttpConnection() override { Close(); }

  bool Open(std::string* error) {
    Close();
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* found = nullptr;
    const int rc = getaddrinfo(host_.c_str(), port_.c_str(), &hints, &found);
    if (rc != 0) {
      *error = "cannot resolve '" + host_ + "': " + gai_strerror(rc);
      return false;
    }
    std::string last = "no address";
    for (addrinfo* ai = found; ai != nullptr; ai = ai->ai_next) {
      const int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, 0);
      if (fd < 0) continue;
      if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        fd_ = fd;
        break;
      }
      last = strerror(errno);
      close(fd);
    }
    freeaddrinfo(found);
    if (fd_ < 0) {
      *error = "failed to connect to " + target_->url + ": " + last;
      return false;
    }
    buffer_.clear();
    return true;
  }

  void Infer(size_t step, const SequenceParams& seq, RequestRecord* rec) override {
    rec->start_ns = NowNs();
    rec->sequence_id = seq.id;
    const size_t index = step % whole_.size();
    std::string with_sequence;
    if (seq.id != 0) {
      std::string json = jsons_[index] +
                         ",\"parameters\":{\"sequence_id\":" + std::to_string(seq.id) +
                         ",\"sequence_start\":" + (seq.start ? "true" : "false") +
                         ",\"sequence_end\":" + (seq.end ? "true" : "false") + "}}";
      with_sequence = Compose(json, binaries_[index]);
    }
    const std::string& message = seq.id == 0 ? whole_[index] : with_sequence;
    int status = 0;
    std::string body;
    int64_t first_byte = 0;
    for (int attempt = 0;; ++attempt) {
      // A kept-alive connection the server has closed in the meantime fails before
      // any byte of an answer: the request never reached it, so send it once more on
      // a fresh connection, as HTTP clients do.
      const bool reused = fd_ >= 0;
      if (!reused && !Open(&error_)) {
        Fail(rec);
        // Back off a little: an unreachable server must not become a busy loop.
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
        return;
      }
      if (!SendAll(message.data(), message.size())) {
        error_ = std::string("failed to send the request: ") + strerror(errno);
        Close();
        if (reused && attempt == 0) continue;
        Fail(rec);
        return;
      }
      rec->send_ns = NowNs() - rec->start_ns;
      if (ReadResponse(&status, &body, &first_byte)) break;
      Close();
      if (reused && attempt == 0 && first_byte == 0) continue;
      Fail(rec);
      return;
    }
    rec->end_ns = NowNs();
    rec->recv_ns = rec->end_ns - (first_byte ? first_byte : rec->end_ns);
    if (status != 200) {
      error_ = "HTTP " + std::to_string(status) + ": " + ErrorText(body);
      rec->ok = false;
      return;
    }
    rec->ok = true;
    rec->response_ns.push_back(rec->end_ns);
  }

 private:
  std::string Compose(const std::string& json, const std::string& binary) const {
    std::string message = "POST " + path_ + " HTTP/1.1\r\nHost: " + target_->url +
                          "\r\nContent-Type: application/octet-stream"
                          "\r\nInference-Header-Content-Length: " +
                          std::to_string(json.size()) + "\r\nContent-Length: " +
                          std::to_string(json.size() + binary.size()) + "\r\n";
    for (const auto& [name, value] : target_->http_headers) {
      message += name + ": " + value + "\r\n";
    }
    message += "\r\n";
    message += json;
    message += binary;
    return message;
  }

  static std::string ErrorText(const std::string& body) {
    // {"error":"..."}: the message alone reads better than the JSON.
    const auto key = body.find("\"error\"");
    if (key != std::string::npos) {
      const auto open = body.find('"', body.find(':', key) + 1);
      const auto close = body.rfind('"');
      if (open != std::string::npos && close > open) {
        return body.substr(open + 1, close - open - 1);
      }
    }
    return body.substr(0, 300);
  }

  void Fail(RequestRecord* rec) {
    rec->ok = false;
    rec->end_ns = NowNs();
  }

  void Close() {
    if (fd_ >= 0) close(fd_);
    fd_ = -1;
    buffer_.clear();
  }

  bool SendAll(const char* data, size_t size) {
    while (size > 0) {
      const ssize_t n = send(fd_, data, size, MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EINTR) continue;
        return false;
      }
      data += n;
      size -= static_cast<size_t>(n);
    }
    return true;
  }

  // Appends at least one more byte to buffer_; false at EOF or error.
  bool Fill(int64_t* first_byte) {
    char chunk[65536];
    for (;;) {
      const ssize_t n = recv(fd_, chunk, sizeof(chunk), 0);
      if (n > 0) {
        if (*first_byte == 0) *first_byte = NowNs();
        buffer_.append(chunk, static_cast<size_t>(n));
        return true;
      }
      if (n < 0 && errno == EINTR) continue;
      error_ = n == 0 ? "the server closed the connection"
                      : std::string("failed to read the response: ") + strerror(errno);
      return false;
    }
  }

  bool ReadResponse(int* status, std::string* body, int64_t* first_byte) {
    size_t header_end;
    while ((header_end = buffer_.find("\r\n\r\n")) == std::string::npos) {
      if (!Fill(first_byte)) return false;
    }
    // Status line: HTTP/1.1 200 OK
    const auto space = buffer_.find(' ');
    if (space == std::string::npos || space > header_end) {
      error_ = "malformed HTTP response";
      return false;
    }
    *status = atoi(buffer_.c_str() + space + 1);
    int64_t content_length = -1;
    bool chunked = false;
    bool close_after = false;
    size_t line = buffer_.find("\r\n") + 2;
    while (line < header_end) {
      const size_t eol = buffer_.find("\r\n", line);
      const size_t colon = buffer_.find(':', line);
      if (colon != std::string::npos && colon < eol) {
        size_t value = colon + 1;
        while (value < eol && buffer_[value] == ' ') ++value;
        const char* name = buffer_.data() + line;
        const size_t name_len = colon - line;
        const std::string v = buffer_.substr(value, eol - value);
        if (IEquals(name, name_len, "content-length")) {
          content_length = atoll(v.c_str());
        } else if (IEquals(name, name_len, "transfer-encoding")) {
          chunked = v.find("chunked") != std::string::npos;
        } else if (IEquals(name, name_len, "connection")) {
          close_after = v.find("close") != std::string::npos;
        }
      }
      line = eol + 2;
    }
    size_t pos = header_end + 4;
    if (chunked) {
      body->clear();
      for (;;) {
        size_t eol;
        while ((eol = buffer_.find("\r\n", pos)) == std::string::npos) {
          if (!Fill(first_byte)) return false;
        }
        const size_t size = strtoull(buffer_.c_str() + pos, nullptr, 16);
        while (buffer_.size() < eol + 2 + size + 2) {
          if (!Fill(first_byte)) return false;
        }
        body->append(buffer_, eol + 2, size);
        pos = eol + 2 + size + 2;
        if (size == 0) break;
      }
    } else {
      if (content_length < 0) content_length = 0;
      while (buffer_.size() < pos + static_cast<size_t>(content_length)) {
        if (!Fill(first_byte)) return false;
      }
      // Only error bodies are read as text; success bodies are just consumed.
      if (*status != 200)
        body->assign(buffer_, pos, static_cast<size_t>(content_length));
      pos += static_cast<size_t>(content_length);
    }
    buffer_.erase(0, pos);
    if (close_after) Close();
    return true;
  }

  std::shared_ptr<const Target> target_;
  std::string host_, port_, path_;
  std::vector<std::string> jsons_, binaries_, whole_;
  int fd_ = -1;
  std::string buffer_;
};

}  // namespace

std::unique_ptr<Connection> ConnectHttp(const std::shared_ptr<const Target>& target,
                                        std::string* error) {
  auto connection = std::make_unique<HttpConnection>(target);
  if (!connection->Open(error)) return nullptr;
  return connection;
}

}  // namespace tritonx::perf
