// Minimal logging hook: the core reports rare events (fallbacks, worker errors) through
// a sink the embedding process installs; stderr until then.
#pragma once

#include <functional>
#include <string>

namespace tritonx {

enum class LogLevel { kError = 0, kWarning = 1, kInfo = 2, kVerbose = 3 };

using LogSink = std::function<void(LogLevel, const std::string&)>;

// Replaces the sink. Thread safe; the sink itself must be callable from any thread.
void SetLogSink(LogSink sink);
void Log(LogLevel level, const std::string& message);

}  // namespace tritonx
