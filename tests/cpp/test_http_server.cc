// The C++ HTTP server's lifecycle: start and stop back to back (a stop issued before
// a worker's event loop has started must still end it), and a control request
// answered by the handler between the two.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <memory>
#include <string>

#include "core/model_registry.h"
#include "gtest/gtest.h"
#include "http_server.h"

namespace tritonx {
namespace {

std::shared_ptr<HttpServer> MakeServer(std::atomic<int>* calls) {
  HttpServerOptions options;
  options.thread_count = 2;
  auto handler = [calls](HttpControlRequest request, HttpReplyFn reply) {
    calls->fetch_add(1);
    HttpReply answer;
    answer.body = request.method + " " + request.url;
    reply(std::move(answer));
  };
  return std::make_shared<HttpServer>(std::make_shared<ModelRegistry>(), handler,
                                      options);
}

// Sends one HTTP/1.0 request to 127.0.0.1:port and returns all the server wrote.
std::string Exchange(int port, const std::string& request) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(static_cast<uint16_t>(port));
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string received;
  if (connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0 &&
      write(fd, request.data(), request.size()) ==
          static_cast<ssize_t>(request.size())) {
    char buffer[4096];
    ssize_t n;
    while ((n = read(fd, buffer, sizeof(buffer))) > 0) received.append(buffer, n);
  }
  close(fd);
  return received;
}

TEST(HttpServerLifecycle, StopRightAfterStartEndsEveryWorker) {
  // Each round races the workers' threads entering their event loops against the
  // stop; a stop that the loop could miss hangs here (ctest's timeout fails it).
  std::atomic<int> calls{0};
  for (int round = 0; round < 200; ++round) {
    auto server = MakeServer(&calls);
    int port = 0;
    ASSERT_TRUE(server->Start("127.0.0.1", 0, false, &port).ok());
    ASSERT_GT(port, 0);
    EXPECT_TRUE(server->running());
    server->Stop(0.0);
    EXPECT_FALSE(server->running());
  }
  EXPECT_EQ(calls.load(), 0);
}

TEST(HttpServerLifecycle, AnswersControlRequestsThenStops) {
  std::atomic<int> calls{0};
  auto server = MakeServer(&calls);
  int port = 0;
  ASSERT_TRUE(server->Start("127.0.0.1", 0, false, &port).ok());
  const std::string reply =
      Exchange(port, "GET /v2/models/x/config HTTP/1.0\r\nHost: x\r\n\r\n");
  EXPECT_NE(reply.find("200 OK"), std::string::npos) << reply;
  EXPECT_NE(reply.find("GET /v2/models/x/config"), std::string::npos) << reply;
  EXPECT_EQ(calls.load(), 1);
  server->Stop(1.0);
  server->Stop(1.0);  // idempotent
  EXPECT_FALSE(server->running());
  // The port is closed: nothing answers any more.
  EXPECT_EQ(Exchange(port, "GET / HTTP/1.0\r\n\r\n"), "");
}

}  // namespace
}  // namespace tritonx
