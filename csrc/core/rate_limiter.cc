#include "rate_limiter.h"

#include <algorithm>

namespace tritonx {
namespace {

// Scaled priority of Triton's rate limiter: executions × max(priority, 1), lowest
// served first.
long double ScaledPriority(uint64_t executions, uint32_t priority) {
  return static_cast<long double>(executions) * std::max<uint32_t>(priority, 1);
}

}  // namespace

void RateLimiter::Configure(bool enabled, ResourceMap explicit_counts) {
  std::lock_guard<std::mutex> lock(mu_);
  enabled_ = enabled;
  explicit_ = std::move(explicit_counts);
}

bool RateLimiter::enabled() const {
  std::lock_guard<std::mutex> lock(mu_);
  return enabled_;
}

RateLimiter::ResourceMap RateLimiter::Limits() const {
  std::lock_guard<std::mutex> lock(mu_);
  return limits_;
}

size_t RateLimiter::WaitingCount() const {
  std::lock_guard<std::mutex> lock(mu_);
  return waiting_.size();
}

Status RateLimiter::ComputeLimits(const std::vector<const InstanceRateLimit*>& extra,
                                  ResourceMap* limits) const {
  // What the instances need: the largest count per (device or global, name).
  ResourceMap needed;
  auto add = [&needed](const InstanceRateLimit& config) {
    for (const auto& resource : config.resources) {
      const int key = resource.global ? kGlobal : config.device;
      uint64_t& count = needed[key][resource.name];
      count = std::max(count, resource.count);
    }
  };
  for (const Slot* slot : slots_) add(slot->config_);
  for (const InstanceRateLimit* config : extra) add(*config);

  // A name is either global or per device, never both.
  for (const auto& [global_name, count] : needed[kGlobal]) {
    for (const auto& [device, resources] : needed) {
      if (device != kGlobal && resources.count(global_name) != 0) {
        return Status(StatusCode::kInvalidArg,
                      "Resource \"" + global_name +
                          "\" is present as both global and device-specific "
                          "resource in the model configuration.");
      }
    }
  }
  if (explicit_.empty()) {
    *limits = std::move(needed);
    return Status::Ok();
  }
  // Counts given on the command line replace the defaults; a resource they leave
  // out has no copies at all. A global resource takes the largest count given for
  // its name on any device; a device resource the largest of its device's and the
  // every-device entry.
  for (auto& [device, resources] : needed) {
    for (auto& [name, required] : resources) {
      uint64_t available = 0;
      for (const auto& [given_device, given] : explicit_) {
        if (device != kGlobal && given_device != device &&
            given_device != kEveryDevice) {
          continue;
        }
        auto it = given.find(name);
        if (it != given.end()) available = std::max(available, it->second);
      }
      if (available < required) {
        return Status(StatusCode::kInvalidArg,
                      "Resource count for \"" + name + "\" is limited to " +
                          std::to_string(available) +
                          " which will prevent scheduling of one or more model "
                          "instances, the minimum required count is " +
                          std::to_string(required));
      }
      required = available;
    }
  }
  *limits = std::move(needed);
  return Status::Ok();
}

Status RateLimiter::Register(const std::vector<InstanceRateLimit>& instances,
                             std::vector<std::shared_ptr<Slot>>* slots) {
  slots->clear();
  // Checked and registered under one lock: loads of several models may race.
  std::lock_guard<std::mutex> lock(mu_);
  if (!enabled_) return Status::Ok();
  std::vector<const InstanceRateLimit*> extra;
  for (const auto& config : instances) extra.push_back(&config);
  ResourceMap limits;
  Status status = ComputeLimits(extra, &limits);
  if (!status.ok()) return status;
  limits_ = std::move(limits);
  for (const auto& config : instances) {
    slots->push_back(std::make_shared<Slot>(shared_from_this(), config));
    slots_.push_back(slots->back().get());
  }
  return Status::Ok();
}

void RateLimiter::Unregister(Slot* slot) {
  std::lock_guard<std::mutex> lock(mu_);
  slots_.erase(std::remove(slots_.begin(), slots_.end(), slot), slots_.end());
  // Fewer instances may need less: recompute (the remaining ones fitted before, so
  // this cannot fail).
  ResourceMap limits;
  if (ComputeLimits({}, &limits).ok()) limits_ = std::move(limits);
  cv_.notify_all();
}

bool RateLimiter::Fits(const Slot& slot) const {
  for (const auto& resource : slot.config_.resources) {
    const int key = slot.KeyOf(resource);
    uint64_t limit = 0;
    auto device = limits_.find(key);
    if (device != limits_.end()) {
      auto it = device->second.find(resource.name);
      if (it != device->second.end()) limit = it->second;
    }
    uint64_t used = 0;
    auto held = allocated_.find(key);
    if (held != allocated_.end()) {
      auto it = held->second.find(resource.name);
      if (it != held->second.end()) used = it->second;
    }
    if (used + resource.count > limit) return false;
  }
  return true;
}

bool RateLimiter::Acquire(Slot* slot) {
  std::unique_lock<std::mutex> lock(mu_);
  auto me = waiting_.insert(waiting_.end(), Waiter{slot, arrivals_++});
  while (true) {
    if (slot->abandoned_.load(std::memory_order_acquire)) {
      waiting_.erase(me);
      cv_.notify_all();  // the next in line may be able to go now
      return false;
    }
    // Only the first in priority order may take resources.
    auto best = waiting_.begin();
    for (auto it = std::next(waiting_.begin()); it != waiting_.end(); ++it) {
      const long double mine =
          ScaledPriority(it->slot->executions(), it->slot->config_.priority);
      const long double theirs =
          ScaledPriority(best->slot->executions(), best->slot->config_.priority);
      if (mine < theirs || (mine == theirs && it->arrival < best->arrival)) best = it;
    }
    if (best == me && Fits(*slot)) {
      for (const auto& resource : slot->config_.resources) {
        allocated_[slot->KeyOf(resource)][resource.name] += resource.count;
      }
      waiting_.erase(me);
      // The next in line may fit in what is left.
      if (!waiting_.empty()) cv_.notify_all();
      return true;
    }
    cv_.wait(lock);
  }
}

void RateLimiter::Release(Slot* slot) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const auto& resource : slot->config_.resources) {
      allocated_[slot->KeyOf(resource)][resource.name] -= resource.count;
    }
    slot->executions_.fetch_add(1, std::memory_order_relaxed);
  }
  cv_.notify_all();
}

void RateLimiter::Interrupt() {
  // Taking the lock orders the abandon flag before any waiter's next check.
  { std::lock_guard<std::mutex> lock(mu_); }
  cv_.notify_all();
}

RateLimiter::Slot::Slot(std::shared_ptr<RateLimiter> limiter, InstanceRateLimit config)
    : limiter_(std::move(limiter)), config_(std::move(config)) {}

RateLimiter::Slot::~Slot() { limiter_->Unregister(this); }

void RateLimiter::Slot::Abandon() {
  abandoned_.store(true, std::memory_order_release);
  limiter_->Interrupt();
}

}  // namespace tritonx
