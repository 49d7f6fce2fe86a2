// PriorityQueue: the pending requests of one model, by priority level, with Triton's
// per-level queue policy (timeouts with REJECT or DELAY, maximum size).
//
// Not thread safe: the scheduler guards it with its own mutex.
#pragma once

#include <cstdint>
#include <deque>
#include <vector>

#include "infer_request.h"
#include "scheduler_config.h"
#include "status.h"

namespace tritonx {

class PriorityQueue {
 public:
  explicit PriorityQueue(const SchedulerConfig& config);

  // Places the request at the back of its level: sets priority_level and deadline_ns.
  // UNAVAILABLE when the level is at its max_queue_size.
  Status Push(const RequestPtr& request, uint64_t now_ns);

  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }

  // Handles requests whose queue timeout passed by `now_ns`: REJECT ones are removed
  // and appended to `rejected`; DELAY ones move behind every other request of their
  // level (Triton's per-level delayed queue), still ahead of lower levels.
  void SweepExpired(uint64_t now_ns, std::vector<RequestPtr>* rejected);

  // Earliest pending deadline, or 0 when no queued request can time out.
  uint64_t NextDeadline() const;

  // Visits requests in scheduling order (level 1 first; within a level, FIFO, then
  // its delayed requests) until `visit` returns false.
  template <typename Visit>
  void ForEach(Visit&& visit) const {
    for (size_t index = 0; index < levels_.size(); ++index) {
      for (const auto* queue : {&levels_[index], &delayed_[index]}) {
        for (const auto& request : *queue) {
          if (!visit(request)) return;
        }
      }
    }
  }

  // Removes and returns the first `count` requests in scheduling order.
  std::vector<RequestPtr> PopFront(size_t count);

  // Removes the request with this uid; false if it is not queued.
  bool Remove(uint64_t uid);

  std::vector<RequestPtr> DrainAll();

 private:
  uint32_t LevelOf(uint64_t priority) const;
  const QueuePolicy& PolicyOf(uint32_t level) const;

  std::vector<QueuePolicy> policies_;            // index: level - 1
  std::vector<std::deque<RequestPtr>> levels_;   // index: level - 1
  std::vector<std::deque<RequestPtr>> delayed_;  // index: level - 1
  uint32_t default_level_;
  size_t size_ = 0;
  bool any_timeouts_ = false;
};

}  // namespace tritonx
