// One multi-turn chat session's conversation (tritonx-perf --session-concurrency,
// perf_analyzer's OpenAI multi-turn mode): each turn's payload has its "messages"
// added to the conversation and is sent with the whole conversation in their place;
// each answer's assistant message is added before the next turn.
#pragma once

#include <memory>
#include <string>
#include <vector>

namespace tritonx::perf {

// Thread-safety: one worker at a time. Ownership: owns the conversation (a RapidJSON
// document, kept out of this header).
class ChatHistory {
 public:
  ChatHistory();
  ~ChatHistory();
  ChatHistory(const ChatHistory&) = delete;
  ChatHistory& operator=(const ChatHistory&) = delete;

  // The body to send for a turn whose own payload is `turn`; false with *error when
  // `turn` is not a JSON object with a "messages" array.
  bool NextPayload(const std::string& turn, std::string* payload, std::string* error);
  // Adds the answer to the last turn: one JSON body (its choices[0].message), or the
  // events of a streamed one ("data: {...}" lines; their choices[0].delta contents
  // joined into one assistant message). False with *error when it has no choice.
  bool AddAnswer(const std::vector<std::string>& bodies, std::string* error);

 private:
  struct Conversation;
  std::unique_ptr<Conversation> conversation_;
};

}  // namespace tritonx::perf
