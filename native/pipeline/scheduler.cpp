#include "scheduler.h"

#include <algorithm>
#include <chrono>
#include <cstring>

#include "dsp/dsp_error.h"
#include "dsp/packet.h"

namespace xz::pipeline {

struct Scheduler::WorkerScratch {
  std::vector<InputItem> items;
  std::vector<Result> results;
};

Scheduler::Scheduler(const SchedulerOptions& options, std::shared_ptr<MetricsBlock> metrics)
    : options_(options), metrics_(std::move(metrics)), governor_(options.wait_budget_ns) {
  if (options_.max_workers < 1) options_.max_workers = 1;
  if (options_.queue_capacity < 1) options_.queue_capacity = 1;
  if (options_.downlink_queue_capacity < 1) options_.downlink_queue_capacity = 1;
  if (options_.batch_per_stream < 1) options_.batch_per_stream = 1;
  results_.reserve(4096);
  for (int i = 0; i < options_.max_workers; ++i) {
    auto s = std::make_unique<WorkerScratch>();
    s->items.resize(options_.batch_per_stream + 1);  // + a trailing flush
    s->results.reserve(1024);
    free_scratch_.push_back(s.get());
    scratch_.push_back(std::move(s));
  }
  set_ladder_level(0);
}

Scheduler::~Scheduler() {
  // Only reached when no worker runs (the binding keeps the scheduler alive until then).
  for (auto& [id, s] : streams_) {
    drop_queued_locked(s, kDropClosed, false);
    delete s;
  }
  std::vector<Result> rest;
  rest.swap(results_);
  for (Result& r : rest) release_result(r);
}

void Scheduler::release_result(Result& r) {
  if (r.slab) r.pool->release(r.slab);
  r.slab = nullptr;
}

uint32_t Scheduler::add_stream(std::unique_ptr<Stream> stream) {
  std::lock_guard<std::mutex> lock(mutex_);
  Stream* s = stream.release();
  s->id = next_id_++;
  s->ring.resize(s->is_uplink() ? options_.queue_capacity : options_.downlink_queue_capacity);
  streams_.emplace(s->id, s);
  metrics_->set(kStreamsOpen, streams_.size());
  return s->id;
}

bool Scheduler::has_stream(uint32_t id) {
  std::lock_guard<std::mutex> lock(mutex_);
  return streams_.count(id) != 0;
}

void Scheduler::push_ready_locked(Stream* s) {
  const int list = s->urgent > 0 ? kUrgentList : kAheadList;
  ReadyList& l = ready_[list];
  s->ready_list = list;
  s->next_ready = nullptr;
  s->prev_ready = l.tail;
  if (l.tail) l.tail->next_ready = s; else l.head = s;
  l.tail = s;
  ++l.count;
  ++ready_count_;
}

void Scheduler::unlink_ready_locked(Stream* s) {
  ReadyList& l = ready_[s->ready_list];
  if (s->prev_ready) s->prev_ready->next_ready = s->next_ready; else l.head = s->next_ready;
  if (s->next_ready) s->next_ready->prev_ready = s->prev_ready; else l.tail = s->prev_ready;
  s->next_ready = s->prev_ready = nullptr;
  s->ready_list = -1;
  --l.count;
  --ready_count_;
}

Stream* Scheduler::pop_ready_locked() {
  for (ReadyList& l : ready_) {
    if (Stream* s = l.head) {
      unlink_ready_locked(s);
      return s;
    }
  }
  return nullptr;
}

dsp::BufferPool& Scheduler::pool_for(const Stream* s) { return s->is_uplink() ? pools_.datagram : pools_.pcm; }

void Scheduler::discard_item_locked(Stream* s, InputItem& item) {
  if (item.slab) pool_for(s).release(item.slab);
  item.slab = nullptr;
  forget_item_locked(s, item);
}

void Scheduler::forget_item_locked(Stream* s, const InputItem& item) {
  if (item.wakes) {
    --s->waking;
    if (item.urgent) --s->urgent;
  }
  (s->is_uplink() ? queued_up_ : queued_down_) -= 1;
}

void Scheduler::enqueue_locked(Stream* s, const InputItem& in) {
  const size_t cap = s->ring.size();
  if (s->count == cap) {
    // Drop-oldest: under overload the freshest audio matters most, and memory stays bounded. Only
    // audio is dropped: a flush or reset must survive, or a turn would never end / an abort undo.
    size_t victim = 0;
    while (victim < s->count && s->ring[(s->head + victim) % cap].kind != ItemKind::kData) ++victim;
    if (victim == s->count) victim = 0;  // only control items queued (cannot happen with cap > 2)
    InputItem& oldest = s->ring[(s->head + victim) % cap];
    discard_item_locked(s, oldest);
    s->prediction_stale = true;
    // Close the hole: shift the control items in front of the victim back by one.
    for (size_t i = victim; i > 0; --i) s->ring[(s->head + i) % cap] = s->ring[(s->head + i - 1) % cap];
    s->head = (s->head + 1) % cap;
    --s->count;
    s->riding = std::min(s->riding, s->count);
    metrics_->add(s->is_uplink() ? kDropQueueOverflowUp : kDropQueueOverflowDown);
  }
  InputItem item = in;
  // An item that gives no work waits for one that does; but never more than a worker's batch of
  // them, and every item wakes (as urgent) while the prediction is stale.
  const Stream::Wake wake = s->wake_for(item);
  item.urgent = wake == Stream::Wake::kUrgent || s->prediction_stale;
  item.wakes = wake != Stream::Wake::kRide || s->prediction_stale || s->riding + 1 >= options_.batch_per_stream;
  s->ring[(s->head + s->count) % cap] = item;
  ++s->count;
  if (item.wakes) {
    ++s->waking;
    if (item.urgent) ++s->urgent;
    s->riding = 0;
  } else {
    s->riding = std::min(s->riding + 1, s->count);
  }
  size_t& q = s->is_uplink() ? queued_up_ : queued_down_;
  ++q;
  queued_peak_ = std::max(queued_peak_, queued_up_ + queued_down_);
  if (!s->scheduled && item.wakes) {
    s->scheduled = true;
    push_ready_locked(s);
  } else if (item.wakes && item.urgent && s->ready_list == kAheadList) {
    unlink_ready_locked(s);  // it has urgent work now
    push_ready_locked(s);
  }
}

PushResult Scheduler::push(uint32_t id, const uint8_t* data, size_t bytes, SampleFormat format, uint32_t tag,
                           ItemKind kind) {
  std::unique_lock<std::mutex> lock(mutex_);
  auto it = streams_.find(id);
  if (it == streams_.end()) return PushResult::kUnknownStream;
  Stream* s = it->second;
  dsp::BufferPool& pool = pool_for(s);
  if (s->is_uplink() && bytes > dsp::kMaxDatagramSize) return PushResult::kTooLarge;
  if (kind == ItemKind::kProbe && !s->is_uplink()) return PushResult::kUnknownStream;
  const uint64_t now = now_ns();
  const size_t sample_size = format == SampleFormat::kF32 ? sizeof(float) : sizeof(int16_t);
  // PCM larger than one slab is split at sample boundaries; datagrams always fit one slab.
  const size_t chunk_max = s->is_uplink() ? bytes : (Pools::kPcmSlab / sample_size) * sample_size;
  const uint64_t drops_before = metrics_->get(kDropQueueOverflowUp) + metrics_->get(kDropQueueOverflowDown);
  size_t offset = 0;
  do {
    const size_t n = std::min(bytes - offset, chunk_max);
    InputItem item;
    item.slab = pool.acquire();
    std::memcpy(item.slab, data + offset, n);
    item.length = static_cast<uint32_t>(n);
    item.tag = tag;
    item.enqueued_ns = now;
    item.kind = kind;
    item.format = format;
    enqueue_locked(s, item);
    offset += n;
  } while (offset < bytes);
  const uint64_t drops_after = metrics_->get(kDropQueueOverflowUp) + metrics_->get(kDropQueueOverflowDown);
  unlock_and_wake(lock);
  return drops_after != drops_before ? PushResult::kQueuedDroppedOldest : PushResult::kQueued;
}

void Scheduler::unlock_and_wake(std::unique_lock<std::mutex>& lock) {
  const bool wake = should_wake_locked();
  lock.unlock();
  if (wake) work_cv_.notify_one();
}

bool Scheduler::claim_notification_locked() {
  if (!notifier_ || notified_ || results_.empty()) return false;
  notified_ = true;
  return true;
}

PushResult Scheduler::push_control(uint32_t id, ItemKind kind, uint32_t tag) {
  std::unique_lock<std::mutex> lock(mutex_);
  auto it = streams_.find(id);
  if (it == streams_.end()) return PushResult::kUnknownStream;
  InputItem item;
  item.kind = kind;
  item.tag = tag;
  item.enqueued_ns = now_ns();
  enqueue_locked(it->second, item);
  unlock_and_wake(lock);
  return PushResult::kQueued;
}

void Scheduler::drop_queued_locked(Stream* s, Counter reason, bool keep_control) {
  const size_t cap = s->ring.size();
  size_t kept = 0;
  for (size_t i = 0; i < s->count; ++i) {
    InputItem& item = s->ring[(s->head + i) % cap];
    if (keep_control && item.kind != ItemKind::kData) {
      s->ring[(s->head + kept++) % cap] = item;
      continue;
    }
    discard_item_locked(s, item);
    if (item.kind == ItemKind::kData) {
      metrics_->add(reason);
      s->prediction_stale = true;
    }
  }
  s->count = kept;
  s->riding = std::min(s->riding, s->count);
}

bool Scheduler::abort_stream(uint32_t id, uint32_t tag) {
  std::unique_lock<std::mutex> lock(mutex_);
  auto it = streams_.find(id);
  if (it == streams_.end()) return false;
  Stream* s = it->second;
  drop_queued_locked(s, kDropAborted, false);
  InputItem reset;
  reset.kind = ItemKind::kReset;
  reset.tag = tag;
  reset.enqueued_ns = now_ns();
  enqueue_locked(s, reset);
  unlock_and_wake(lock);
  return true;
}

bool Scheduler::close_stream(uint32_t id) {
  Stream* to_delete = nullptr;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = streams_.find(id);
    if (it == streams_.end()) return false;
    Stream* s = it->second;
    streams_.erase(it);
    metrics_->set(kStreamsOpen, streams_.size());
    s->closed = true;
    drop_queued_locked(s, kDropClosed, false);
    if (!s->scheduled) {
      to_delete = s;
    } else if (s->ready_list >= 0) {
      // Waiting in a ready list (not held by a worker): unlink and free it now.
      unlink_ready_locked(s);
      to_delete = s;
    }
    // Otherwise a worker holds it and frees it when its chunk is done.
  }
  delete to_delete;
  return true;
}

void Scheduler::close_all() {
  std::vector<uint32_t> ids;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    closing_ = true;  // lingering workers leave at once
    for (const auto& entry : streams_) ids.push_back(entry.first);
  }
  work_cv_.notify_all();
  for (uint32_t id : ids) close_stream(id);
}

int Scheduler::workers_to_start() {
  std::lock_guard<std::mutex> lock(mutex_);
  // Ready streams are picked up by a worker that is starting or between two streams; one busy with
  // a stream's chunk (an Opus part or frame: a millisecond or more) is not, so it does not count.
  const int pickers = starting_workers_ + active_workers_ - holding_;
  // Work ahead (parts of frames) gets a task of its own only when none is in flight: otherwise it
  // waits for a running worker to finish its chunk (it has tens of milliseconds of slack), which
  // saves a thread wake-up and a completion per part. Urgent work gets a free core at once.
  const size_t ready = tasks_outstanding_ == 0 ? ready_count_ : ready_[kUrgentList].count;
  const int want = static_cast<int>(std::min<size_t>(ready, static_cast<size_t>(options_.max_workers)));
  // A task counts until its completion ran on the event loop (task_completed), not until its
  // worker returned: otherwise a busy event loop would let every push() queue one more task.
  const int n = std::max(0, std::min(want - pickers, options_.max_workers - tasks_outstanding_));
  tasks_outstanding_ += n;
  starting_workers_ += n;
  return n;
}

void Scheduler::task_completed() {
  std::lock_guard<std::mutex> lock(mutex_);
  --tasks_outstanding_;
}

void Scheduler::take_results(std::vector<Result>& out) {
  out.clear();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    out.swap(results_);
    notified_ = false;
    // Results of streams closed after they were produced are discarded here, on the main thread.
    size_t kept = 0;
    for (Result& r : out) {
      if (streams_.count(r.stream_id)) out[kept++] = r; else release_result(r);
    }
    out.resize(kept);
    if (results_.capacity() < 4096) results_.reserve(4096);
  }
}

void Scheduler::set_ladder_level(int level) {
  level = std::clamp(level, 0, options_.ladder.rungs());
  ladder_level_.store(level, std::memory_order_relaxed);
  metrics_->set(kEncoderLevel, static_cast<uint64_t>(level));
  if (level == 0) {
    metrics_->set(kEncoderComplexity, static_cast<uint64_t>(options_.base_complexity));
    metrics_->set(kEncoderCeltOnly, 0);
    metrics_->set(kEncoderRungBitrate, 0);
  } else {
    const EncoderRung& r = options_.ladder.rung(level - 1);
    metrics_->set(kEncoderComplexity, static_cast<uint64_t>(r.complexity));
    metrics_->set(kEncoderCeltOnly, r.celt_only ? 1 : 0);
    metrics_->set(kEncoderRungBitrate, static_cast<uint64_t>(r.bitrate));
  }
}

void Scheduler::tick(uint64_t now) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    metrics_->set(kQueueDepthUp, queued_up_);
    metrics_->set(kQueueDepthDown, queued_down_);
    metrics_->set(kQueueDepthPeak, queued_peak_);
    metrics_->set(kWorkersActive, static_cast<uint64_t>(active_workers_));
  }
  const dsp::BufferPoolStats a = pools_.datagram.stats(), b = pools_.pcm.stats();
  metrics_->set(kPoolInUse, a.in_use + b.in_use);
  metrics_->set(kPoolPeak, a.peak + b.peak);
  metrics_->set(kPoolMisses, a.misses + b.misses);
  metrics_->set(kPoolAcquires, a.acquires + b.acquires);

  if (!options_.adaptive) return;
  const int level = ladder_level();
  const int next = governor_.tick(now, level, options_.ladder.rungs());
  if (next > level) {
    set_ladder_level(next);
    metrics_->add(kLadderStepsDown);
  } else if (next < level) {
    set_ladder_level(next);
    metrics_->add(kLadderStepsUp);
  }
}

void Scheduler::run_worker(uint64_t queued_at_ns) {
  MetricsBlock& m = *metrics_;
  const uint64_t start = now_ns();
  m.observe(kHistThreadpoolWait, start - queued_at_ns);
  m.add(kWorkItems);
  WorkerScratch* scratch;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    --starting_workers_;
    ++active_workers_;
    scratch = free_scratch_.back();
    free_scratch_.pop_back();
  }
  const uint64_t deadline = start + options_.worker_budget_ns;
  // A worker leaves in the same critical section in which it found nothing to do or ran out of
  // budget: until then workers_to_start() counts it as one that will pick up the next ready stream.
  auto leave_locked = [&] {
    free_scratch_.push_back(scratch);
    --active_workers_;
  };
  for (;;) {
    Stream* s;
    size_t n = 0;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      s = pop_ready_locked();
      if (!s && options_.linger_ns > 0 && !closing_) {
        const uint64_t now = now_ns();
        const uint64_t until = std::min(deadline, now + options_.linger_ns);
        if (now < until) {
          // Finished results go to JavaScript before the wait, not after it.
          if (claim_notification_locked()) {
            lock.unlock();
            notifier_();
            lock.lock();
          }
          ++lingering_;
          work_cv_.wait_for(lock, std::chrono::nanoseconds(until - now), [&] { return ready_count_ > 0 || closing_; });
          --lingering_;
          s = closing_ ? nullptr : pop_ready_locked();
        }
      }
      if (!s) {
        leave_locked();
        return;
      }
      ++holding_;
      const size_t cap = s->ring.size();
      // A flush right behind the chunk goes with it, so it can mark the turn's last datagram.
      while (s->count > 0 && (n < options_.batch_per_stream || (n == options_.batch_per_stream && s->ring[s->head].kind == ItemKind::kFlush))) {
        scratch->items[n++] = s->ring[s->head];
        forget_item_locked(s, s->ring[s->head]);
        s->head = (s->head + 1) % cap;
        --s->count;
      }
      s->riding = std::min(s->riding, s->count);
    }
    ProcessContext ctx{m, pools_, scratch->results, options_.ladder, ladder_level()};
    for (size_t i = 0; i < n; ++i) {
      InputItem& item = scratch->items[i];
      if (item.wakes) {
        const uint64_t wait = now_ns() - item.enqueued_ns;
        m.observe(kHistFrameWait, wait);
        governor_.observe(wait);
      }
      try {
        s->process(item, ctx);
      } catch (const dsp::DspError&) {
        m.add(kDropDecode);  // a stage refused this item; the stream stays usable
      } catch (const std::exception&) {
        m.add(kDropDecode);
      }
      if (item.slab) pool_for(s).release(item.slab);
      item.slab = nullptr;
    }
    Stream* to_delete = nullptr;
    bool notify = false;
    bool leave = false;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      --holding_;
      for (const Result& r : scratch->results) {
        if (r.kind == ResultKind::kDownlinkTurnEnd) {
          // The turn's last datagram may come from an earlier chunk still waiting for delivery.
          for (auto it = results_.rbegin(); it != results_.rend(); ++it) {
            if (it->stream_id != r.stream_id) continue;
            if (it->kind == ResultKind::kDownlinkDatagram) it->flags |= kResultLastOfTurn;
            break;
          }
        }
        results_.push_back(r);
      }
      scratch->results.clear();  // here: once this worker leaves, another may take its scratch
      if (s->closed) {
        s->scheduled = false;
        to_delete = s;
      } else {
        s->resync_prediction(s->ring, s->head, s->count);
        s->prediction_stale = false;
        // Items left that cannot produce output wait for the next one that can.
        if (s->waking > 0) push_ready_locked(s); else s->scheduled = false;
      }
      const bool budget_left = now_ns() < deadline;
      // More streams to go in this task: hand what is finished to JS now rather than at the end.
      if (ready_count_ > 0 && budget_left) notify = claim_notification_locked();
      if (!budget_left) {
        leave = true;
        leave_locked();
      }
    }
    if (notify) notifier_();
    delete to_delete;
    if (leave) return;
  }
}

}  // namespace xz::pipeline
