// RateLimiter: Triton's rate limiter (`--rate-limit=execution_count`). Every model
// instance of a server registers the resources its instance group's `rate_limiter`
// block names; an instance executes a batch only once all of them are free, holds
// them for the execution and gives them back after. Resources are per device unless
// declared `global` (one pool for the whole server), and shared by every model.
//
// Triton's rules, kept here: a resource's count is the largest any registered
// instance needs, unless `--rate-limit-resource` gives it (then that count, and a
// resource not given there has none, which fails the load of an instance needing
// it); a name may not be both global and per-device. Waiting instances are served
// in the order of their scaled priority, executions so far × max(priority, 1),
// lowest first (a priority of 2 gets half the turns of a priority of 1), ties in
// arrival order; only the first in that order may take resources, so an instance
// needing many copies is not overtaken forever by instances needing few.
//
// Thread safety: every method is thread safe. Ownership: one per ServerContext,
// shared; each registered instance holds a Slot, which keeps the limiter alive and
// unregisters itself when dropped.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <list>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "status.h"

namespace tritonx {

struct RateLimitResource {
  std::string name;
  uint64_t count = 0;
  bool global = false;
};

// One instance's rate_limiter block, and the device it runs on.
struct InstanceRateLimit {
  std::vector<RateLimitResource> resources;
  uint32_t priority = 0;
  int device = 0;
};

class RateLimiter : public std::enable_shared_from_this<RateLimiter> {
 public:
  // Device key of `--rate-limit-resource` entries without a device: every device.
  static constexpr int kEveryDevice = -1;
  // Device key of global resources.
  static constexpr int kGlobal = -2;
  // device -> resource name -> count.
  using ResourceMap = std::map<int, std::map<std::string, uint64_t>>;

  class Slot;

  // Off until configured; set before any model registers (server start).
  void Configure(bool enabled, ResourceMap explicit_counts);
  bool enabled() const;

  // Registers instances (one slot each, in order). Fails INVALID_ARG with Triton's
  // message when the resulting counts cannot schedule one of them; then nothing is
  // registered. With the limiter off, registers nothing and returns no slots.
  Status Register(const std::vector<InstanceRateLimit>& instances,
                  std::vector<std::shared_ptr<Slot>>* slots);

  // The resource counts now in force (tests, logs): device -> name -> count.
  ResourceMap Limits() const;
  // Instances blocked in Acquire (tests).
  size_t WaitingCount() const;

 private:
  friend class Slot;
  struct Waiter {
    Slot* slot;
    uint64_t arrival;
  };

  void Unregister(Slot* slot);
  // With mu_ held: recomputes limits_ from the registered slots (plus `extra`).
  Status ComputeLimits(const std::vector<const InstanceRateLimit*>& extra,
                       ResourceMap* limits) const;
  bool Fits(const Slot& slot) const;  // mu_ held
  bool Acquire(Slot* slot);
  void Release(Slot* slot);
  void Interrupt();

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool enabled_ = false;
  ResourceMap explicit_;
  ResourceMap limits_;
  ResourceMap allocated_;
  std::vector<Slot*> slots_;
  std::list<Waiter> waiting_;
  uint64_t arrivals_ = 0;
};

// One registered instance. Acquire blocks until this instance may execute (false
// when abandoned instead); Release ends the execution.
class RateLimiter::Slot {
 public:
  // Made by RateLimiter::Register only.
  Slot(std::shared_ptr<RateLimiter> limiter, InstanceRateLimit config);
  ~Slot();
  Slot(const Slot&) = delete;
  Slot& operator=(const Slot&) = delete;

  bool Acquire() { return limiter_->Acquire(this); }
  void Release() { limiter_->Release(this); }
  // Stops waiting for good: every Acquire from now on returns false at once (an
  // unload past its grace period fails what is still waiting).
  void Abandon();
  uint64_t executions() const { return executions_.load(std::memory_order_relaxed); }

 private:
  friend class RateLimiter;
  // Resource key per requirement: the device, or kGlobal.
  int KeyOf(const RateLimitResource& resource) const {
    return resource.global ? kGlobal : config_.device;
  }

  const std::shared_ptr<RateLimiter> limiter_;
  const InstanceRateLimit config_;
  std::atomic<uint64_t> executions_{0};
  std::atomic<bool> abandoned_{false};
};

}  // namespace tritonx
