// Parsing received gRPC messages (csrc/grpc/received_request): what comes out is
// what protobuf parses, whether or not the raw input contents are split off, and
// the received bytes are let go.
#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>

#include <atomic>
#include <random>
#include <string>
#include <vector>

#include "received_request.h"

namespace tritonx::grpcfe {
namespace {

using google::protobuf::util::MessageDifferencer;
using inference::ModelInferRequest;

// Counts the received slices still alive.
std::atomic<int> g_live_slices{0};

// `wire` as gRPC could hand it over: slices of `piece` bytes, each counted in
// g_live_slices until it is released.
grpc::ByteBuffer Received(const std::string& wire, size_t piece) {
  std::vector<grpc::Slice> slices;
  for (size_t at = 0; at < wire.size(); at += piece) {
    auto* bytes = new std::string(wire.substr(at, piece));
    ++g_live_slices;
    slices.emplace_back(
        bytes->data(), bytes->size(),
        [](void* held) {
          delete static_cast<std::string*>(held);
          --g_live_slices;
        },
        bytes);
  }
  return grpc::ByteBuffer(slices.data(), slices.size());
}

ModelInferRequest SampleRequest() {
  ModelInferRequest request;
  request.set_model_name("m");
  request.set_id("r1");
  for (const char* name : {"A", "B", "C"}) {
    auto* input = request.add_inputs();
    input->set_name(name);
    input->set_datatype("UINT8");
    input->add_shape(3);
  }
  request.add_raw_input_contents(std::string(1000, 'a'));
  request.add_raw_input_contents("");
  request.add_raw_input_contents(std::string(70000, 'c'));
  (*request.mutable_parameters())["priority"].set_int64_param(2);
  (*request.mutable_parameters())["f"].set_double_param(0.5);
  request.add_outputs()->set_name("OUT");
  return request;
}

// The raw entries the parse gives, as strings.
std::vector<std::string> RawOf(const ReceivedInferRequest& received) {
  return {received.raw_inputs.begin(), received.raw_inputs.end()};
}

TEST(GrpcReceived, SplitParseGivesWhatProtobufParses) {
  const ModelInferRequest sent = SampleRequest();
  const std::string wire = sent.SerializeAsString();
  ModelInferRequest without_raw = sent;
  without_raw.clear_raw_input_contents();
  const std::vector<std::string> want_raw(sent.raw_input_contents().begin(),
                                          sent.raw_input_contents().end());
  for (size_t piece : {size_t{1}, size_t{7}, size_t{4096}, wire.size()}) {
    for (size_t split_from : {size_t{0}, wire.size() + 1}) {
      SCOPED_TRACE("piece " + std::to_string(piece) + ", split from " +
                   std::to_string(split_from));
      grpc::ByteBuffer received = Received(wire, piece);
      ReceivedInferRequest parsed;
      ASSERT_TRUE(ParseReceivedInferRequest(&received, &parsed, split_from));
      EXPECT_EQ(received.Length(), 0u);
      EXPECT_EQ(RawOf(parsed), want_raw);
      if (split_from == 0) {
        // Split: the entries live in their own buffer, the rest in the message.
        EXPECT_EQ(parsed.message.raw_input_contents_size(), 0);
        EXPECT_TRUE(MessageDifferencer::Equals(parsed.message, without_raw));
      } else {
        EXPECT_TRUE(MessageDifferencer::Equals(parsed.message, sent));
      }
      // Nothing of what was received is held any more.
      EXPECT_EQ(g_live_slices.load(), 0);
    }
  }
}

TEST(GrpcReceived, RawEntriesBetweenOtherFieldsAndUnknownFieldsKeepTheirOrder) {
  // Hand-made wire: raw entry, model_name, raw entry, an unknown fixed32 and
  // fixed64 and varint field, raw entry (field 7 = raw_input_contents).
  std::string wire;
  auto raw = [&wire](const std::string& bytes) {
    wire += '\x3a';  // field 7, length-delimited
    wire += static_cast<char>(bytes.size());
    wire += bytes;
  };
  raw("first");
  wire += std::string("\x0a\x01m", 3);  // model_name = "m"
  raw("");
  wire += std::string("\xfd\x07\x01\x02\x03\x04", 6);  // field 127, fixed32
  wire += std::string(
      "\xf9\x07"
      "12345678",
      10);                                     // field 127, fixed64
  wire += std::string("\xf8\x07\x96\x01", 4);  // field 127, varint 150
  raw("third");
  ModelInferRequest reference;
  ASSERT_TRUE(reference.ParseFromString(wire));

  grpc::ByteBuffer received = Received(wire, 3);
  ReceivedInferRequest parsed;
  ASSERT_TRUE(ParseReceivedInferRequest(&received, &parsed, 0));
  EXPECT_EQ(RawOf(parsed), (std::vector<std::string>{"first", "", "third"}));
  EXPECT_EQ(parsed.message.model_name(), "m");
  reference.clear_raw_input_contents();
  // Unknown fields are kept as protobuf keeps them.
  EXPECT_TRUE(MessageDifferencer::Equals(parsed.message, reference));
  EXPECT_EQ(
      parsed.message.GetReflection()->GetUnknownFields(parsed.message).field_count(),
      3);
}

TEST(GrpcReceived, MalformedMessagesFailAsInProtobuf) {
  const std::string good = SampleRequest().SerializeAsString();
  const std::vector<std::string> bad = {
      std::string("\x0a\xff\xff\xff\x0f garbage", 14),  // length past the end
      good.substr(0, good.size() - 1),                  // truncated raw entry
      std::string("\x3a\x05"
                  "ab",
                  4),              // raw entry past the end
      std::string("\x00\x01", 2),  // field number 0
      std::string("\x0f", 1),      // wire type 7
      std::string("\x3a\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff",
                  11),  // varint > 10 bytes
  };
  for (const std::string& wire : bad) {
    ModelInferRequest reference;
    ASSERT_FALSE(reference.ParseFromString(wire));
    for (size_t split_from : {size_t{0}, wire.size() + 1}) {
      grpc::ByteBuffer received = Received(wire, 2);
      ReceivedInferRequest parsed;
      EXPECT_FALSE(ParseReceivedInferRequest(&received, &parsed, split_from));
      EXPECT_EQ(received.Length(), 0u);
      EXPECT_EQ(g_live_slices.load(), 0);
    }
  }
}

TEST(GrpcReceived, GroupsAreLeftToProtobuf) {
  // An unknown field 127 as a (deprecated) group holding a varint: protobuf keeps
  // it as an unknown group; the split parse does not scan groups and falls back.
  std::string wire = SampleRequest().SerializeAsString();
  wire += std::string("\xfb\x07\x08\x01\xfc\x07", 6);
  ModelInferRequest reference;
  ASSERT_TRUE(reference.ParseFromString(wire));
  grpc::ByteBuffer received = Received(wire, 100);
  ReceivedInferRequest parsed;
  ASSERT_TRUE(ParseReceivedInferRequest(&received, &parsed, 0));
  EXPECT_TRUE(MessageDifferencer::Equals(parsed.message, reference));
  EXPECT_EQ(RawOf(parsed).size(), 3u);
  EXPECT_EQ(g_live_slices.load(), 0);
}

// Random messages, cut into random slices, some of them damaged (truncated or a
// byte changed): the split parse accepts exactly what protobuf accepts and gives
// the same message and raw entries.
TEST(GrpcReceived, RandomMessagesParseAsInProtobuf) {
  std::mt19937 random(20261204);
  auto below = [&random](size_t n) { return static_cast<size_t>(random() % n); };
  int accepted = 0;
  for (int round = 0; round < 400; ++round) {
    ModelInferRequest sent;
    sent.set_model_name("model" + std::to_string(below(3)));
    if (below(2)) sent.set_id(std::string(below(40), 'i'));
    const size_t inputs = below(4);
    for (size_t i = 0; i < inputs; ++i) {
      auto* input = sent.add_inputs();
      input->set_name("IN" + std::to_string(i));
      input->set_datatype("UINT8");
      input->add_shape(static_cast<int64_t>(below(5)));
    }
    const size_t raws = below(4);
    for (size_t i = 0; i < raws; ++i) {
      std::string raw(below(3) == 0 ? below(300000) : below(200), '\0');
      for (char& c : raw) c = static_cast<char>(random());
      sent.add_raw_input_contents(raw);
    }
    if (below(2)) (*sent.mutable_parameters())["priority"].set_int64_param(below(9));
    std::string wire = sent.SerializeAsString();
    if (!wire.empty() && below(3) == 0) {
      if (below(2)) {
        wire.resize(below(wire.size()));
      } else {
        wire[below(wire.size())] = static_cast<char>(random());
      }
    }
    ModelInferRequest reference;
    const bool parses = reference.ParseFromString(wire);
    const std::vector<std::string> want_raw(reference.raw_input_contents().begin(),
                                            reference.raw_input_contents().end());
    reference.clear_raw_input_contents();

    grpc::ByteBuffer received = Received(wire, 1 + below(70000));
    ReceivedInferRequest parsed;
    ASSERT_EQ(ParseReceivedInferRequest(&received, &parsed, 0), parses)
        << "round " << round;
    EXPECT_EQ(g_live_slices.load(), 0);
    if (!parses) continue;
    ++accepted;
    EXPECT_EQ(RawOf(parsed), want_raw) << "round " << round;
    parsed.message.clear_raw_input_contents();  // (present when it fell back)
    EXPECT_TRUE(MessageDifferencer::Equals(parsed.message, reference))
        << "round " << round;
  }
  EXPECT_GT(accepted, 200);  // the damage left most messages whole
}

TEST(GrpcReceived, EmptyMessagesParse) {
  grpc::ByteBuffer empty;
  ReceivedInferRequest parsed;
  EXPECT_TRUE(ParseReceivedInferRequest(&empty, &parsed, 0));
  EXPECT_TRUE(parsed.raw_inputs.empty());
  ModelInferRequest plain;
  grpc::ByteBuffer none;
  EXPECT_TRUE(ParseReceived(&none, &plain));
}

}  // namespace
}  // namespace tritonx::grpcfe
