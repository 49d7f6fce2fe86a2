// Parsing received gRPC messages (csrc/grpc/received_request): what comes out is
// what protobuf parses, whether or not the raw input contents are split off, and
// the received bytes are let go.
#include <google/protobuf/util/message_differencer.h>
#include <gtest/gtest.h>

#include <atomic>
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
