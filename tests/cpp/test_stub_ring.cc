// StubRing and StubExecutor across a real process boundary: the stub end runs in a
// forked child that maps the server's region from the inherited descriptor, as a stub
// process does, and answers through its own region.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/stub_executor.h"
#include "core/stub_ring.h"
#include "core/stub_stream.h"
#include "core/stub_wire.h"
#include "test_util.h"

namespace tritonx::stub {
namespace {

enum class Behaviour { kEcho, kExitOnFirst, kHang, kGarbage };

// The child: echoes every input of every request as an output named OUT_<input>
// (doubling each byte to prove the bytes went through the stub), until finalize.
[[noreturn]] void RunStub(int server_fd, Behaviour behaviour, int out_fd_pipe) {
  auto client = RingClient::Open(server_fd, 4096, 4096);
  if (!client) _exit(10);
  int out_fd = client->out_fd();
  // The real stub sends its region over the socket; the test inherits nothing back,
  // so it passes the descriptor number through a pipe and the parent opens /proc.
  if (write(out_fd_pipe, &out_fd, sizeof(out_fd)) != sizeof(out_fd)) _exit(11);
  std::vector<WireRequest> requests;
  MessageWriter reply;
  while (true) {
    std::string_view message;
    if (client->Wait(&message) != RequestKind::kExecute) _exit(0);
    if (behaviour == Behaviour::kExitOnFirst) _exit(3);
    if (behaviour == Behaviour::kHang) pause();
    if (!ReadRequests(message, &requests)) _exit(12);
    size_t total = 0;
    for (const WireRequest& q : requests) {
      for (const WireTensor& t : q.inputs) total += Padded(t.bytes);
    }
    reply.Clear();
    WriteReplyHeader(reply, static_cast<uint32_t>(requests.size()));
    std::vector<std::string> names;
    names.reserve(64);
    size_t offset = 0;
    std::vector<std::pair<const WireTensor*, size_t>> copies;
    for (const WireRequest& q : requests) {
      std::vector<WireTensor> outs;
      for (const WireTensor& t : q.inputs) {
        names.push_back("OUT_" + std::string(t.name));
        WireTensor o = t;
        o.name = names.back();
        o.offset = offset;
        copies.emplace_back(&t, offset);
        offset += Padded(t.bytes);
        outs.push_back(o);
      }
      Parameters params;
      params.emplace_back("id", std::string(q.id));
      WriteOutputs(reply, outs, params);
    }
    WriteRequestMarks(reply, {}, {});
    const std::string& bytes = reply.bytes();
    char* out = client->Reserve(total + bytes.size());
    for (auto [t, off] : copies) {
      const char* src = client->server_data() + t->offset;
      for (size_t i = 0; i < t->bytes; ++i)
        out[off + i] = static_cast<char>(src[i] * 2);
    }
    if (behaviour == Behaviour::kGarbage) {
      std::memset(out + total, 0xff, bytes.size());
    } else {
      std::memcpy(out + total, bytes.data(), bytes.size());
    }
    client->Reply(total, bytes.size());
  }
}

struct Child {
  pid_t pid = -1;
  int out_fd = -1;
};

// Forks a stub for `executor` and attaches it.
Child StartStub(StubExecutor& executor, Behaviour behaviour) {
  const int ring_fd = executor.Prepare();
  EXPECT_GE(ring_fd, 0);
  int pipefd[2];
  EXPECT_EQ(pipe(pipefd), 0);
  Child child;
  child.pid = fork();
  if (child.pid == 0) {
    close(pipefd[0]);
    RunStub(dup(ring_fd), behaviour, pipefd[1]);
  }
  close(pipefd[1]);
  int remote_fd = -1;
  EXPECT_EQ(read(pipefd[0], &remote_fd, sizeof(remote_fd)),
            static_cast<ssize_t>(sizeof(remote_fd)));
  close(pipefd[0]);
  const std::string path =
      "/proc/" + std::to_string(child.pid) + "/fd/" + std::to_string(remote_fd);
  child.out_fd = open(path.c_str(), O_RDWR | O_CLOEXEC);
  EXPECT_GE(child.out_fd, 0);
  EXPECT_TRUE(executor.Attach(child.out_fd, child.pid));
  return child;
}

int Reap(pid_t pid) {
  int status = 0;
  waitpid(pid, &status, 0);
  return status;
}

RequestPtr RequestWith(const std::string& id, std::vector<float>* data, size_t n) {
  auto request = std::make_shared<InferenceRequest>();
  request->id = id;
  Tensor t;
  t.name = "IN";
  t.dtype = DataType::kFp32;
  t.shape = {1, static_cast<int64_t>(n)};
  data->assign(n, 1.5f);
  t.data = reinterpret_cast<const char*>(data->data());
  t.byte_size = n * sizeof(float);
  request->inputs.push_back(t);
  return request;
}

TEST(StubRing, ExecutesAcrossProcessesAndGrowsBothRegions) {
  StubExecutor executor("echo_0_0", 0, 1024, 1024);
  Child child = StartStub(executor, Behaviour::kEcho);
  // Small first, then far beyond both regions' initial size (both grow in place).
  for (size_t n : {size_t{4}, size_t{100000}, size_t{8}}) {
    std::vector<float> a, b;
    Batch batch;
    batch.requests = {RequestWith("a", &a, n), RequestWith("b", &b, n)};
    executor.Execute(batch);
    ASSERT_TRUE(batch.batch_status.ok()) << batch.batch_status.message();
    ASSERT_EQ(batch.responses.size(), 2u);
    for (size_t r = 0; r < 2; ++r) {
      const InferenceResponse& response = *batch.responses[r];
      ASSERT_TRUE(response.status.ok());
      ASSERT_EQ(response.outputs.size(), 1u);
      const Tensor& out = response.outputs[0];
      EXPECT_EQ(out.name, "OUT_IN");
      EXPECT_EQ(out.byte_size, n * sizeof(float));
      EXPECT_EQ(out.shape, (Shape{1, static_cast<int64_t>(n)}));
      // each byte doubled by the stub: compare against the same transform
      std::vector<char> expect(n * sizeof(float));
      const char* src = reinterpret_cast<const char*>((r == 0 ? a : b).data());
      for (size_t i = 0; i < expect.size(); ++i)
        expect[i] = static_cast<char>(src[i] * 2);
      EXPECT_EQ(std::memcmp(out.data, expect.data(), expect.size()), 0);
      ASSERT_EQ(response.parameters.size(), 1u);
      EXPECT_EQ(std::get<std::string>(response.parameters[0].second),
                r == 0 ? "a" : "b");
    }
  }
  EXPECT_TRUE(executor.PostFinalize());
  EXPECT_EQ(WEXITSTATUS(Reap(child.pid)), 0);
  // After finalize nothing runs.
  std::vector<float> a;
  Batch batch;
  batch.requests = {RequestWith("a", &a, 4)};
  executor.Execute(batch);
  EXPECT_EQ(batch.batch_status.message(), "Stub process 'echo_0_0' is not healthy.");
}

// Responses read their outputs in place from the stub's region (leased): a reply
// must never be written over the outputs of responses still held, whether leased or,
// past the lease cap, copied out; and a region whose leases come back stays small.
TEST(StubRing, HeldResponsesKeepTheirOutputsWhileLaterRepliesArrive) {
  StubExecutor executor("lease_0_0", 0, 1024, 1024);
  Child child = StartStub(executor, Behaviour::kEcho);
  // A failed assertion returns early: the stub must not outlive the test.
  struct KillOnExit {
    pid_t pid;
    ~KillOnExit() {
      if (pid > 0) {
        kill(pid, SIGKILL);
        waitpid(pid, nullptr, 0);
      }
    }
  } guard{child.pid};
  constexpr size_t kFloats = 25000;  // 100 KB per output
  const size_t reply_bytes = 2 * Padded(kFloats * sizeof(float));
  auto region_size = [&] {
    struct stat st {};
    EXPECT_EQ(fstat(child.out_fd, &st), 0);
    return static_cast<size_t>(st.st_size);
  };
  // Released at once: every reply reuses the same bytes.
  for (int i = 0; i < 20; ++i) {
    std::vector<float> a, b;
    Batch batch;
    batch.requests = {RequestWith("a", &a, kFloats), RequestWith("b", &b, kFloats)};
    executor.Execute(batch);
    ASSERT_TRUE(batch.batch_status.ok()) << batch.batch_status.message();
  }
  EXPECT_LE(region_size(), 2 * reply_bytes + 4096);
  // Held: four times the lease cap, each batch with its own input value.
  std::vector<std::unique_ptr<InferenceResponse>> held;
  const size_t rounds = 4 * RingServer::kMaxLeases;
  for (size_t i = 0; i < rounds; ++i) {
    std::vector<float> a, b;
    Batch batch;
    batch.requests = {RequestWith("a", &a, kFloats), RequestWith("b", &b, kFloats)};
    for (float& v : a) v = static_cast<float>(i + 1);
    for (float& v : b) v = static_cast<float>(i + 100);
    executor.Execute(batch);
    ASSERT_TRUE(batch.batch_status.ok()) << batch.batch_status.message();
    for (auto& response : batch.responses) held.push_back(std::move(response));
  }
  for (size_t i = 0; i < rounds; ++i) {
    for (size_t r = 0; r < 2; ++r) {
      const Tensor& out = held[2 * i + r]->outputs.at(0);
      const float value = static_cast<float>(r == 0 ? i + 1 : i + 100);
      std::vector<char> expect(kFloats * sizeof(float));
      const char* src = reinterpret_cast<const char*>(&value);
      for (size_t k = 0; k < expect.size(); ++k)
        expect[k] = static_cast<char>(src[k % sizeof(float)] * 2);
      ASSERT_EQ(std::memcmp(out.data, expect.data(), expect.size()), 0)
          << "batch " << i << " request " << r;
    }
  }
  // Leases pin at most kMaxLeases replies (plus the one being written; the region
  // grows by doubling), not all of them.
  EXPECT_LT(region_size(), 2 * (RingServer::kMaxLeases + 1) * (reply_bytes + 4096));
  EXPECT_LT(2 * (RingServer::kMaxLeases + 1) * (reply_bytes + 4096),
            rounds * reply_bytes);
  held.clear();
  EXPECT_TRUE(executor.PostFinalize());
  EXPECT_EQ(WEXITSTATUS(Reap(child.pid)), 0);
  guard.pid = -1;
}

TEST(StubRing, AStubThatDiesMidExecuteFailsTheBatch) {
  StubExecutor executor("crash_0_0", 0, 1024, 1024);
  Child child = StartStub(executor, Behaviour::kExitOnFirst);
  std::vector<float> a;
  Batch batch;
  batch.requests = {RequestWith("a", &a, 4)};
  executor.Execute(batch);  // returns once the pidfd says the child ended
  EXPECT_EQ(batch.batch_status.code(), StatusCode::kInternal);
  EXPECT_EQ(batch.batch_status.message(), "Stub process 'crash_0_0' is not healthy.");
  EXPECT_EQ(executor.TakeFailure(), "the process ended");
  EXPECT_EQ(WEXITSTATUS(Reap(child.pid)), 3);
}

TEST(StubRing, AStubPastTheTimeoutIsKilled) {
  StubExecutor executor("hang_0_0", 50'000'000, 1024, 1024);
  Child child = StartStub(executor, Behaviour::kHang);
  std::vector<float> a;
  Batch batch;
  batch.requests = {RequestWith("a", &a, 4)};
  executor.Execute(batch);
  EXPECT_EQ(batch.batch_status.message(), "Stub process 'hang_0_0' is not healthy.");
  EXPECT_NE(executor.TakeFailure().find("ran past"), std::string::npos);
  const int status = Reap(child.pid);
  EXPECT_TRUE(WIFSIGNALED(status));
  EXPECT_EQ(WTERMSIG(status), SIGKILL);
}

TEST(StubRing, DetachReleasesAnExecuteWaitingOnAStubThatWillNotAnswer) {
  // What the socket reader does when it sees the stub's socket end (the fallback
  // where no pidfd tells).
  StubExecutor executor("hang_0_0", 0, 1024, 1024);
  Child child = StartStub(executor, Behaviour::kHang);
  std::vector<float> a;
  Batch batch;
  batch.requests = {RequestWith("a", &a, 4)};
  std::thread detach([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    executor.Detach();
  });
  executor.Execute(batch);
  detach.join();
  EXPECT_EQ(batch.batch_status.message(), "Stub process 'hang_0_0' is not healthy.");
  kill(child.pid, SIGKILL);
  Reap(child.pid);
}

TEST(StubRing, AMalformedReplyIsAnErrorNotACrash) {
  StubExecutor executor("bad_0_0", 0, 1024, 1024);
  Child child = StartStub(executor, Behaviour::kGarbage);
  std::vector<float> a;
  Batch batch;
  batch.requests = {RequestWith("a", &a, 4)};
  executor.Execute(batch);
  EXPECT_FALSE(batch.batch_status.ok());
  EXPECT_TRUE(executor.PostFinalize());
  Reap(child.pid);
}

TEST(StubWire, ReadersRefuseTruncatedMessages) {
  std::vector<float> a;
  std::vector<RequestPtr> requests = {RequestWith("abc", &a, 3)};
  requests[0]->parameters.emplace_back("k", int64_t{7});
  requests[0]->correlation_id_str = "seq";
  MessageWriter w;
  WriteRequests(w, requests, /*first_key=*/41);
  std::vector<WireRequest> read;
  ASSERT_TRUE(ReadRequests(w.bytes(), &read));
  ASSERT_EQ(read.size(), 1u);
  EXPECT_EQ(read[0].key, 41u);
  EXPECT_EQ(read[0].id, "abc");
  EXPECT_EQ(read[0].correlation_id_str, "seq");
  EXPECT_EQ(std::get<int64_t>(read[0].parameters[0].second), 7);
  for (size_t cut = 0; cut < w.bytes().size(); ++cut) {
    EXPECT_FALSE(ReadRequests(std::string_view(w.bytes()).substr(0, cut), &read))
        << cut;
  }
}

// An output a stub names is taken only when it lies in the data area and its bytes
// fill its shape: the server slices outputs by their shapes.
TEST(StubWire, TensorFromWireRefusesOutputsThatDoNotFitTheirShape) {
  Tensor tensor;
  auto wire = [](const char* dtype, Shape shape, uint64_t offset, uint64_t bytes) {
    WireTensor t;
    t.name = "OUT";
    t.datatype = dtype;
    t.shape = std::move(shape);
    t.offset = offset;
    t.bytes = bytes;
    return t;
  };
  EXPECT_TRUE(TensorFromWire(wire("FP32", {2, 3}, 0, 24), 64, &tensor));
  EXPECT_EQ(tensor.shape, (Shape{2, 3}));
  EXPECT_TRUE(TensorFromWire(wire("FP32", {0, 3}, 64, 0), 64, &tensor));
  EXPECT_TRUE(TensorFromWire(wire("BYTES", {2}, 0, 13), 64, &tensor));
  EXPECT_FALSE(TensorFromWire(wire("FP32", {2, 3}, 48, 24), 64, &tensor));  // past
  EXPECT_FALSE(TensorFromWire(wire("FP32", {2, 1000}, 0, 24), 64, &tensor));
  EXPECT_FALSE(TensorFromWire(wire("FP32", {2, 3}, 0, 28), 64, &tensor));
  EXPECT_FALSE(TensorFromWire(wire("FP32", {-2, -3}, 0, 24), 64, &tensor));
  EXPECT_FALSE(TensorFromWire(wire("INT8", {1ll << 32, 1ll << 32, 16}, 0, 0), 64,
                              &tensor));  // the count wraps to 0
  EXPECT_FALSE(TensorFromWire(wire("NOPE", {1}, 0, 4), 64, &tensor));
}

// A reply names the requests rescheduled and those left to their response senders
// apart; a reply cut anywhere, the marks included, is refused.
TEST(StubWire, ReplyCarriesRescheduledAndSenderAnsweredRequests) {
  MessageWriter w;
  WriteReplyHeader(w, 3);
  WriteError(w, Status(StatusCode::kInvalidArg, "bad"));
  WriteOutputs(w, {}, {});
  WriteOutputs(w, {}, {});
  WriteRequestMarks(w, /*rescheduled=*/{2}, /*answered_by_sender=*/{1});
  WireReply reply;
  ASSERT_TRUE(ReadReply(w.bytes(), &reply));
  ASSERT_EQ(reply.responses.size(), 3u);
  EXPECT_EQ(reply.responses[0].status.message(), "bad");
  EXPECT_EQ(reply.rescheduled, std::vector<uint32_t>{2});
  EXPECT_EQ(reply.answered_by_sender, std::vector<uint32_t>{1});
  for (size_t cut = 1; cut < w.bytes().size(); ++cut) {
    EXPECT_FALSE(ReadReply(std::string_view(w.bytes()).substr(0, cut), &reply)) << cut;
  }
}

// A failed execute's reply: its error, and the requests a decoupled stub already
// ended on its response stream; cut anywhere, it is refused.
TEST(StubWire, BatchErrorCarriesTheRequestsEndedOnTheStream) {
  MessageWriter w;
  WriteBatchError(w, Status(StatusCode::kInternal, "execute broke"), {0, 2});
  WireReply reply;
  ASSERT_TRUE(ReadReply(w.bytes(), &reply));
  EXPECT_EQ(reply.batch_status.code(), StatusCode::kInternal);
  EXPECT_EQ(reply.batch_status.message(), "execute broke");
  EXPECT_TRUE(reply.responses.empty());
  EXPECT_EQ(reply.answered_by_sender, (std::vector<uint32_t>{0, 2}));
  for (size_t cut = 1; cut < w.bytes().size(); ++cut) {
    EXPECT_FALSE(ReadReply(std::string_view(w.bytes()).substr(0, cut), &reply)) << cut;
  }
}

// The response stream within one process: a socket pair carries the messages and a
// StreamReceiver thread reads them, as on the server, from the writer's region
// mapped through a duplicate descriptor.
TEST(StubStream, WrapsAroundFallsBackToOneOffRegionsAndRejectsGarbage) {
  int sockets[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sockets), 0);
  auto writer = StreamWriter::Create(4096, sockets[0]);
  ASSERT_NE(writer, nullptr);
  struct Got {
    uint64_t key;
    bool final;
    std::unique_ptr<InferenceResponse> response;
  };
  std::mutex mu;
  std::condition_variable cv;
  std::vector<Got> got;
  auto receiver = std::make_unique<StreamReceiver>(
      sockets[1], StreamReader::Adopt(dup(writer->fd())),
      [&](uint64_t key, bool final, std::unique_ptr<InferenceResponse> response) {
        std::lock_guard<std::mutex> lock(mu);
        got.push_back({key, final, std::move(response)});
        cv.notify_all();
      });
  auto wait_for = [&](size_t n) {
    std::unique_lock<std::mutex> lock(mu);
    return cv.wait_for(lock, std::chrono::seconds(10), [&] { return got.size() >= n; });
  };
  auto response_of = [](size_t floats, float v) {
    auto response = std::make_unique<InferenceResponse>();
    auto values = std::make_shared<std::vector<float>>(floats, v);
    Tensor t;
    t.name = "OUT";
    t.dtype = DataType::kFp32;
    t.shape = {static_cast<int64_t>(floats)};
    t.data = reinterpret_cast<const char*>(values->data());
    t.byte_size = floats * sizeof(float);
    t.owner = values;
    response->outputs.push_back(t);
    response->parameters.emplace_back("v", static_cast<int64_t>(v));
    return response;
  };
  auto check = [&](size_t index, uint64_t key, size_t floats, float v) {
    std::lock_guard<std::mutex> lock(mu);
    ASSERT_LT(index, got.size());
    EXPECT_EQ(got[index].key, key);
    EXPECT_FALSE(got[index].final);
    ASSERT_NE(got[index].response, nullptr);
    ASSERT_EQ(got[index].response->outputs.size(), 1u);
    const Tensor& out = got[index].response->outputs[0];
    ASSERT_EQ(out.byte_size, floats * sizeof(float));
    const auto* data = reinterpret_cast<const float*>(out.data);
    EXPECT_EQ(data[0], v);
    EXPECT_EQ(data[floats - 1], v);
    EXPECT_EQ(std::get<int64_t>(got[index].response->parameters[0].second),
              static_cast<int64_t>(v));
  };
  // 2400-byte responses through a 4 KiB stream: one fits beside another only after
  // the first is read, and each read one makes room again, from the start when the
  // next would cross the end. Sent back to back, one may find no room and take a
  // one-off region instead; either way they arrive in order with their bytes.
  size_t sent = 0;
  for (int round = 0; round < 12; ++round) {
    ASSERT_TRUE(writer->Send(round, response_of(600, round).get(), false).ok());
    ++sent;
    if (round % 3 == 0) {
      ASSERT_TRUE(wait_for(sent));  // let the reader catch up
    }
  }
  ASSERT_TRUE(wait_for(sent));
  for (int round = 0; round < 12; ++round) check(round, round, 600, round);
  EXPECT_GT(writer->head(), 4096u);  // wrapped around (rounds 0, 3, 6, 9 at least)
  // Bigger than the whole stream: always a one-off region.
  const uint64_t one_offs = writer->one_off_count();
  ASSERT_TRUE(writer->Send(50, response_of(5000, 50).get(), false).ok());
  EXPECT_EQ(writer->one_off_count(), one_offs + 1);
  // An error response and a bare FINAL.
  auto error = std::make_unique<InferenceResponse>();
  error->status = Status(StatusCode::kInvalidArg, "bad");
  ASSERT_TRUE(writer->Send(7, error.get(), false).ok());
  ASSERT_TRUE(writer->Send(7, nullptr, true).ok());
  ASSERT_TRUE(wait_for(sent + 3));
  check(sent, 50, 5000, 50);
  {
    std::lock_guard<std::mutex> lock(mu);
    EXPECT_EQ(got[sent + 1].response->status.code(), StatusCode::kInvalidArg);
    EXPECT_EQ(got[sent + 1].response->status.message(), "bad");
    EXPECT_TRUE(got[sent + 2].final);
    EXPECT_EQ(got[sent + 2].response, nullptr);
  }
  // Garbage is dropped (logged), never read as bytes; the stream goes on after it.
  const char junk[] = "R\x01\x02";
  ASSERT_EQ(send(sockets[0], junk, sizeof(junk), 0),
            static_cast<ssize_t>(sizeof(junk)));
  ASSERT_TRUE(writer->Send(60, response_of(4, 60).get(), false).ok());
  ASSERT_TRUE(wait_for(sent + 4));
  check(sent + 3, 60, 4, 60);
  // The stub's end closes: the receiver reads up to the end, then stops.
  close(sockets[0]);
  EXPECT_TRUE(receiver->WaitForEnd(std::chrono::seconds(10)));
  receiver.reset();  // joins
}

TEST(StubStream, ReaderRefusesTruncatedAndOutOfRangeMessages) {
  int sockets[2];
  ASSERT_EQ(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sockets), 0);
  auto writer = StreamWriter::Create(4096, sockets[0]);
  auto reader = StreamReader::Adopt(dup(writer->fd()));
  ASSERT_NE(reader, nullptr);
  auto response = std::make_unique<InferenceResponse>();
  std::vector<float> values(4, 1.0f);
  Tensor t;
  t.name = "OUT";
  t.dtype = DataType::kFp32;
  t.shape = {4};
  t.data = reinterpret_cast<const char*>(values.data());
  t.byte_size = sizeof(float) * 4;
  response->outputs.push_back(t);
  ASSERT_TRUE(writer->Send(9, response.get(), false).ok());
  char buf[512];
  const ssize_t n = recv(sockets[1], buf, sizeof(buf), 0);
  ASSERT_GT(n, 0);
  uint64_t key = 0;
  bool final = false;
  std::unique_ptr<InferenceResponse> got;
  ASSERT_TRUE(reader->Read(std::string_view(buf, n), -1, &key, &final, &got).ok());
  EXPECT_EQ(key, 9u);
  for (ssize_t cut = 0; cut < n; ++cut) {
    EXPECT_FALSE(reader->Read(std::string_view(buf, cut), -1, &key, &final, &got).ok())
        << cut;
  }
  // Bytes named past the region.
  MessageWriter forged;
  forged.U8('R');
  forged.U64(1);
  forged.U8(0);
  forged.U64(0);
  forged.U8(0);
  forged.U8(1);
  WireTensor past;
  past.name = "OUT";
  past.datatype = "FP32";
  past.shape = {1};
  past.offset = 1 << 20;
  past.bytes = 4;
  WriteOutputs(forged, {past}, {});
  EXPECT_FALSE(reader->Read(forged.bytes(), -1, &key, &final, &got).ok());
  // A one-off flag without a region.
  std::string flagged = forged.bytes();
  flagged[1 + 8 + 1 + 8] = 1;
  EXPECT_FALSE(reader->Read(flagged, -1, &key, &final, &got).ok());
  close(sockets[0]);
  close(sockets[1]);
}

}  // namespace
}  // namespace tritonx::stub
