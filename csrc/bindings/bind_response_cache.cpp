// The server's response cache (`--cache-config`): the local LRU, or a remote one
// whose store is a Python object (tritonx/caches/: Redis, or a plug-in).
#include "core/logging.h"
#include "core/remote_response_cache.h"
#include "core/server_context.h"
#include "pybind_common.h"

namespace tritonx::bindings {
namespace {

// A ResponseStore implemented by a Python object with
//   get_many(keys: list[str]) -> list[bytes | None]
//   put_many(entries: list[tuple[str, bytes]]) -> int   (how many were stored)
// Called on the cache's worker threads, which take the GIL for each batch. The
// Python side handles its own failures (it logs them and answers misses); anything
// it still raises is a miss or a dropped batch here, logged.
// Thread safety: as ResponseStore (the GIL serializes the Python calls).
// Ownership: holds a reference to the Python object, released under the GIL.
class PyResponseStore final : public ResponseStore {
 public:
  explicit PyResponseStore(py::object store) : store_(std::move(store)) {}
  ~PyResponseStore() override {
    if (!Py_IsInitialized()) {
      store_.release();  // the interpreter is gone: nothing left to release into
      return;
    }
    py::gil_scoped_acquire gil;
    store_ = py::object();
  }

  std::vector<std::optional<std::string>> GetMany(
      const std::vector<std::string>& keys) override {
    std::vector<std::optional<std::string>> values(keys.size());
    GilAcquire gil;
    try {
      py::list answered = store_.attr("get_many")(keys);
      for (size_t i = 0; i < values.size() && i < answered.size(); ++i) {
        py::handle value = answered[i];
        if (!value.is_none()) values[i] = value.cast<std::string>();
      }
    } catch (const std::exception& error) {
      Log(LogLevel::kError,
          std::string("response cache lookup failed: ") + error.what());
    }
    return values;
  }

  size_t PutMany(
      const std::vector<std::pair<std::string, std::string>>& entries) override {
    GilAcquire gil;
    try {
      py::list items;
      for (const auto& [key, value] : entries) {
        items.append(py::make_tuple(key, py::bytes(value)));
      }
      return store_.attr("put_many")(items).cast<size_t>();
    } catch (const std::exception& error) {
      Log(LogLevel::kError,
          std::string("response cache insert failed: ") + error.what());
      return 0;
    }
  }

 private:
  py::object store_;
};

}  // namespace

void AddResponseCacheMethods(
    py::class_<ServerContext, std::shared_ptr<ServerContext>>& context) {
  context
      .def(
          "configure_response_cache",
          [](ServerContext& self, uint64_t byte_size) {
            self.SetResponseCache(std::make_shared<LocalResponseCache>(byte_size));
          },
          py::arg("byte_size"),
          "--cache-config local,size=N: the response cache. Before any model loads.")
      .def(
          "configure_remote_response_cache",
          [](ServerContext& self, py::object store, size_t workers,
             uint64_t max_pending_insert_bytes) {
            self.SetResponseCache(std::make_shared<RemoteResponseCache>(
                std::make_shared<PyResponseStore>(std::move(store)), workers,
                max_pending_insert_bytes));
          },
          py::arg("store"), py::arg("workers"),
          py::arg("max_pending_insert_bytes") = 64ull << 20,
          "A response cache kept in `store` (get_many/put_many, called from `workers` "
          "threads of the cache). Before any model loads.")
      .def(
          "close_response_cache",
          [](ServerContext& self) {
            auto* remote =
                dynamic_cast<RemoteResponseCache*>(self.response_cache().get());
            if (remote == nullptr) return;
            // The workers take the GIL to call the store: join them without it.
            py::gil_scoped_release release;
            remote->Close();
          },
          "Stops a remote cache's workers (queued lookups become misses). After the "
          "models have stopped.")
      .def("response_cache_stats", [](const ServerContext& self) -> py::object {
        const auto& cache = self.response_cache();
        if (!cache) return py::none();
        ResponseCacheStats s = cache->Stats();
        py::dict out;
        out["entries"] = s.entries;
        out["bytes"] = s.bytes;
        out["capacity"] = s.capacity;
        out["lookups"] = s.lookups;
        out["hits"] = s.hits;
        out["misses"] = s.misses;
        out["insertions"] = s.insertions;
        out["evictions"] = s.evictions;
        return out;
      });
}

}  // namespace tritonx::bindings
