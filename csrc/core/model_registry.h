// ModelRegistry: the model versions the frontends can reach, shared by the C++ gRPC
// server and the Python side. Swapping an entry never disturbs requests in flight:
// they hold their own reference to the Model they were enqueued on.
#pragma once

#include <map>
#include <memory>
#include <set>
#include <shared_mutex>
#include <string>
#include <utility>
#include <vector>

#include "model.h"
#include "status.h"

namespace tritonx {

// A version string a client sent, read as Triton reads it (std::stoll: leading
// blanks and sign, then digits; what follows them is ignored). Errors, in Triton's
// words: no number or out of range ("failed to get model version from specified
// version string ..."), or negative ("invalid model version specified ...").
Status ParseModelVersion(const std::string& text, int64_t* version);

// Thread safety: every method may be called from any thread (mu_). Ownership: holds
// shared references to the models it serves.
class ModelRegistry {
 public:
  // Makes (model name, version) servable, replacing an existing entry.
  void Add(std::shared_ptr<Model> model);
  void Remove(const std::string& name, int64_t version);
  // A model that exists in the repository (loading, unavailable) though maybe no
  // version is servable; changes "not found" into "no available versions".
  void SetKnown(const std::string& name, bool known);
  // A version the repository has (it failed to load, or was unloaded) but that is
  // not served: asking for it answers "is not at ready state" until it is added.
  void SetUnavailable(const std::string& name, int64_t version);

  // Finds the version to serve: `version` empty means the highest servable version.
  // Errors carry Triton's messages.
  Status Find(const std::string& name, const std::string& version,
              std::shared_ptr<Model>* model) const;

  std::vector<std::shared_ptr<Model>> All() const;

 private:
  mutable std::shared_mutex mu_;
  std::map<std::string, std::map<int64_t, std::shared_ptr<Model>>> models_;
  std::set<std::string> known_;
  // Versions that were served and then removed: Triton keeps their state, so asking
  // for one answers "is not at ready state" rather than "is not found".
  std::set<std::pair<std::string, int64_t>> unloaded_;
};

}  // namespace tritonx
