#include "model_registry.h"

#include <cerrno>
#include <cstdlib>
#include <mutex>

namespace tritonx {

void ModelRegistry::SetNamespacing(bool enabled) {
  std::unique_lock<std::shared_mutex> lock(mu_);
  namespacing_ = enabled;
}

void ModelRegistry::Add(std::shared_ptr<Model> model, const std::string& ns) {
  std::unique_lock<std::shared_mutex> lock(mu_);
  const auto& spec = model->spec();
  ModelId id{ns, spec.name};
  known_[spec.name].insert(ns);
  unloaded_.erase({id, spec.version});
  models_[id][spec.version] = std::move(model);
}

void ModelRegistry::Remove(const ModelId& id, int64_t version) {
  std::unique_lock<std::shared_mutex> lock(mu_);
  auto it = models_.find(id);
  if (it == models_.end()) return;
  if (it->second.erase(version) != 0) unloaded_.insert({id, version});
  if (it->second.empty()) models_.erase(it);
}

void ModelRegistry::SetKnown(const ModelId& id, bool known) {
  std::unique_lock<std::shared_mutex> lock(mu_);
  if (known) {
    known_[id.name].insert(id.ns);
    return;
  }
  auto it = known_.find(id.name);
  if (it == known_.end()) return;
  it->second.erase(id.ns);
  if (it->second.empty()) known_.erase(it);
}

void ModelRegistry::SetUnavailable(const ModelId& id, int64_t version) {
  std::unique_lock<std::shared_mutex> lock(mu_);
  known_[id.name].insert(id.ns);
  auto it = models_.find(id);
  if (it == models_.end() || it->second.count(version) == 0) {
    unloaded_.insert({id, version});
  }
}

void ModelRegistry::SetResolvable(const ModelId& id, bool resolvable) {
  std::unique_lock<std::shared_mutex> lock(mu_);
  auto& namespaces = resolvable_[id.name];  // kept when emptied, as Triton's map
  if (resolvable) {
    namespaces.insert(id.ns);
  } else {
    namespaces.erase(id.ns);
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

namespace {

// Reads a client's version string; "" (the latest) stays 0.
Status ParseVersionArgument(const std::string& version, int64_t* parsed) {
  *parsed = 0;
  if (version.empty()) return Status::Ok();
  return ParseModelVersion(version, parsed);
}

}  // namespace

Status ModelRegistry::Find(const std::string& name, const std::string& version,
                           std::shared_ptr<Model>* model) const {
  int64_t parsed = 0;
  // Before the name, as Triton's frontends read the version first.
  Status status = ParseVersionArgument(version, &parsed);
  if (!status.ok()) return status;
  std::shared_lock<std::shared_mutex> lock(mu_);
  if (server_not_ready_) return Status(StatusCode::kUnavailable, "Server not ready");
  ModelId id{"", name};
  if (namespacing_) {
    // Triton's order: the name to one identifier first, then the model.
    auto found = resolvable_.find(name);
    if (found == resolvable_.end()) {
      return Status(StatusCode::kInvalidArg,
                    "Request for unknown model: '" + name + "' is not found");
    }
    const auto& namespaces = found->second;
    if (namespaces.empty()) {
      return Status(StatusCode::kNotFound,
                    "Identifier of model '" + name + "' is not found in global map");
    }
    if (namespaces.size() > 1) {
      return Status(StatusCode::kInvalidArg,
                    "There are " + std::to_string(namespaces.size()) +
                        " identifiers of model '" + name +
                        "' in global map, model namespace must be provided to "
                        "resolve ambiguity.");
    }
    id.ns = *namespaces.begin();
  }
  return FindLocked(id, version, parsed, model);
}

Status ModelRegistry::FindIn(const ModelId& id, const std::string& version,
                             std::shared_ptr<Model>* model) const {
  int64_t parsed = 0;
  Status status = ParseVersionArgument(version, &parsed);
  if (!status.ok()) return status;
  std::shared_lock<std::shared_mutex> lock(mu_);
  if (server_not_ready_) return Status(StatusCode::kUnavailable, "Server not ready");
  return FindLocked(id, version, parsed, model);
}

void ModelRegistry::SetServerNotReady() {
  std::unique_lock<std::shared_mutex> lock(mu_);
  server_not_ready_ = true;
}

Status ModelRegistry::FindLocked(const ModelId& id, const std::string& version,
                                 int64_t parsed, std::shared_ptr<Model>* model) const {
  const std::string& name = id.name;
  auto it = models_.find(id);
  const bool none = it == models_.end() || it->second.empty();
  // Only the error paths ask whether the model is known (one lookup less per
  // request).
  auto is_known = [&] {
    auto known_names = known_.find(name);
    return known_names != known_.end() && known_names->second.count(id.ns) != 0;
  };
  if (none && (version.empty() || !is_known())) {
    if (!is_known()) {
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
  if (unloaded_.count({id, parsed}) != 0) {
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
  for (const auto& [id, versions] : models_) {
    for (const auto& [version, model] : versions) all.push_back(model);
  }
  return all;
}

}  // namespace tritonx
