#include "http_error_page.h"

#include <event2/buffer.h>

#include <cstring>
#include <string>

#include "core/http_messages.h"
#include "http_infer_codec.h"
#include "http_server_impl.h"

namespace tritonx {
namespace httpfe {
namespace {

thread_local const ErrorPageLimits* thread_limits = nullptr;

// How evhttp's error pages (evhttp_send_error's ERR_FORMAT) end; no answer of ours
// ends this way.
constexpr char kPageTail[] = "</BODY></HTML>\n";
constexpr size_t kPageTailSize = sizeof(kPageTail) - 1;
constexpr char kPageStart[] = "\r\n\r\n<HTML><HEAD>\n<TITLE>";
// A whole page with its head is a few hundred bytes.
constexpr size_t kMaxPageReply = 2048;

std::string Replacement(const std::string& version, int evhttp_status,
                        bool input_left) {
  int status = evhttp_status;
  std::string message = ReasonPhrase(evhttp_status);
  const ErrorPageLimits* limits = thread_limits;
  if (evhttp_status == 413) {
    // A body declared past the bound is read to its end (lingering close) before
    // this answer and leaves nothing unread; a chunked body refused part-way
    // (broken, or past the bound) leaves chunk data. libevent keeps the request's
    // state private, so that is all there is to tell the two apart.
    status = 400;
    message =
        input_left ? "Bad Request" : HttpBodyTooLarge(limits ? limits->body_cap : 0);
  }
  const std::string body = ErrorBody(message);
  return version + " " + std::to_string(status) + " " + ReasonPhrase(status) +
         "\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: " +
         std::to_string(body.size()) + "\r\n\r\n" + body;
}

// Output-buffer callback: runs after every change to the buffer, on the loop thread.
void OnOutput(evbuffer* out, const evbuffer_cb_info* info, void* arg) {
  // evhttp adds a page in one piece after its head; most writes end here.
  if (info->n_added < kPageTailSize || info->n_added > kMaxPageReply) return;
  const size_t length = evbuffer_get_length(out);
  if (length > kMaxPageReply) return;
  // The page arrives as a chain of its own (evbuffer_add_buffer): look at the end
  // of the last chain without copying.
  evbuffer_iovec chains[16];
  const int count = evbuffer_peek(out, -1, nullptr, chains, 16);
  if (count <= 0 || count > 16) return;
  const evbuffer_iovec& last = chains[count - 1];
  if (last.iov_len < kPageTailSize ||
      std::memcmp(
          static_cast<const char*>(last.iov_base) + last.iov_len - kPageTailSize,
          kPageTail, kPageTailSize) != 0) {
    return;
  }
  // Read through the chains: a socket bufferevent keeps its output's front frozen
  // (only its writer drains it), and evbuffer_copyout refuses a frozen buffer.
  std::string reply;
  reply.reserve(length);
  for (int i = 0; i < count; ++i) {
    reply.append(static_cast<const char*>(chains[i].iov_base), chains[i].iov_len);
  }
  // Only a lone page (evhttp writes nothing else to a connection it answers this
  // way), status line first: "HTTP/1.x NNN ...".
  if (reply.compare(0, 7, "HTTP/1.") != 0 || reply.size() < 12 ||
      reply.find(kPageStart) == std::string::npos) {
    return;
  }
  const int status = std::atoi(reply.c_str() + 9);
  auto* bev = static_cast<bufferevent*>(arg);
  const bool input_left = evbuffer_get_length(bufferevent_get_input(bev)) > 0;
  const std::string json = Replacement(reply.substr(0, 8), status, input_left);
  // Changing the buffer runs this callback again; neither change matches above.
  // A frozen front is thawed for the drain, as the socket writer does for its own.
  if (evbuffer_drain(out, length) != 0) {
    evbuffer_unfreeze(out, 1);
    evbuffer_drain(out, length);
    evbuffer_freeze(out, 1);
  }
  evbuffer_add(out, json.data(), json.size());
}

}  // namespace

void SetThreadErrorPageLimits(const ErrorPageLimits* limits) { thread_limits = limits; }

void WatchErrorPages(bufferevent* bev) {
  evbuffer_add_cb(bufferevent_get_output(bev), &OnOutput, bev);
}

}  // namespace httpfe
}  // namespace tritonx
