#include "chat_history.h"

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

namespace tritonx::perf {
namespace {

std::string Serialize(const rapidjson::Value& value) {
  rapidjson::StringBuffer buffer;
  rapidjson::Writer<rapidjson::StringBuffer> writer(buffer);
  value.Accept(writer);
  return std::string(buffer.GetString(), buffer.GetSize());
}

// choices[0] of an answer, or nullptr.
const rapidjson::Value* FirstChoice(const rapidjson::Document& answer) {
  if (!answer.IsObject()) return nullptr;
  const auto choices = answer.FindMember("choices");
  if (choices == answer.MemberEnd() || !choices->value.IsArray() ||
      choices->value.Empty()) {
    return nullptr;
  }
  return &choices->value[0];
}

std::string NoChoice(const std::string& body) {
  return "the answer to a chat turn is not a JSON object with a non-empty 'choices' "
         "array: " +
         body.substr(0, 300);
}

}  // namespace

struct ChatHistory::Conversation {
  rapidjson::Document messages{rapidjson::kArrayType};
};

ChatHistory::ChatHistory() : conversation_(std::make_unique<Conversation>()) {}
ChatHistory::~ChatHistory() = default;

bool ChatHistory::NextPayload(const std::string& turn, std::string* payload,
                              std::string* error) {
  rapidjson::Document body;
  body.Parse(turn.data(), turn.size());
  const bool has_messages = !body.HasParseError() && body.IsObject() &&
                            body.HasMember("messages") && body["messages"].IsArray();
  if (!has_messages) {
    *error =
        "a chat session's payload must be a JSON object with a 'messages' array: " +
        turn.substr(0, 300);
    return false;
  }
  rapidjson::Document& history = conversation_->messages;
  for (const auto& message : body["messages"].GetArray()) {
    history.PushBack(rapidjson::Value(message, history.GetAllocator()),
                     history.GetAllocator());
  }
  body["messages"].CopyFrom(history, body.GetAllocator());
  *payload = Serialize(body);
  return true;
}

bool ChatHistory::AddAnswer(const std::vector<std::string>& bodies,
                            std::string* error) {
  rapidjson::Document& history = conversation_->messages;
  auto& allocator = history.GetAllocator();
  if (bodies.size() == 1 && bodies[0].compare(0, 5, "data:") != 0) {
    rapidjson::Document answer;
    answer.Parse(bodies[0].data(), bodies[0].size());
    const rapidjson::Value* choice =
        answer.HasParseError() ? nullptr : FirstChoice(answer);
    if (choice == nullptr || !choice->IsObject() || !choice->HasMember("message")) {
      *error = NoChoice(bodies[0]);
      return false;
    }
    history.PushBack(rapidjson::Value((*choice)["message"], allocator), allocator);
    return true;
  }
  // A streamed answer: the deltas' role and contents make one message.
  std::string role = "assistant", content;
  bool any = false;
  for (const std::string& event : bodies) {
    for (size_t line = 0; line < event.size();) {
      size_t eol = event.find('\n', line);
      if (eol == std::string::npos) eol = event.size();
      std::string text = event.substr(line, eol - line);
      line = eol + 1;
      if (!text.empty() && text.back() == '\r') text.pop_back();
      if (text.compare(0, 5, "data:") != 0) continue;
      text.erase(0, text.find_first_not_of(' ', 5));
      if (text == "[DONE]") continue;
      rapidjson::Document chunk;
      chunk.Parse(text.data(), text.size());
      const rapidjson::Value* choice =
          chunk.HasParseError() ? nullptr : FirstChoice(chunk);
      if (choice == nullptr) {
        *error = NoChoice(text);
        return false;
      }
      any = true;
      const auto delta = choice->FindMember("delta");
      if (delta == choice->MemberEnd() || !delta->value.IsObject()) continue;
      const auto& d = delta->value;
      if (d.HasMember("role") && d["role"].IsString()) role = d["role"].GetString();
      if (d.HasMember("content") && d["content"].IsString()) {
        content.append(d["content"].GetString(), d["content"].GetStringLength());
      }
    }
  }
  if (!any) {
    *error = NoChoice(bodies.empty() ? std::string() : bodies.back());
    return false;
  }
  rapidjson::Value message(rapidjson::kObjectType);
  const auto text = [&allocator](const std::string& s) {
    return rapidjson::Value(s.data(), static_cast<rapidjson::SizeType>(s.size()),
                            allocator);
  };
  message.AddMember("role", text(role), allocator);
  message.AddMember("content", text(content), allocator);
  history.PushBack(message, allocator);
  return true;
}

}  // namespace tritonx::perf
