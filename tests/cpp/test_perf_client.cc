// tritonx-perf's load generator core (csrc/perf): the JSON tensor encoding and
// request parameters, and the LoadDriver's HTTP clients against a loopback server
// written here (sync and async, closed and open loop, custom intervals, sequences).
// The HTTP response reader has its own file (test_http_response_reader.cc).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "http_message.h"
#include "load_driver.h"

namespace tritonx::perf {
namespace {

InputData Tensor(const std::string& datatype, std::string data) {
  InputData in;
  in.name = "X";
  in.datatype = datatype;
  in.data = std::move(data);
  return in;
}

template <typename T>
std::string Raw(std::initializer_list<T> values) {
  std::string out;
  for (T v : values) out.append(reinterpret_cast<const char*>(&v), sizeof(T));
  return out;
}

std::string Json(const InputData& in, bool* ok = nullptr) {
  std::string out, error;
  const bool done = AppendJsonTensorData(in, &out, &error);
  if (ok) *ok = done;
  return done ? out : error;
}

TEST(JsonTensor, NumbersBoolsHalfAndStrings) {
  EXPECT_EQ(Json(Tensor("FP32", Raw<float>({1.5f, -2.0f}))), "[1.5,-2]");
  EXPECT_EQ(Json(Tensor("INT64", Raw<int64_t>({-9000000000LL, 7}))), "[-9000000000,7]");
  EXPECT_EQ(Json(Tensor("UINT8", Raw<uint8_t>({255, 0}))), "[255,0]");
  EXPECT_EQ(Json(Tensor("BOOL", Raw<uint8_t>({1, 0}))), "[true,false]");
  // 0x3c00 = 1.0, 0xc000 = -2.0, 0x0001 = the smallest subnormal.
  EXPECT_EQ(Json(Tensor("FP16", Raw<uint16_t>({0x3c00, 0xc000, 0x0001}))),
            "[1,-2,5.96046448e-08]");
  EXPECT_EQ(Json(Tensor("BF16", Raw<uint16_t>({0x3fc0}))), "[1.5]");
  std::string bytes = Raw<uint32_t>({2}) + "hi" + Raw<uint32_t>({3}) + "a\"b";
  EXPECT_EQ(Json(Tensor("BYTES", bytes)), "[\"hi\",\"a\\\"b\"]");
}

TEST(JsonTensor, WhatJsonCannotCarry) {
  bool ok = true;
  EXPECT_NE(Json(Tensor("BYTES", Raw<uint32_t>({2}) + "\xff\xfe"), &ok).find("UTF-8"),
            std::string::npos);
  EXPECT_FALSE(ok);
  Json(Tensor("BYTES", Raw<uint32_t>({9}) + "ab"), &ok);
  EXPECT_FALSE(ok);
  Json(Tensor("FP32", "abc"), &ok);
  EXPECT_FALSE(ok);
  Json(Tensor("FP32", Raw<float>({std::numeric_limits<float>::quiet_NaN()})), &ok);
  EXPECT_FALSE(ok);
}

TEST(HttpMessagesTest, BinaryAndJsonBodies) {
  Target target;
  target.protocol = "http";
  target.url = "127.0.0.1:1";
  target.model = "m";
  target.steps = {{Tensor("INT32", Raw<int32_t>({1, 2}))}};
  target.steps[0][0].shape = {2};
  target.outputs = {OutputSpec{"Y", "", 0, 0}};
  {
    HttpMessages binary(target);
    ASSERT_TRUE(binary.error().empty());
    const std::string& m = binary.Message(7);
    EXPECT_NE(m.find("Inference-Header-Content-Length: "), std::string::npos);
    EXPECT_NE(m.find("\"binary_data_size\":8"), std::string::npos);
    EXPECT_NE(m.find("\"binary_data\":true"), std::string::npos);
  }
  target.json_inputs = target.json_outputs = true;
  HttpMessages json(target);
  ASSERT_TRUE(json.error().empty());
  const std::string& m = json.Message(0);
  EXPECT_EQ(m.find("Inference-Header-Content-Length"), std::string::npos);
  const std::string body = m.substr(m.find("\r\n\r\n") + 4);
  EXPECT_EQ(body,
            "{\"inputs\":[{\"name\":\"X\",\"datatype\":\"INT32\",\"shape\":[2],"
            "\"data\":[1,2]}],\"outputs\":[{\"name\":\"Y\",\"parameters\":"
            "{\"binary_data\":false}}]}");
  EXPECT_NE(m.find("Content-Length: " + std::to_string(body.size()) + "\r\n"),
            std::string::npos);
  const std::string seq = json.WithSequence(0, SequenceParams{5, true, false});
  EXPECT_NE(seq.find("\"parameters\":{\"sequence_id\":5,\"sequence_start\":true,"
                     "\"sequence_end\":false}}"),
            std::string::npos);
}

TEST(HttpMessagesTest, RequestParametersGoWithEveryRequest) {
  Target target;
  target.url = "127.0.0.1:1";
  target.model = "m";
  target.json_inputs = true;
  target.steps = {{Tensor("INT32", Raw<int32_t>({1}))}};
  target.steps[0][0].shape = {1};
  RequestParameter n{"n", RequestParameter::Kind::kInt, -5, false, ""};
  RequestParameter b{"b", RequestParameter::Kind::kBool, 0, true, ""};
  RequestParameter s{"s", RequestParameter::Kind::kString, 0, false, "x\"y"};
  target.parameters = {n, b, s};
  HttpMessages messages(target);
  ASSERT_TRUE(messages.error().empty());
  const std::string& m = messages.Message(0);
  const std::string body = m.substr(m.find("\r\n\r\n") + 4);
  EXPECT_EQ(body,
            "{\"inputs\":[{\"name\":\"X\",\"datatype\":\"INT32\",\"shape\":[1],"
            "\"data\":[1]}],\"parameters\":{\"n\":-5,\"b\":true,\"s\":\"x\\\"y\"}}");
  // A sequence's request carries both, in the one parameters object.
  const std::string seq = messages.WithSequence(0, SequenceParams{5, true, false});
  EXPECT_NE(seq.find("\"parameters\":{\"n\":-5,\"b\":true,\"s\":\"x\\\"y\","
                     "\"sequence_id\":5,\"sequence_start\":true,"
                     "\"sequence_end\":false}}"),
            std::string::npos)
      << seq;
}

// A KServe-shaped HTTP server on loopback: every request is answered 200 after
// `delay`, on its own thread per connection; it records the most requests it
// held at once.
// Thread-safety: counters are atomic; destroyed by the test thread that made it.
// Ownership: owns its listening socket, the accepted ones and their threads.
class LoopbackServer {
 public:
  explicit LoopbackServer(std::chrono::milliseconds delay) : delay_(delay) {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int one = 1;
    setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    EXPECT_EQ(bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    EXPECT_EQ(listen(fd_, 64), 0);
    socklen_t len = sizeof(addr);
    getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    acceptor_ = std::thread([this] { Accept(); });
  }
  ~LoopbackServer() {
    stop_ = true;
    shutdown(fd_, SHUT_RDWR);
    close(fd_);
    acceptor_.join();
    std::lock_guard<std::mutex> lock(mu_);
    for (int fd : clients_) shutdown(fd, SHUT_RDWR);
    for (auto& t : handlers_) t.join();
    for (int fd : clients_) close(fd);
  }
  std::string url() const { return "127.0.0.1:" + std::to_string(port_); }
  int max_in_flight() const { return max_in_flight_.load(); }
  int requests() const { return requests_.load(); }
  int connections() const { return connections_.load(); }

 private:
  void Accept() {
    for (;;) {
      const int client = accept(fd_, nullptr, nullptr);
      if (client < 0) return;
      ++connections_;
      std::lock_guard<std::mutex> lock(mu_);
      clients_.push_back(client);
      handlers_.emplace_back([this, client] { Serve(client); });
    }
  }
  void Serve(int fd) {
    std::string buffer;
    char chunk[4096];
    for (;;) {
      size_t header_end;
      while ((header_end = buffer.find("\r\n\r\n")) == std::string::npos) {
        const ssize_t n = recv(fd, chunk, sizeof(chunk), 0);
        if (n <= 0) return;
        buffer.append(chunk, static_cast<size_t>(n));
      }
      const size_t at = buffer.find("Content-Length: ");
      const size_t body = at == std::string::npos ? 0 : atoi(buffer.c_str() + at + 16);
      while (buffer.size() < header_end + 4 + body) {
        const ssize_t n = recv(fd, chunk, sizeof(chunk), 0);
        if (n <= 0) return;
        buffer.append(chunk, static_cast<size_t>(n));
      }
      buffer.erase(0, header_end + 4 + body);
      const int now = ++in_flight_;
      int seen = max_in_flight_.load();
      while (now > seen && !max_in_flight_.compare_exchange_weak(seen, now)) {
      }
      std::this_thread::sleep_for(delay_);
      --in_flight_;
      ++requests_;
      const std::string answer =
          "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
          "\r\n{}";
      if (send(fd, answer.data(), answer.size(), MSG_NOSIGNAL) < 0) return;
    }
  }

  std::chrono::milliseconds delay_;
  int fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> in_flight_{0}, max_in_flight_{0}, requests_{0}, connections_{0};
  std::thread acceptor_;
  std::mutex mu_;  // guards clients_ and handlers_
  std::vector<int> clients_;
  std::vector<std::thread> handlers_;
};

std::shared_ptr<Target> HttpTarget(const std::string& url) {
  auto target = std::make_shared<Target>();
  target->protocol = "http";
  target->url = url;
  target->model = "m";
  target->steps = {{Tensor("FP32", Raw<float>({1, 2, 3, 4}))}};
  target->steps[0][0].shape = {4};
  return target;
}

// Runs a load until the server has answered `count` requests (no wall-clock bound
// on how long that takes), then stops it and returns every record.
std::vector<RequestRecord> RunUntil(LoopbackServer& server, LoadOptions options,
                                    int count) {
  LoadDriver driver(HttpTarget(server.url()), options);
  std::string error;
  EXPECT_TRUE(driver.Start(&error)) << error;
  while (server.requests() < count && driver.FirstError().empty()) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  driver.Stop();
  EXPECT_EQ(driver.FirstError(), "");
  return driver.Drain();
}

void ExpectSane(const std::vector<RequestRecord>& records, int at_least) {
  EXPECT_GE(static_cast<int>(records.size()), at_least);
  for (const auto& r : records) {
    EXPECT_TRUE(r.ok);
    EXPECT_LE(r.start_ns, r.end_ns);
    ASSERT_EQ(r.response_ns.size(), 1u);
    EXPECT_GE(r.send_ns, 0);
    EXPECT_GE(r.recv_ns, 0);
  }
}

TEST(LoadDriverHttp, SyncClosedLoopHoldsTheConcurrency) {
  LoopbackServer server(std::chrono::milliseconds(5));
  LoadOptions options;
  options.concurrency = 3;
  const auto records = RunUntil(server, options, 30);
  ExpectSane(records, 30);
  // Three workers, one keep-alive connection each, never more than 3 at once.
  EXPECT_EQ(server.connections(), 3);
  EXPECT_LE(server.max_in_flight(), 3);
  // Every request the server answered was recorded (Stop waits for those in flight).
  EXPECT_EQ(static_cast<int>(records.size()), server.requests());
}

TEST(LoadDriverHttp, AsyncClosedLoopKeepsManyInFlightOnOneThread) {
  LoopbackServer server(std::chrono::milliseconds(20));
  LoadOptions options;
  options.concurrency = 4;
  options.max_threads = 1;
  options.async = true;
  const auto records = RunUntil(server, options, 24);
  ExpectSane(records, 24);
  EXPECT_EQ(static_cast<int>(records.size()), server.requests());
  // One worker thread, yet several requests (on their own connections) at the
  // server, never more than the concurrency.
  EXPECT_GE(server.max_in_flight(), 2);
  EXPECT_LE(server.max_in_flight(), 4);
  EXPECT_LE(server.connections(), 4);
}

TEST(LoadDriverHttp, AsyncRequestRateIsNotCappedByThreads) {
  // 20 ms per request at 400 requests/s needs ~8 in flight; one worker thread sync
  // would hold one. The schedule sends each request at its time regardless.
  LoopbackServer server(std::chrono::milliseconds(20));
  LoadOptions options;
  options.request_rate = 400;
  options.max_threads = 1;
  options.async = true;
  const auto records = RunUntil(server, options, 40);
  ExpectSane(records, 40);
  EXPECT_GE(server.max_in_flight(), 2);
}

TEST(LoadDriverHttp, MaxRequestsSendsExactlyThatMany) {
  for (bool async : {false, true}) {
    LoopbackServer server(std::chrono::milliseconds(2));
    LoadOptions options;
    options.concurrency = 3;
    options.async = async;
    options.max_requests = 10;
    LoadDriver driver(HttpTarget(server.url()), options);
    std::string error;
    ASSERT_TRUE(driver.Start(&error)) << error;
    // The workers end by themselves after the tenth answer.
    while (driver.Completed() < 10)
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    driver.Stop();
    EXPECT_EQ(driver.Drain().size(), 10u) << async;
    EXPECT_EQ(server.requests(), 10) << async;
  }
}

TEST(LoadDriverHttp, CustomIntervalsAreTheGapsBetweenSends) {
  // 30 ms, then two at once, in turn: sends due at 0, 30, 30, 30, 60 ms. A send is
  // never early, so the k-th send is at least the k-th due time after Start (how
  // late it may be is the machine's business and is not checked).
  for (bool async : {false, true}) {
    LoopbackServer server(std::chrono::milliseconds(0));
    LoadOptions options;
    options.intervals_ns = {30'000'000, 0, 0};
    options.max_threads = 2;
    options.async = async;
    options.max_requests = 5;
    LoadDriver driver(HttpTarget(server.url()), options);
    const int64_t before = NowNs();
    std::string error;
    ASSERT_TRUE(driver.Start(&error)) << error;
    while (driver.Completed() < 5)
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    driver.Stop();
    auto records = driver.Drain();
    ASSERT_EQ(records.size(), 5u) << async;
    EXPECT_EQ(server.requests(), 5) << async;
    std::sort(records.begin(), records.end(),
              [](const auto& a, const auto& b) { return a.start_ns < b.start_ns; });
    const int64_t due_ms[] = {0, 30, 30, 30, 60};
    for (size_t k = 0; k < records.size(); ++k) {
      EXPECT_TRUE(records[k].ok);
      EXPECT_GE(records[k].start_ns - before, due_ms[k] * 1'000'000) << k << async;
    }
  }
}

TEST(LoadDriverHttp, FixedScheduleSendsEachRequestOnceAtItsTime) {
  // Due at 0, 25, 25 and 50 ms; the load sends those four and no more (no
  // max_requests), never early, and ends by itself.
  for (bool async : {false, true}) {
    LoopbackServer server(std::chrono::milliseconds(0));
    LoadOptions options;
    options.schedule = {{0, 3}, {25'000'000, 0}, {25'000'000, 1}, {50'000'000, 2}};
    options.max_threads = 2;
    options.async = async;
    LoadDriver driver(HttpTarget(server.url()), options);
    const int64_t before = NowNs();
    std::string error;
    ASSERT_TRUE(driver.Start(&error)) << error;
    while (driver.Completed() < 4)
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    // Nothing more is due: a while later, still four.
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    driver.Stop();
    auto records = driver.Drain();
    ASSERT_EQ(records.size(), 4u) << async;
    EXPECT_EQ(server.requests(), 4) << async;
    std::sort(records.begin(), records.end(),
              [](const auto& a, const auto& b) { return a.start_ns < b.start_ns; });
    const int64_t due_ms[] = {0, 25, 25, 50};
    for (size_t k = 0; k < records.size(); ++k) {
      EXPECT_TRUE(records[k].ok);
      EXPECT_GE(records[k].start_ns - before, due_ms[k] * 1'000'000) << k << async;
    }
  }
}

TEST(LoadDriverHttp, PeriodicConcurrencyNeedsAStream) {
  // Its groups follow the responses each request has had, which only a stream shows
  // (tests/tools/test_perf_load_modes.py runs it over gRPC).
  LoopbackServer server(std::chrono::milliseconds(0));
  LoadOptions options;
  options.periodic_end = 4;
  options.async = true;
  LoadDriver driver(HttpTarget(server.url()), options);
  std::string error;
  EXPECT_FALSE(driver.Start(&error));
  EXPECT_EQ(error, "periodic concurrency needs an asynchronous gRPC stream");
  EXPECT_EQ(server.requests(), 0);
}

// Client-side view of the sequences a load sent: per id, requests in order START
// ... END, never two in flight at once, never two sequences on one id at once.
void ExpectWholeSequences(std::vector<RequestRecord> records, uint64_t first_id,
                          uint64_t end_id) {
  std::sort(records.begin(), records.end(),
            [](const auto& a, const auto& b) { return a.start_ns < b.start_ns; });
  std::map<uint64_t, int64_t> open;  // id -> end of its last request
  for (const auto& r : records) {
    ASSERT_GE(r.sequence_id, first_id);
    ASSERT_LT(r.sequence_id, end_id);
    const auto it = open.find(r.sequence_id);
    if (r.sequence_start) {
      EXPECT_EQ(it, open.end()) << "id " << r.sequence_id << " reused while open";
    } else {
      ASSERT_NE(it, open.end()) << "id " << r.sequence_id << " continued unopened";
      EXPECT_LE(it->second, r.start_ns) << "two requests of one sequence in flight";
    }
    if (r.sequence_end) {
      open.erase(r.sequence_id);
    } else {
      open[r.sequence_id] = r.end_ns;
    }
  }
  EXPECT_TRUE(open.empty()) << open.size() << " sequences never ended";
}

TEST(LoadDriverHttp, AsyncSequencesManyInFlightEachWholeAndInOrder) {
  for (const bool open_loop : {false, true}) {
    LoopbackServer server(std::chrono::milliseconds(5));
    LoadOptions options;
    options.async = true;
    options.max_threads = 1;
    options.sequence_length = 3;
    options.sequence_id_start = 100;
    options.sequence_id_end = 105;  // five ids for four sequences in progress
    if (open_loop) {
      options.request_rate = 2000;
      options.num_sequences = 4;
    } else {
      options.concurrency = 4;
    }
    const auto records = RunUntil(server, options, 60);
    ExpectSane(records, 60);
    EXPECT_EQ(static_cast<int>(records.size()), server.requests());
    // One thread kept several sequences going, one request of each at a time.
    EXPECT_GE(server.max_in_flight(), 2) << open_loop;
    EXPECT_LE(server.max_in_flight(), 4) << open_loop;
    ExpectWholeSequences(records, 100, 105);
  }
}

TEST(LoadDriverHttp, SequenceIdRangeSmallerThanTheSequencesIsRefused) {
  LoopbackServer server(std::chrono::milliseconds(0));
  LoadOptions options;
  options.async = true;
  options.concurrency = 4;
  options.sequence_length = 3;
  options.sequence_id_start = 1;
  options.sequence_id_end = 3;
  LoadDriver driver(HttpTarget(server.url()), options);
  std::string error;
  EXPECT_FALSE(driver.Start(&error));
  EXPECT_NE(error.find("holds 2 ids, fewer than the 4 sequences"), std::string::npos)
      << error;
}

TEST(LoadDriverHttp, UnreachableServerFailsWithAClearError) {
  // A port that was free a moment ago: nobody listens there.
  int port;
  {
    LoopbackServer gone(std::chrono::milliseconds(0));
    port = std::stoi(gone.url().substr(gone.url().rfind(':') + 1));
  }
  LoadDriver driver(HttpTarget("127.0.0.1:" + std::to_string(port)), LoadOptions{});
  std::string error;
  EXPECT_FALSE(driver.Start(&error));
  EXPECT_NE(error.find("failed to connect to 127.0.0.1:"), std::string::npos) << error;
}

}  // namespace
}  // namespace tritonx::perf
