#include "priority_queue.h"

#include <algorithm>

#include "model_spec.h"

namespace tritonx {

PriorityQueue::PriorityQueue(const SchedulerConfig& config) {
  const uint32_t count = std::max<uint32_t>(1, config.priority_levels);
  levels_.resize(count);
  delayed_.resize(count);
  policies_.reserve(count);
  for (uint32_t level = 1; level <= count; ++level) {
    auto it = config.priority_queue_policy.find(level);
    policies_.push_back(it != config.priority_queue_policy.end()
                            ? it->second
                            : config.default_queue_policy);
    const QueuePolicy& policy = policies_.back();
    // A request's `timeout` may only shorten a default one (Triton's rule), so
    // only a level with a default timeout ever expires requests.
    if (policy.default_timeout_us > 0) any_timeouts_ = true;
  }
  default_level_ = config.default_priority_level;
  if (default_level_ == 0 || default_level_ > count) {
    // Triton's default level when none is configured is the lowest priority.
    default_level_ = count;
  }
}

uint32_t PriorityQueue::LevelOf(uint64_t priority) const {
  if (priority == 0 || priority > levels_.size()) return default_level_;
  return static_cast<uint32_t>(priority);
}

const QueuePolicy& PriorityQueue::PolicyOf(uint32_t level) const {
  return policies_[level - 1];
}

Status PriorityQueue::Push(const RequestPtr& request, uint64_t now_ns) {
  const uint32_t level = LevelOf(request->priority);
  const QueuePolicy& policy = PolicyOf(level);
  auto& queue = levels_[level - 1];
  if (policy.max_queue_size > 0 && queue.size() >= policy.max_queue_size) {
    // Triton names the request, like its other per-request refusals.
    return Status(StatusCode::kUnavailable,
                  RequestPrefix(*request) + "Exceeds maximum queue size");
  }
  uint64_t timeout_us = policy.default_timeout_us;
  if (policy.allow_timeout_override && request->timeout_us > 0 &&
      request->timeout_us < timeout_us) {
    timeout_us = request->timeout_us;
  }
  request->priority_level = level;
  request->deadline_ns = timeout_us > 0 ? now_ns + timeout_us * 1000 : 0;
  queue.push_back(request);
  ++size_;
  return Status::Ok();
}

void PriorityQueue::SweepExpired(uint64_t now_ns, std::vector<RequestPtr>* rejected) {
  if (!any_timeouts_) return;
  for (size_t index = 0; index < levels_.size(); ++index) {
    auto& queue = levels_[index];
    const QueuePolicy& policy = policies_[index];
    for (auto it = queue.begin(); it != queue.end();) {
      const RequestPtr& request = *it;
      if (request->deadline_ns == 0 || request->deadline_ns > now_ns) {
        ++it;
        continue;
      }
      if (policy.timeout_action == TimeoutAction::kReject) {
        rejected->push_back(request);
        --size_;
      } else {
        request->deadline_ns = 0;  // delayed requests do not time out again
        delayed_[index].push_back(request);
      }
      it = queue.erase(it);
    }
  }
}

uint64_t PriorityQueue::NextDeadline() const {
  if (!any_timeouts_) return 0;
  uint64_t next = 0;
  for (const auto& queue : levels_) {
    for (const auto& request : queue) {
      if (request->deadline_ns != 0 && (next == 0 || request->deadline_ns < next)) {
        next = request->deadline_ns;
      }
    }
  }
  return next;
}

std::vector<RequestPtr> PriorityQueue::PopFront(size_t count) {
  std::vector<RequestPtr> out;
  out.reserve(count);
  for (size_t index = 0; index < levels_.size(); ++index) {
    for (auto* queue : {&levels_[index], &delayed_[index]}) {
      while (out.size() < count && !queue->empty()) {
        out.push_back(std::move(queue->front()));
        queue->pop_front();
      }
    }
  }
  size_ -= out.size();
  return out;
}

bool PriorityQueue::Remove(uint64_t uid) {
  auto remove_from = [&](std::deque<RequestPtr>& queue) {
    auto it = std::find_if(queue.begin(), queue.end(),
                           [&](const RequestPtr& r) { return r->uid == uid; });
    if (it == queue.end()) return false;
    queue.erase(it);
    --size_;
    return true;
  };
  for (size_t index = 0; index < levels_.size(); ++index) {
    if (remove_from(levels_[index]) || remove_from(delayed_[index])) return true;
  }
  return false;
}

std::vector<RequestPtr> PriorityQueue::DrainAll() { return PopFront(size_); }

}  // namespace tritonx
