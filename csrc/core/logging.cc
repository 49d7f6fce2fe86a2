#include "logging.h"

#include <atomic>
#include <cstdio>
#include <mutex>

namespace tritonx {
namespace {
std::mutex& SinkMutex() {
  static std::mutex mu;
  return mu;
}
LogSink& Sink() {
  static LogSink sink;
  return sink;
}
std::atomic<bool> verbose{false};
}  // namespace

void SetVerboseLogging(bool on) { verbose.store(on, std::memory_order_relaxed); }
bool VerboseLogging() { return verbose.load(std::memory_order_relaxed); }

void SetLogSink(LogSink sink) {
  std::lock_guard<std::mutex> lock(SinkMutex());
  Sink() = std::move(sink);
}

void Log(LogLevel level, const std::string& message) {
  LogSink sink;
  {
    std::lock_guard<std::mutex> lock(SinkMutex());
    sink = Sink();
  }
  if (sink) {
    sink(level, message);
    return;
  }
  static const char kLetters[] = {'E', 'W', 'I', 'V'};
  std::fprintf(stderr, "%c tritonx core: %s\n", kLetters[static_cast<int>(level)],
               message.c_str());
}

}  // namespace tritonx
