#include "model_registry.h"

#include <cerrno>
#include <cstdlib>
#include <mutex>

namespace tritonx {

void ModelRegistry::Add(std::shared_ptr<Model> model) {
  std::unique_lock<std::shared_mutex> lock(mu_);
  const auto& spec = model->spec();
  known_.insert(spec.name);
  unloaded_.erase({spec.name, spec.version});
  models_[spec.name][spec.version] = std::move(model);
}

void ModelRegistry::Remove(const std::string& name, int64_t version) {
  std::unique_lock<std::shared_mutex> lock(mu_);
  auto it = models_.find(name);
  if (it == models_.end()) return;
  if (it->second.erase(version) != 0) unloaded_.insert({name, version});
  if (it->second.empty()) models_.erase(it);
}

void ModelRegistry::SetKnown(const std::string& name, bool known) {
  std::unique_lock<std::shared_mutex> lock(mu_);
  if (known) {
    known_.insert(name);
  } else {
    known_.erase(name);
  }
}

void ModelRegistry::SetUnavailable(const std::string& name, int64_t version) {
  std::unique_lock<std::shared_mutex> lock(mu_);
  known_.insert(name);
  auto it = models_.find(name);
  if (it == models_.end() || it->second.count(version) == 0) {
    unloaded_.insert({name, version});
  }
}

Status ParseModelVersion(const std::string& text, int64_t* version) {
  errno = 0;
  char* end = nullptr;
  const long long parsed = std::strtoll(text.c_str(), &end, 10);
  if (end == text.c_str() || errno == ERANGE) {
    return Status(StatusCode::kInvalidArg,
                  "failed to get model version from specified version string '" + text +
                      "' (details: stol), version should be an integral value > 0");
  }
  if (parsed < 0) {
    return Status(StatusCode::kInvalidArg,
                  "invalid model version specified '" + text +
                      "' , version should be an integral value > 0");
  }
  *version = parsed;
  return Status::Ok();
}

Status ModelRegistry::Find(const std::string& name, const std::string& version,
                           std::shared_ptr<Model>* model) const {
  int64_t parsed = 0;
  if (!version.empty()) {
    // Before the name, as Triton's frontends read the version first.
    Status status = ParseModelVersion(version, &parsed);
    if (!status.ok()) return status;
  }
  std::shared_lock<std::shared_mutex> lock(mu_);
  auto it = models_.find(name);
  const bool none = it == models_.end() || it->second.empty();
  if (none && (version.empty() || known_.count(name) == 0)) {
    if (known_.count(name) == 0) {
      return Status(StatusCode::kNotFound,
                    "Request for unknown model: '" + name + "' is not found");
    }
    return Status(StatusCode::kNotFound, "Request for unknown model: '" + name +
                                             "' has no available versions");
  }
  if (version.empty()) {
    *model = it->second.rbegin()->second;
    return Status::Ok();
  }
  if (!none) {
    auto version_it = it->second.find(parsed);
    if (version_it != it->second.end()) {
      *model = version_it->second;
      return Status::Ok();
    }
  }
  if (unloaded_.count({name, parsed}) != 0) {
    return Status(StatusCode::kUnavailable, "Request for unknown model: '" + name +
                                                "' version " + std::to_string(parsed) +
                                                " is not at ready state");
  }
  if (none) {
    return Status(StatusCode::kNotFound, "Request for unknown model: '" + name +
                                             "' has no available versions");
  }
  return Status(StatusCode::kNotFound, "Request for unknown model: '" + name +
                                           "' version " + std::to_string(parsed) +
                                           " is not found");
}

std::vector<std::shared_ptr<Model>> ModelRegistry::All() const {
  std::shared_lock<std::shared_mutex> lock(mu_);
  std::vector<std::shared_ptr<Model>> all;
  for (const auto& [name, versions] : models_) {
    for (const auto& [version, model] : versions) all.push_back(model);
  }
  return all;
}

}  // namespace tritonx
