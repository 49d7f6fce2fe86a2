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

// A model is identified by its namespace and name. The namespace is "" unless the
// server runs with --model-namespacing, where it is the path of the model's
// repository, so that repositories may hold models of the same name.
struct ModelId {
  std::string ns;
  std::string name;
  bool operator<(const ModelId& other) const {
    return ns != other.ns ? ns < other.ns : name < other.name;
  }
};

// Thread safety: every method may be called from any thread (mu_). Ownership: holds
// shared references to the models it serves.
class ModelRegistry {
 public:
  // --model-namespacing: names that no model has are refused INVALID_ARG rather
  // than NOT_FOUND, as Triton resolves the name before looking the model up.
  void SetNamespacing(bool enabled);

  // Makes (namespace, model name, version) servable, replacing an existing entry.
  void Add(std::shared_ptr<Model> model, const std::string& ns = "");
  void Remove(const ModelId& id, int64_t version);
  // A model that exists in the repository (loading, unavailable) though maybe no
  // version is servable; changes "not found" into "no available versions".
  void SetKnown(const ModelId& id, bool known);
  // A version the repository has (it failed to load, or was unloaded) but that is
  // not served: asking for it answers "is not at ready state" until it is added.
  void SetUnavailable(const ModelId& id, int64_t version);
  // With namespacing: whether a client's name may resolve to this model (Triton's
  // global map). The manager sets it when it loads the model and clears it when the
  // model is unloaded; a name all of whose models were unloaded stays "not found
  // in global map".
  void SetResolvable(const ModelId& id, bool resolvable);

  // The server failed to initialise (Triton's SERVER_FAILED_TO_INITIALIZE, a state
  // it never leaves): every lookup answers UNAVAILABLE "Server not ready", as
  // Triton's core refuses inference then.
  void SetServerNotReady();

  // Finds the version to serve: `version` empty means the highest servable version.
  // A name two namespaces know is ambiguous. Errors carry Triton's messages.
  Status Find(const std::string& name, const std::string& version,
              std::shared_ptr<Model>* model) const;
  // The same within one namespace (ensemble steps, resolved when they loaded).
  Status FindIn(const ModelId& id, const std::string& version,
                std::shared_ptr<Model>* model) const;

  std::vector<std::shared_ptr<Model>> All() const;

 private:
  Status FindLocked(const ModelId& id, const std::string& version, int64_t parsed,
                    std::shared_ptr<Model>* model) const;

  mutable std::shared_mutex mu_;
  bool namespacing_ = false;
  bool server_not_ready_ = false;
  std::map<ModelId, std::map<int64_t, std::shared_ptr<Model>>> models_;
  // name -> the namespaces of the known models of that name.
  std::map<std::string, std::set<std::string>> known_;
  // name -> the namespaces a client's name resolves to (see SetResolvable).
  std::map<std::string, std::set<std::string>> resolvable_;
  // Versions that were served and then removed: Triton keeps their state, so asking
  // for one answers "is not at ready state" rather than "is not found".
  std::set<std::pair<ModelId, int64_t>> unloaded_;
};

}  // namespace tritonx
