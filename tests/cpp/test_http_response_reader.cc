// tritonx-perf's HTTP response reader (csrc/perf/http_response_reader.h): a
// response fed in pieces of every size reads the same, a following response stays
// in the buffer, and server-sent events come out one by one as they complete.
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "http_message.h"
#include "http_response_reader.h"

namespace tritonx::perf {
namespace {

struct Read {
  ParseResult result = ParseResult::kIncomplete;
  std::string rest;                 // what stayed in the buffer
  std::vector<std::string> events;  // in the order they completed
};

// Feeds `text` in pieces of `piece` bytes, taking events as they complete.
Read FeedInPieces(HttpResponseReader* reader, const std::string& text, size_t piece,
                  bool keep_body = false) {
  reader->Reset(keep_body);
  Read out;
  std::string buffer, error, event;
  for (size_t at = 0; at < text.size(); at += piece) {
    buffer.append(text, at, piece);
    out.result = reader->Feed(&buffer, &error);
    EXPECT_NE(out.result, ParseResult::kError) << error;
    const bool complete = out.result == ParseResult::kComplete;
    while (reader->event_stream() && reader->NextEvent(complete, &event)) {
      out.events.push_back(event);
    }
    if (complete) break;
  }
  out.rest = buffer;
  return out;
}

TEST(HttpResponseReader, ContentLengthInEveryPieceSize) {
  const std::string full =
      "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 5\r\n\r\n"
      "hello";
  HttpResponseReader reader;
  for (size_t piece = 1; piece <= full.size(); ++piece) {
    const Read read = FeedInPieces(&reader, full + "HTTP/1.1 200", piece);
    ASSERT_EQ(read.result, ParseResult::kComplete) << piece;
    EXPECT_EQ(reader.status(), 200);
    EXPECT_FALSE(reader.close());
    EXPECT_TRUE(reader.body().empty());  // a 200 body is only consumed by default
  }
  // A following response stays in the buffer.
  EXPECT_EQ(FeedInPieces(&reader, full + "HTTP/1.1 200", full.size() + 12).rest,
            "HTTP/1.1 200");
  EXPECT_EQ(FeedInPieces(&reader, full, 3, /*keep_body=*/true).result,
            ParseResult::kComplete);
  EXPECT_EQ(reader.body(), "hello");
}

TEST(HttpResponseReader, ChunkedErrorBodyAndClose) {
  const std::string text =
      "HTTP/1.1 400 Bad Request\r\nTransfer-Encoding: chunked\r\nconnection: close\r\n"
      "\r\n9\r\n{\"error\":\r\n7\r\n\"bad x\"\r\n1\r\n}\r\n0\r\n\r\n";
  HttpResponseReader reader;
  for (size_t piece = 1; piece <= text.size(); ++piece) {
    const Read read = FeedInPieces(&reader, text, piece);
    ASSERT_EQ(read.result, ParseResult::kComplete) << piece;
    EXPECT_TRUE(read.rest.empty());
    EXPECT_EQ(reader.status(), 400);
    EXPECT_TRUE(reader.close());
    EXPECT_EQ(reader.body(), "{\"error\":\"bad x\"}");  // error bodies are kept
  }
  EXPECT_EQ(HttpErrorText(reader.body()), "bad x");
  // Without the last blank line it is not complete.
  EXPECT_EQ(FeedInPieces(&reader, text.substr(0, text.size() - 2), 7).result,
            ParseResult::kIncomplete);
}

TEST(HttpResponseReader, MalformedStatusLineAndChunkSize) {
  HttpResponseReader reader;
  reader.Reset(false);
  std::string buffer = "SSH-2.0-OpenSSH\r\n\r\n", error;
  EXPECT_EQ(reader.Feed(&buffer, &error), ParseResult::kError);
  EXPECT_EQ(error, "malformed HTTP response");
  reader.Reset(false);
  buffer = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n";
  EXPECT_EQ(reader.Feed(&buffer, &error), ParseResult::kError);
  EXPECT_EQ(error, "malformed chunked HTTP response");
}

// An OpenAI streamed answer: events split across chunks in any way, CRLF or LF
// line ends, a last event without its blank line, and trailers after the last
// chunk.
TEST(HttpResponseReader, ServerSentEventsCompleteOneByOne) {
  const std::string events =
      "data: {\"a\":1}\n\ndata: {\"b\":2}\r\n\r\n: comment\n\ndata: [DONE]";
  std::string body;
  for (size_t at = 0; at < events.size(); at += 5) {
    const std::string part = events.substr(at, 5);
    char size[16];
    snprintf(size, sizeof(size), "%zx", part.size());
    body += std::string(size) + "\r\n" + part + "\r\n";
  }
  const std::string text =
      "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
      "transfer-encoding: chunked\r\n\r\n" +
      body + "0\r\nX-Trailer: 1\r\n\r\n";
  HttpResponseReader reader;
  for (size_t piece = 1; piece <= text.size(); piece += 3) {
    const Read read = FeedInPieces(&reader, text, piece, /*keep_body=*/true);
    ASSERT_EQ(read.result, ParseResult::kComplete) << piece;
    EXPECT_TRUE(reader.event_stream());
    EXPECT_EQ(read.events,
              (std::vector<std::string>{"data: {\"a\":1}", "data: {\"b\":2}",
                                        ": comment", "data: [DONE]"}))
        << piece;
  }
}

TEST(HttpResponseReader, EventsWaitForTheirBlankLine) {
  HttpResponseReader reader;
  reader.Reset(true);
  std::string buffer =
                  "HTTP/1.1 200 OK\r\nContent-Type: "
                  "text/event-stream\r\nContent-Length: 23\r\n\r\n"
                  "data: one\n\ndata: tw",
              error, event;
  ASSERT_EQ(reader.Feed(&buffer, &error), ParseResult::kIncomplete);
  ASSERT_TRUE(reader.NextEvent(false, &event));
  EXPECT_EQ(event, "data: one");
  EXPECT_FALSE(reader.NextEvent(false, &event));  // "data: tw" is not whole yet
  buffer = "o\n\n\n";
  ASSERT_EQ(reader.Feed(&buffer, &error), ParseResult::kComplete);
  ASSERT_TRUE(reader.NextEvent(true, &event));
  EXPECT_EQ(event, "data: two");
  EXPECT_FALSE(reader.NextEvent(true, &event));  // a stray line end is no event
}

}  // namespace
}  // namespace tritonx::perf
