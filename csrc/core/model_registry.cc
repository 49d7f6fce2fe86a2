#include "model_registry.h"

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

Status ModelRegistry::Find(const std::string& name, const std::string& version,
                           std::shared_ptr<Model>* model) const {
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
  char* end = nullptr;
  const long long parsed = std::strtoll(version.c_str(), &end, 10);
  if (end == version.c_str() || *end != '\0') {
    return Status(StatusCode::kInvalidArg, "failed to parse model version '" + version +
                                               "' of model '" + name + "'");
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
                                                "' version " + version +
                                                " is not at ready state");
  }
  if (none) {
    return Status(StatusCode::kNotFound, "Request for unknown model: '" + name +
                                             "' has no available versions");
  }
  return Status(StatusCode::kNotFound, "Request for unknown model: '" + name +
                                           "' version " + version + " is not found");
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
