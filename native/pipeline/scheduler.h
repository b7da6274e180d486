// The threadpool scheduler, free of Node-API so it can be driven by native tests and benchmarks.
//
//  * push() (main thread) copies input into pooled slabs and appends it to the stream's bounded ring
//    (full ring: the oldest item is dropped and counted). A stream with queued input that gives a
//    worker something to do (Stream::wake_for; e.g. the 10 ms chunk that completes a 20 ms part of
//    a 60 ms downlink frame) sits once in a ready list; input that does not waits for such an item.
//    Streams with urgent input (an output someone waits for: an uplink frame, a finished downlink
//    frame) are in the urgent list, the others (work ahead: a part of a frame) in the ahead list.
//  * run_worker() (a libuv threadpool thread) pops ready streams, urgent first, round-robin within
//    a list, and processes up to `batch_per_stream` items of each, until both lists are empty or its
//    time budget is spent. A stream is in a ready list or held by exactly one worker, never both:
//    its items are processed in order and never on two threads at once; different streams run in
//    parallel. workers_to_start() starts a task for every ready stream no starting or idle worker
//    will take (up to max_workers tasks in flight).
//  * A worker out of ready streams lingers (SchedulerOptions::linger_ns, within its budget) before its
//    task ends; push() wakes it directly (a lingering worker counts as one that will pick up the
//    next ready stream, so workers_to_start() does not queue a task for that stream).
//  * Results are appended to one shared list right after a stream's chunk is processed and before
//    the stream can be picked again, so results of a stream are always in input order, whichever
//    worker finishes first. take_results() (main thread) swaps the whole list out: one completion
//    hands every finished result to JavaScript. A worker that goes on to another stream first
//    calls the results notifier (once until the next take_results), so results finished early in
//    a long task do not wait for the whole task.
//  * The encoder ladder moves with the frame queue wait (push -> processing start): down one rung
//    when more than 5 % of a 250 ms window waited longer than the budget, up one rung after 3 s in
//    which nothing waited longer than half the budget.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "encoder_ladder.h"
#include "ladder_governor.h"
#include "metrics_block.h"
#include "stream.h"

namespace xz::pipeline {

struct SchedulerOptions {
  int max_workers = 2;              // threadpool tasks in flight at once
  size_t queue_capacity = 64;            // uplink datagrams per stream before drop-oldest (3.8 s)
  size_t downlink_queue_capacity = 256;  // downlink PCM chunks per stream (2.5 s of 10 ms chunks)
  size_t batch_per_stream = 8;      // items per stream per turn (fairness)
  uint64_t worker_budget_ns = 4'000'000;  // a task returns to the event loop after this much work
  // A worker that runs out of ready streams waits this long (within its budget) for more before its
  // task ends: input pushed meanwhile wakes it directly, which costs the event loop one futex wake
  // instead of queueing a threadpool task (libuv's queue lock, a wake-up) and a completion. 0: off.
  uint64_t linger_ns = 1'000'000;
  uint64_t wait_budget_ns = 15'000'000;   // frame queue wait that triggers the encoder ladder
  bool adaptive = true;
  EncoderLadder ladder;
  int base_complexity = 6;  // the downlink default, reported by the gauge at level 0
};

enum class PushResult { kQueued, kQueuedDroppedOldest, kUnknownStream, kTooLarge };

class Scheduler {
 public:
  Scheduler(const SchedulerOptions& options, std::shared_ptr<MetricsBlock> metrics);
  ~Scheduler();

  const SchedulerOptions& options() const { return options_; }
  MetricsBlock& metrics() { return *metrics_; }
  Pools& pools() { return pools_; }

  // --- main thread ---
  uint32_t add_stream(std::unique_ptr<Stream> stream);
  PushResult push(uint32_t id, const uint8_t* data, size_t bytes, SampleFormat format, uint32_t tag,
                  ItemKind kind = ItemKind::kData);
  PushResult push_control(uint32_t id, ItemKind kind, uint32_t tag);  // kFlush
  // Barge-in: queued data of the stream is dropped (counted) and its buffered audio forgotten.
  bool abort_stream(uint32_t id, uint32_t tag);
  // No more input; queued items are dropped; the stream is freed once no worker holds it, and any
  // of its results not yet delivered are discarded.
  bool close_stream(uint32_t id);
  void close_all();
  bool has_stream(uint32_t id);
  // How many more workers to start now (the caller queues that many threadpool tasks and calls
  // run_worker() from each).
  int workers_to_start();
  // A task started for workers_to_start() has completed (its completion ran on the main thread).
  void task_completed();
  // Swaps out every finished result; results of closed streams are released, not returned.
  void take_results(std::vector<Result>& out);
  // Updates gauges and the encoder ladder; call after each completion.
  void tick(uint64_t now);
  int ladder_level() const { return ladder_level_.load(std::memory_order_relaxed); }
  void set_ladder_level(int level);  // manual override (tests, benchmarks)

  // Called from a worker thread when results are waiting and the worker goes on to another stream;
  // the callee makes the main thread call take_results() soon. Set before any worker runs.
  void set_results_notifier(std::function<void()> notifier) { notifier_ = std::move(notifier); }

  // --- threadpool thread ---
  void run_worker(uint64_t queued_at_ns);

 private:
  struct WorkerScratch;
  void push_ready_locked(Stream* s);
  void unlink_ready_locked(Stream* s);
  Stream* pop_ready_locked();
  void enqueue_locked(Stream* s, const InputItem& item);
  // Bookkeeping for an item leaving its stream's queue (taken by a worker or dropped); the caller
  // moves the ring's head and releases the slab.
  // The pool a stream's input slabs come from (datagrams up, PCM down).
  dsp::BufferPool& pool_for(const Stream* s);
  // Every path that throws a queued item away (overflow, close, abort) ends here, so the slab, the
  // wake counts and the queue depth cannot drift apart.
  void discard_item_locked(Stream* s, InputItem& item);
  void forget_item_locked(Stream* s, const InputItem& item);
  void drop_queued_locked(Stream* s, Counter reason, bool keep_control);
  void release_result(Result& r);

  SchedulerOptions options_;
  std::shared_ptr<MetricsBlock> metrics_;
  Pools pools_;

  // Releases the lock taken by push(), push_control() or abort_stream(), then wakes a lingering
  // worker if the input made work it should take (notified outside the lock: the woken worker does
  // not block on it at once).
  void unlock_and_wake(std::unique_lock<std::mutex>& lock);
  // Claims the results notification (once until the next take_results) when results are waiting.
  bool claim_notification_locked();
  // As workers_to_start(): work ahead wakes a worker only when none is busy to take it after its chunk.
  bool should_wake_locked() const {
    return lingering_ > 0 && (ready_[kUrgentList].count > 0 || (ready_count_ > 0 && holding_ == 0));
  }

  std::mutex mutex_;
  std::condition_variable work_cv_;  // lingering workers wait here (with mutex_)
  int lingering_ = 0;
  bool closing_ = false;
  std::unordered_map<uint32_t, Stream*> streams_;  // open streams (closed ones leave at close)
  // Streams ready for a worker: those with urgent items first, then those with work ahead only.
  static constexpr int kUrgentList = 0, kAheadList = 1;
  struct ReadyList {
    Stream* head = nullptr;
    Stream* tail = nullptr;
    size_t count = 0;
  };
  ReadyList ready_[2];
  size_t ready_count_ = 0;
  std::vector<Result> results_;
  std::vector<std::unique_ptr<WorkerScratch>> scratch_;  // one per concurrent worker
  std::vector<WorkerScratch*> free_scratch_;
  int active_workers_ = 0;
  int holding_ = 0;            // workers processing a stream's chunk (not picking up ready streams)
  int starting_workers_ = 0;
  int tasks_outstanding_ = 0;  // started and not yet completed on the main thread
  uint32_t next_id_ = 1;
  size_t queued_up_ = 0, queued_down_ = 0, queued_peak_ = 0;

  std::function<void()> notifier_;
  bool notified_ = false;  // a notification is pending (guarded by mutex_)

  std::atomic<int> ladder_level_{0};
  LadderGovernor governor_;
};

}  // namespace xz::pipeline
