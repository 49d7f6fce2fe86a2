#include "model_registry.h"

#include <cstdlib>
#include <mutex>

namespace tritonx {

void ModelRegistry::Add(std::shared_ptr<Model> model) {
  std::unique_lock<std::shared_mutex> lock(mu_);
  const auto& spec = model->spec();
  known_.insert(spec.name);
  models_[spec.name][spec.version] = std::move(model);
}

void ModelRegistry::Remove(const std::string& name, int64_t version) {
  std::unique_lock<std::shared_mutex> lock(mu_);
  auto it = models_.find(name);
  if (it == models_.end()) return;
  it->second.erase(version);
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

Status ModelRegistry::Find(const std::string& name, const std::string& version,
                           std::shared_ptr<Model>* model) const {
  std::shared_lock<std::shared_mutex> lock(mu_);
  auto it = models_.find(name);
  if (it == models_.end() || it->second.empty()) {
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
  auto version_it = it->second.find(parsed);
  if (version_it == it->second.end()) {
    return Status(StatusCode::kNotFound, "Request for unknown model: '" + name +
                                             "' version " + version + " is not found");
  }
  *model = version_it->second;
  return Status::Ok();
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
