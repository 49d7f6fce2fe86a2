// Fuzz target: raw bytes on a connection to the C++ HTTP server (libevent's evhttp
// plus tritonx's routing, limits, decompression, infer and generate paths): one
// server per process on loopback, serving a batching echo model "m" (FP32 INPUT0
// [-1]) through the real core and answering control routes with an echo handler.
// Each input is written on a fresh connection, which is then half-closed; the
// server must close it within 10 s (answered or not), and must never crash or
// trip a sanitizer.
//
// Input: the bytes sent (one or more requests, pipelined or cut anywhere).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>

#include "core/model.h"
#include "core/model_registry.h"
#include "fuzz_models.h"
#include "http_server.h"
#include "test_util.h"

using namespace tritonx;

namespace {

// The server, started once: libFuzzer runs every input in this process.
struct Served {
  std::shared_ptr<HttpServer> server;
  int port = 0;
};

const Served& Server() {
  static const Served served = [] {
    auto registry = std::make_shared<ModelRegistry>();
    ModelSpec spec = testing::MakeSpec(8, {-1});
    SchedulerConfig config;
    config.max_batch_size = 8;
    config.dynamic_batching = true;
    auto log = std::make_shared<testing::ExecutionLog>();
    std::vector<std::shared_ptr<Executor>> executors{
        std::make_shared<testing::TestExecutor>(log)};
    registry->Add(std::make_shared<Model>(spec, config, executors));
    HttpServerOptions options;
    options.thread_count = 1;
    options.control_threads = 1;
    options.max_input_size = 1 << 20;  // small, so the limit is reachable
    auto handler = [](HttpControlRequest request, HttpReplyFn reply) {
      HttpReply answer;
      answer.body = request.method + " " + request.url + " " +
                    std::to_string(request.body.size());
      reply(std::move(answer));
    };
    Served out;
    out.server = std::make_shared<HttpServer>(registry, handler, options);
    if (!out.server->Start("127.0.0.1", 0, false, &out.port).ok()) std::abort();
    return out;
  }();
  return served;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const int port = Server().port;
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  // libFuzzer's timer (SIGALRM, each second) interrupts blocking calls: a connect
  // it interrupted goes on by itself, and is retried until it reports done.
  while (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) {
    if (errno == EISCONN) break;
    if (errno != EINTR && errno != EALREADY) {
      std::perror("connect");
      std::abort();
    }
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
  timeval limit{10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof(limit));
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, sizeof(limit));
  size_t sent = 0;
  while (sent < size) {
    const ssize_t n = send(fd, data + sent, size - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;  // the server may close early (a refused request)
    sent += static_cast<size_t>(n);
  }
  shutdown(fd, SHUT_WR);
  char buffer[65536];
  std::string received;
  // recv is interrupted likewise: only the clock says when 10 s have passed.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  for (;;) {
    const ssize_t n = recv(fd, buffer, sizeof(buffer), 0);
    if (n > 0 && received.size() < 4096) {
      received.append(buffer, static_cast<size_t>(n));
    }
    if (n == 0 || (n < 0 && errno == ECONNRESET)) break;
    if (n < 0 && (errno != EINTR || std::chrono::steady_clock::now() > deadline)) {
      std::fprintf(stderr, "no close within 10 s of the half-close (errno %d)\n",
                   errno);
      __builtin_trap();
    }
  }
  close(fd);
  // The status lines of the answers.
  for (size_t at = received.find("HTTP/1."); at != std::string::npos;
       at = received.find("HTTP/1.", at + 1)) {
    fuzz::Trace(received.substr(at, received.find('\r', at) - at).c_str(),
                Status::Ok());
  }
  return 0;
}
