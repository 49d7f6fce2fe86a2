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

// Whether verbose messages are wanted (--log-verbose > 0, or set through the logging
// API): lets hot paths skip building a verbose message at the cost of one relaxed
// atomic load. Off until the embedding process turns it on. Thread safe.
void SetVerboseLogging(bool on);
bool VerboseLogging();

}  // namespace tritonx
