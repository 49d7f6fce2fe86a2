#include "load_generator.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

namespace tritonx {

LoadResult GenerateLoad(Model& model, const std::vector<Tensor>& inputs,
                        int concurrency, double seconds) {
  std::atomic<uint64_t> completed{0};
  std::atomic<uint64_t> failed{0};
  const auto start = std::chrono::steady_clock::now();
  const auto deadline = start + std::chrono::duration_cast<std::chrono::nanoseconds>(
                                    std::chrono::duration<double>(seconds));
  std::vector<std::thread> clients;
  for (int c = 0; c < concurrency; ++c) {
    clients.emplace_back([&] {
      std::mutex mu;
      std::condition_variable cv;
      while (std::chrono::steady_clock::now() < deadline) {
        bool done = false;
        bool ok = false;
        auto request = std::make_shared<InferenceRequest>();
        request->inputs = inputs;
        request->SetResponseCallback([&](std::unique_ptr<InferenceResponse> response) {
          std::lock_guard<std::mutex> lock(mu);
          ok = response->status.ok();
          done = true;
          cv.notify_one();
        });
        if (!model.Enqueue(request).ok()) {
          failed.fetch_add(1);
          continue;
        }
        std::unique_lock<std::mutex> lock(mu);
        cv.wait(lock, [&] { return done; });
        (ok ? completed : failed).fetch_add(1);
      }
    });
  }
  for (auto& client : clients) client.join();
  LoadResult result;
  result.completed = completed.load();
  result.failed = failed.load();
  result.seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return result;
}

}  // namespace tritonx
