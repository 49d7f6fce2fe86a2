// SequenceBatchScheduler: Triton's sequence batcher (sequence_batching).
//
// Every request names its sequence (a uint64 or string correlation id) and carries
// START/END flags. A sequence is bound to one batch slot of one instance from its
// START until its END is dispatched or it stays idle past max_sequence_idle; the
// requests of one sequence run one at a time, in arrival order, on that instance.
// Sequences that find every slot taken wait in a backlog (in arrival order) for the
// next slot to free.
//
// Strategies (each instance's worker forms the batches of its own slots):
//   direct  max(1, max_batch_size) slots per instance; a batch covers slots 0..n of
//           the instance where n is the highest slot with a request ready; an empty
//           slot below n gets a "null request" (READY false, correlation id 0) whose
//           response is dropped, which is what Triton hands its backends. A ready
//           request whose (non-ragged) input shapes differ from the batch's first
//           one also gets a null request and waits for a later batch. Waits up to
//           max_queue_delay for minimum_slot_utilization of the slots to be ready.
//   oldest  max_candidate_sequences slots per instance, each issuing one request at
//           a time, as Triton's oldest batcher does: a slot issues the front request
//           of its sequence once the request it issued before has completed, and the
//           batch takes the issued requests, oldest issue first, by the dynamic
//           batcher's rule (PreferredCut): up to max_batch_size, preferred sizes,
//           max_queue_delay counted from the issue. A sequence whose END request is
//           issued gives its slot up at once: the next sequence takes it and waits
//           for that END to complete (Triton's pairing of sequences follows from
//           this). Batches form in sequence_batch_formation.cc.
//
// The batcher adds the configured control inputs to each request (START, END, READY,
// CORRID) and the implicit states: a state's input is the state output the model
// produced in the sequence's previous step (kept in arena buffers, per sequence),
// reset at START to its initial_state or zeros, freed when the sequence ends.
// Execution, statistics and delivery go through the shared BatchRunner.
//
// Iterative sequences (iterative_sequence: true): a request without a correlation
// id is a sequence of its own (the batcher numbers it, START on its first
// execution). After each execution, a request its backend rescheduled goes back to
// the front of its sequence's queue (START cleared) to run in a later batch, mixed
// with new requests (continuous batching); a sequence's slot is freed when its last
// request is answered rather than when its END is dispatched.
//
// A request's `timeout` applies only while its sequence waits in the backlog: past
// the earliest such deadline, every request of that sequence is refused (UNAVAILABLE
// "timeout of the corresponding sequence has been expired", a REJECTED failure) and
// its id is forgotten; a sequence holding a slot never times out this way.
//
// Threads: one worker per instance plus a reaper that ends idle sequences and
// expires backlogged ones. Each worker waits on its own condition (instance_cv_), so
// a request wakes only the worker that can run it.
//
// Instance updates: an added instance's slots take backlogged sequences at once; a
// retired instance's slots take no new sequence, and its worker keeps running the
// sequences bound to them until each ends (END or idle timeout), then leaves, as
// Triton keeps a removed instance alive for its sequences.
// Thread safety and ownership: see Scheduler. All bookkeeping is guarded by mu_; a
// sequence's state tensors are touched only by the worker of its instance while one
// of its requests is executing (the `executing` mark keeps the reaper away).
#pragma once

#include <chrono>
#include <condition_variable>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "batch_runner.h"
#include "instance_scheduler.h"
#include "scheduler.h"

namespace tritonx {

class SequenceBatchScheduler final : public InstanceScheduler {
 public:
  SequenceBatchScheduler(const ModelSpec& spec, const SchedulerConfig& config,
                         std::vector<std::shared_ptr<Executor>> instances,
                         std::shared_ptr<ModelStats> stats,
                         std::shared_ptr<TensorArena> arena);
  ~SequenceBatchScheduler() override;
  SequenceBatchScheduler(const SequenceBatchScheduler&) = delete;
  SequenceBatchScheduler& operator=(const SequenceBatchScheduler&) = delete;

  Status Enqueue(const RequestPtr& request, bool caller_waits) override;
  bool Cancel(const RequestPtr& request) override;
  size_t PendingCount() const override;
  void Stop(bool drain) override;
  bool OnWorkerThread() const override;
  // ExecuteOn (InstanceScheduler's) batches run before the slots' batches, outside
  // every sequence: no control or state inputs are added and no slot or sequence
  // state is read or changed (Triton hands warmup requests to the instance past
  // its sequence batcher).

  // Slots per instance and the sequences holding one / waiting in the backlog (tests).
  int slots_per_instance() const { return slots_per_instance_; }
  size_t ActiveSequences() const;
  size_t BacklogSequences() const;

 private:
  struct Sequence {
    std::string key;  // "u<id>" or "s<id>"
    uint64_t id = 0;
    std::string id_str;
    bool string_id = false;
    std::deque<RequestPtr> queue;
    int instance = -1;  // -1 with slot -1: in the backlog
    int slot = -1;
    bool ended = false;      // its END was queued: the id may start a new sequence
    bool anonymous = false;  // iterative: one request without a correlation id
    bool executing = false;  // one of its requests is in a running batch
    uint64_t last_ns = 0;    // last arrival or completion (idle timeout)
    // While in the backlog: when its requests expire (the earliest arrival plus
    // `timeout` among those that gave one; 0: never), as Triton's backlog queues.
    uint64_t expire_ns = 0;
    std::vector<Tensor> state;  // current implicit states (empty: not initialised)
  };
  using SequencePtr = std::shared_ptr<Sequence>;

  // With mu_ held: numbers `executor` as the next instance and starts its worker.
  void AddInstance(std::shared_ptr<Executor> executor, bool held) override;
  // Added or released instances' slots take backlogged sequences.
  void InstancesChanged() override { FillFromBacklog(); }
  // Each worker waits on its instance's own condition (instance_cv_): a request
  // wakes only the worker whose slot holds its sequence. These wake every worker.
  void WakeWorkers() override;
  void WakeWorkersLocked();  // with mu_ held
  // Without mu_: `worker` (an instance_cv_ entry taken under mu_), or every worker
  // when null.
  void WakeWorker(std::condition_variable* worker);
  uint64_t IdleNs() const { return config_.max_sequence_idle_us * 1000; }
  // With mu_ held: hands free slots of instances not retired to backlogged sequences.
  void FillFromBacklog();
  // With mu_ held: whether instance `instance` was retired and holds nothing more.
  bool RetiredAndDone(int instance) const;
  void WorkerLoop(int instance,
                  const std::shared_ptr<BatchRunner::Instance>& runs_on) override;
  void ReaperLoop();
  // With mu_ held: the next batch of `instance`, if one should run now; else false
  // and *wake_ns says when to look again (0: on the next event).
  bool TakeDirect(int instance, uint64_t now, Batch* batch,
                  std::vector<SequencePtr>* seqs, uint64_t* wake_ns);
  bool TakeOldest(int instance, uint64_t now, Batch* batch,
                  std::vector<SequencePtr>* seqs, uint64_t* wake_ns);
  // With mu_ held: gives `seq` a free slot, or puts it in the backlog.
  void AssignSlot(const SequencePtr& seq);
  // With mu_ held: frees the slot of `seq` and hands it to the oldest backlog entry.
  void ReleaseSlot(const SequencePtr& seq);
  bool HasQueuedWork(int instance) const;
  // Oldest strategy, with mu_ held: each free slot of `instance` issues the front
  // request of its sequence (an END gives the slot up); CompleteOldest frees the
  // slots of the batch `instance` ran; HoldsOldest: some slot is busy.
  void IssueOldest(int instance, uint64_t now);
  void CompleteOldest(int instance);
  bool HoldsOldest(int instance) const;
  // Outside mu_: adds control and state inputs; null slots (seqs[i] null) get a
  // request of zeros shaped like the batch's first real request.
  void PrepareBatch(Batch& batch, const std::vector<SequencePtr>& seqs);
  void AddControls(InferenceRequest* request, bool null_request);
  // The states at START (initial_state or zeros) for a request of `batch_size`.
  std::vector<Tensor> InitialStates(int64_t batch_size);
  // BatchRunner hook: keeps the state outputs of each request for its sequence.
  void CaptureStates(Batch& batch);
  // With mu_ held, after an iterative batch ran: queues again what the backend
  // rescheduled, frees the slots of sequences whose last request was answered.
  // `closes[i]`: request i was its sequence's END (or an anonymous sequence's).
  // A stop without drain gives up a rescheduled request (into `abandoned`), a
  // cancellation ends one (into `cancelled`).
  void AfterIteration(Batch& batch, const std::vector<SequencePtr>& seqs,
                      const std::vector<bool>& closes,
                      std::vector<RequestPtr>* abandoned,
                      std::vector<RequestPtr>* cancelled);
  // Enqueue of a request without a correlation id (iterative sequences).
  Status EnqueueWhole(const RequestPtr& request, uint64_t now);
  std::string Name() const { return runner_.spec().name; }

  const SequenceBatchingConfig config_;
  const int32_t max_batch_size_;
  // Holds the control values the added tensors point into (requests may outlive us).
  std::shared_ptr<const SequenceBatchingConfig> owned_config_;
  std::shared_ptr<TensorArena> arena_;  // state and null-request buffers
  BatchRunner runner_;
  std::vector<int32_t> preferred_;
  int slots_per_instance_ = 1;

  // mu_, work_cv_, stopping_, table_, stop_mu_, running_workers_, exit_cv_: see
  // InstanceScheduler.
  std::condition_variable reap_cv_;
  std::unordered_map<std::string, SequencePtr> active_;  // ids a request may continue
  std::vector<std::vector<SequencePtr>> slots_;          // [instance][slot]
  // Oldest strategy, per instance and slot: the sequence whose front request the
  // slot issued (and when; it may have given the slot up since, see above), and
  // whether the slot's issued request has not completed yet.
  struct OldestSlot {
    SequencePtr issued;
    uint64_t issued_ns = 0;
    bool busy = false;
  };
  std::vector<std::vector<OldestSlot>> oldest_;
  std::vector<std::vector<int>> oldest_running_;  // [instance]: its batch's slots
  std::deque<SequencePtr> backlog_;
  size_t pending_ = 0;              // queued requests
  uint64_t next_anonymous_id_ = 1;  // iterative: ids given to requests without one
  bool abandoning_ = false;         // stopping without drain
  std::thread reaper_;
  // The sequences of the batch each instance is running (null: a null slot). The
  // table grows under mu_; an entry's vector is touched only by its instance's worker
  // (and the state capture running on its behalf), through a pointer taken under mu_.
  std::vector<std::unique_ptr<std::vector<SequencePtr>>> running_;
  // [instance]: what its worker waits on (work_cv_ is unused here). The table grows
  // under mu_; the conditions themselves never move, so a waker may notify one
  // through a pointer taken under mu_ after letting go of the lock.
  std::vector<std::unique_ptr<std::condition_variable>> instance_cv_;
  // When the reaper wakes next by itself (0: only when notified). A completed batch
  // makes a slot idle, due no earlier than now + the idle timeout: the reaper needs
  // telling only when it would otherwise sleep past that.
  uint64_t reaper_wake_ns_ = 0;
};

}  // namespace tritonx
