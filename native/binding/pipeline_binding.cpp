// Node-API glue for the threadpool pipeline: libuv threadpool tasks (napi_async_work) that run
// Scheduler::run_worker, and one completion per task that hands every finished result to a single
// JS dispatcher call (a reused metadata Uint32Array, one ArrayBuffer with all payloads, the count).
#include "pipeline_binding.h"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <memory>
#include <vector>

#include "args.h"
#include "pipeline/downlink_stream.h"
#include "pipeline/scheduler.h"
#include "pipeline/uplink_stream.h"

namespace xz::binding {
namespace {

using pipeline::Result;
using pipeline::Scheduler;

constexpr uint32_t kMetaFields = 8;  // stream_id, kind, flags, offset, length, tag, sequence, timestamp

struct Core;

// One reusable threadpool task. It keeps the Core alive while queued or running, so a pipeline
// collected or closed with work in flight is freed only after that work settled.
struct Task {
  std::shared_ptr<Core> core;
  napi_async_work work = nullptr;
  uint64_t queued_at = 0;
};

struct Core : std::enable_shared_from_this<Core> {
  napi_env env = nullptr;
  std::shared_ptr<pipeline::MetricsBlock> metrics;
  std::unique_ptr<Scheduler> scheduler;
  napi_ref dispatcher = nullptr;
  // The metadata array handed to the dispatcher, reused by every delivery (the dispatcher reads it
  // synchronously and never keeps it), grown when a batch needs more room.
  napi_ref meta_ref = nullptr;
  uint32_t* meta_data = nullptr;
  size_t meta_capacity = 0;  // results it holds
  // Wakes the event loop to deliver results a worker finished while it goes on with other streams.
  // Null once Node finalized it (environment teardown), so ~Core does not release it twice.
  std::atomic<napi_threadsafe_function> early_delivery{nullptr};
  std::vector<Task*> idle_tasks;
  std::vector<Result> delivering;
  int in_flight = 0;
  bool closed = false;

  ~Core() {
    for (Task* t : idle_tasks) {
      napi_delete_async_work(env, t->work);
      delete t;
    }
    if (dispatcher) napi_delete_reference(env, dispatcher);
    if (meta_ref) napi_delete_reference(env, meta_ref);
    if (napi_threadsafe_function f = early_delivery.exchange(nullptr)) napi_release_threadsafe_function(f, napi_tsfn_abort);
  }

  void start_workers();
  void deliver();
  Napi::Uint32Array metadata(size_t results);
};

void ExecuteTask(napi_env, void* data) {
  auto* task = static_cast<Task*>(data);
  task->core->scheduler->run_worker(task->queued_at);
}

void CompleteTask(napi_env env, napi_status status, void* data) {
  auto* task = static_cast<Task*>(data);
  std::shared_ptr<Core> core = std::move(task->core);
  core->in_flight--;
  core->scheduler->task_completed();
  core->idle_tasks.push_back(task);
  if (status == napi_cancelled) return;  // environment shutting down
  Napi::HandleScope scope(env);
  core->deliver();
  core->start_workers();
}

// The early-delivery call on the main thread. Its context is a weak reference: a call may still be
// queued when the Core is gone (it then does nothing).
void DeliverEarly(napi_env env, napi_value, void* context, void*) {
  if (env == nullptr) return;  // environment shutting down
  std::shared_ptr<Core> core = static_cast<std::weak_ptr<Core>*>(context)->lock();
  if (!core || core->closed) return;
  Napi::HandleScope scope(env);
  core->deliver();
}

// Runs when the function is destroyed: after ~Core released it, or at environment teardown, where it
// runs before the pipeline's own finalizer (which must then not release it again).
void FinalizeEarlyDelivery(napi_env, void* /*finalize_data*/, void* context) {
  auto* weak = static_cast<std::weak_ptr<Core>*>(context);
  if (std::shared_ptr<Core> core = weak->lock()) core->early_delivery.store(nullptr);
  delete weak;
}

void Core::start_workers() {
  if (closed) return;
  int n = scheduler->workers_to_start();
  for (; n > 0; --n) {
    Task* task;
    if (!idle_tasks.empty()) {
      task = idle_tasks.back();
      idle_tasks.pop_back();
    } else {
      task = new Task();
      napi_value name;
      napi_create_string_utf8(env, "xiaozhi-gateway:pipeline", NAPI_AUTO_LENGTH, &name);
      if (napi_create_async_work(env, nullptr, name, ExecuteTask, CompleteTask, task, &task->work) != napi_ok) {
        delete task;
        throw Napi::Error::New(env, "napi_create_async_work failed");
      }
    }
    task->core = shared_from_this();
    task->queued_at = pipeline::now_ns();
    in_flight++;
    napi_queue_async_work(env, task->work);
  }
}

void Core::deliver() {
  scheduler->take_results(delivering);
  const uint64_t now = pipeline::now_ns();
  if (delivering.empty()) {
    scheduler->tick(now);
    return;
  }
  Napi::Env e(env);
  size_t total = 0;
  for (const Result& r : delivering) total += (r.length + 7u) & ~size_t{7};  // 8-aligned views
  // A fresh ArrayBuffer for the payloads: the frames handed out are views into it, kept by their
  // receivers for as long as they like.
  Napi::ArrayBuffer data = Napi::ArrayBuffer::New(e, total == 0 ? 8 : total);
  Napi::Uint32Array meta = metadata(delivering.size());
  auto* bytes = static_cast<uint8_t*>(data.Data());
  uint32_t* m = meta_data;
  size_t offset = 0;
  for (Result& r : delivering) {
    if (r.length) std::memcpy(bytes + offset, r.slab, r.length);
    if (r.slab) r.pool->release(r.slab);
    r.slab = nullptr;
    m[0] = r.stream_id;
    m[1] = static_cast<uint32_t>(r.kind);
    m[2] = r.flags;
    m[3] = static_cast<uint32_t>(offset);
    m[4] = r.length;
    m[5] = r.tag;
    m[6] = r.sequence;
    m[7] = r.timestamp;
    m += kMetaFields;
    offset += (r.length + 7u) & ~size_t{7};
    metrics->observe(r.kind == pipeline::ResultKind::kUplinkPcm ? pipeline::kHistUpLatency : pipeline::kHistDownLatency,
                     now - r.enqueued_ns);
  }
  const size_t count = delivering.size();
  metrics->add(pipeline::kBatchesDelivered);
  metrics->add(pipeline::kResultsDelivered, count);
  delivering.clear();
  scheduler->tick(now);  // after the slabs went back, so the pool gauges are current
  napi_value fn;
  if (dispatcher && napi_get_reference_value(env, dispatcher, &fn) == napi_ok && fn) {
    // An exception from the dispatcher propagates as an uncaught exception, like any callback's.
    Napi::Function(env, fn).Call({meta, data, Napi::Number::New(env, static_cast<double>(count))});
  }
}

Napi::Uint32Array Core::metadata(size_t results) {
  Napi::Env e(env);
  if (meta_ref) {
    napi_value v;
    if (results <= meta_capacity && napi_get_reference_value(env, meta_ref, &v) == napi_ok && v) return Napi::Uint32Array(env, v);
    napi_delete_reference(env, meta_ref);
    meta_ref = nullptr;
  }
  meta_capacity = std::max<size_t>(256, results * 2);
  Napi::Uint32Array meta = Napi::Uint32Array::New(e, meta_capacity * kMetaFields);
  meta_data = meta.Data();
  napi_create_reference(env, meta, 1, &meta_ref);
  return meta;
}

class PipelineWrap : public Napi::ObjectWrap<PipelineWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "NativePipeline",
                       {InstanceMethod<&PipelineWrap::CreateUplink>("createUplink"),
                        InstanceMethod<&PipelineWrap::CreateDownlink>("createDownlink"),
                        InstanceMethod<&PipelineWrap::Push>("push"),
                        InstanceMethod<&PipelineWrap::Flush>("flush"),
                        InstanceMethod<&PipelineWrap::Abort>("abort"),
                        InstanceMethod<&PipelineWrap::CloseStream>("closeStream"),
                        InstanceMethod<&PipelineWrap::Metrics>("metrics"),
                        InstanceMethod<&PipelineWrap::MetricsLayout>("metricsLayout"),
                        InstanceMethod<&PipelineWrap::SetLadderLevel>("setLadderLevel"),
                        InstanceMethod<&PipelineWrap::Close>("close"),
                        InstanceAccessor<&PipelineWrap::InFlight>("tasksInFlight")});
  }

  // new NativePipeline(options, dispatcher(meta: Uint32Array, data: ArrayBuffer, count: number))
  explicit PipelineWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<PipelineWrap>(info) {
    Napi::Env env = info.Env();
    Napi::Object o = object_arg(info, 0, "options");
    if (info.Length() < 2 || !info[1].IsFunction()) {
      throw_type_error(env, "ERR_INVALID_ARG_TYPE", "The \"dispatcher\" argument must be a function");
    }
    pipeline::SchedulerOptions so;
    so.max_workers = int_option(env, o, "maxWorkers", so.max_workers, 1, 64);
    so.queue_capacity = static_cast<size_t>(int_option(env, o, "queueCapacity", static_cast<int>(so.queue_capacity), 1, 4096));
    so.downlink_queue_capacity = static_cast<size_t>(
        int_option(env, o, "downlinkQueueCapacity", static_cast<int>(so.downlink_queue_capacity), 1, 16384));
    so.batch_per_stream = static_cast<size_t>(int_option(env, o, "batchPerStream", static_cast<int>(so.batch_per_stream), 1, 256));
    so.worker_budget_ns = static_cast<uint64_t>(int_option(env, o, "workerBudgetUs", 4000, 100, 1000000)) * 1000;
    so.wait_budget_ns = static_cast<uint64_t>(int_option(env, o, "waitBudgetUs", 15000, 100, 10000000)) * 1000;
    so.linger_ns = static_cast<uint64_t>(int_option(env, o, "lingerUs", 1000, 0, 1000000)) * 1000;
    so.adaptive = bool_option(env, o, "adaptive", true);
    so.base_complexity = int_option(env, o, "baseComplexity", so.base_complexity, 0, 10);
    Napi::Value ladder = o.Get("ladder");
    if (!ladder.IsUndefined()) {
      if (!ladder.IsArray()) throw_type_error(env, "ERR_INVALID_ARG_TYPE", "options.ladder must be an array");
      Napi::Array a = ladder.As<Napi::Array>();
      std::vector<pipeline::EncoderRung> rungs;
      for (uint32_t i = 0; i < a.Length(); ++i) {
        Napi::Value rv = a.Get(i);
        if (!rv.IsObject()) throw_type_error(env, "ERR_INVALID_ARG_TYPE", "options.ladder entries must be objects");
        Napi::Object r = rv.As<Napi::Object>();
        rungs.push_back({int_option(env, r, "complexity", 5, 0, 10), bool_option(env, r, "celtOnly", false),
                         int_option(env, r, "bitrate", 0, 0, 512000)});
      }
      guarded(env, [&] {
        try {
          so.ladder = pipeline::EncoderLadder(rungs);
        } catch (const std::invalid_argument& e) {
          throw_range_error(env, "ERR_OUT_OF_RANGE", std::string("options.ladder: ") + e.what());
        }
      });
    }
    core_ = std::make_shared<Core>();
    core_->env = env;
    core_->metrics = std::make_shared<pipeline::MetricsBlock>();
    core_->scheduler = std::make_unique<Scheduler>(so, core_->metrics);
    napi_create_reference(env, info[1], 1, &core_->dispatcher);
    napi_value name = Napi::String::New(env, "xiaozhi-gateway:pipeline-early-delivery");
    auto* weak = new std::weak_ptr<Core>(core_);
    napi_threadsafe_function tsfn = nullptr;
    if (napi_create_threadsafe_function(env, nullptr, nullptr, name, 0, 1, nullptr, FinalizeEarlyDelivery, weak,
                                        DeliverEarly, &tsfn) != napi_ok) {
      delete weak;
      throw Napi::Error::New(env, "napi_create_threadsafe_function failed");
    }
    napi_unref_threadsafe_function(env, tsfn);  // never keeps the process alive
    core_->early_delivery.store(tsfn);
    // Workers run only while a Task holds the Core, so the raw pointer outlives every call.
    Core* core = core_.get();
    core_->scheduler->set_results_notifier([core] {
      if (napi_threadsafe_function f = core->early_delivery.load()) napi_call_threadsafe_function(f, nullptr, napi_tsfn_nonblocking);
    });
  }

  ~PipelineWrap() override {
    if (core_ && !core_->closed) shutdown();
  }

 private:
  Core& core(Napi::Env env) {
    if (!core_ || core_->closed) throw_type_error(env, "ERR_CLOSED", "AudioPipeline is closed");
    return *core_;
  }

  void shutdown() {
    core_->closed = true;
    // Streams are closed now (queued input dropped); tasks in flight finish on their own and their
    // results are discarded because the streams are gone.
    core_->scheduler->close_all();
  }

  // createUplink(key, nonce, options): stream id
  Napi::Value CreateUplink(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Core& c = core(env);
    pipeline::UplinkConfig cfg;
    copy_key_nonce(info, cfg.key, cfg.nonce);
    Napi::Object o = object_arg(info, 2, "options");
    cfg.decode_rate = int_option(env, o, "decodeRate", cfg.decode_rate, 8000, 48000);
    cfg.output_rate = int_option(env, o, "outputRate", cfg.output_rate, 8000, 48000);
    cfg.frame_ms = int_option(env, o, "frameMs", cfg.frame_ms, 0, 120);
    cfg.max_concealed_frames = int_option(env, o, "maxConcealedFrames", cfg.max_concealed_frames, 0, 50);
    cfg.max_sequence_jump = static_cast<uint32_t>(int_option(env, o, "maxSequenceJump", 1024, 1, 1 << 30));
    const uint32_t id = guarded(env, [&] {
      try {
        return c.scheduler->add_stream(std::make_unique<pipeline::UplinkStream>(cfg));
      } catch (const std::invalid_argument& e) {
        throw_range_error(env, "ERR_PIPELINE_CONFIG", e.what());
      }
    });
    return Napi::Number::New(env, id);
  }

  // createDownlink(key, nonce, options): stream id
  Napi::Value CreateDownlink(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Core& c = core(env);
    pipeline::DownlinkConfig cfg;
    copy_key_nonce(info, cfg.key, cfg.nonce);
    Napi::Object o = object_arg(info, 2, "options");
    cfg.input_rate = int_option(env, o, "inputRate", cfg.input_rate, 8000, 192000);
    cfg.frame_ms = int_option(env, o, "frameMs", cfg.frame_ms, 10, 60);
    cfg.adaptive = bool_option(env, o, "adaptive", cfg.adaptive);
    cfg.silence_threshold = int_option(env, o, "silenceThreshold", 0, 0, 32767);
    dsp::OpusEncoderConfig& e = cfg.encoder;
    e.sample_rate = int_option(env, o, "deviceRate", 24000, 8000, 48000);
    e.channels = 1;
    e.application = static_cast<dsp::OpusApplication>(int_option(env, o, "application", 0, 0, 2));
    e.bitrate = int_option(env, o, "bitrate", -1, -1, 512000);
    e.complexity = int_option(env, o, "complexity", 6, 0, 10);
    e.vbr = bool_option(env, o, "vbr", true);
    e.inband_fec = bool_option(env, o, "inbandFec", false);
    e.packet_loss_percent = int_option(env, o, "packetLossPercent", 0, 0, 100);
    e.dtx = false;  // the device treats every datagram as audio to play; DTX would underrun it
    e.signal = static_cast<dsp::OpusSignal>(int_option(env, o, "signal", 1, 0, 2));
    const bool celt_only = bool_option(env, o, "celtOnly", false);
    const uint32_t id = guarded(env, [&] {
      try {
        auto stream = std::make_unique<pipeline::DownlinkStream>(cfg);
        if (celt_only) stream->force_celt_only();
        return c.scheduler->add_stream(std::move(stream));
      } catch (const std::invalid_argument& ex) {
        throw_range_error(env, "ERR_PIPELINE_CONFIG", ex.what());
      }
    });
    return Napi::Number::New(env, id);
  }

  // push(id, data: Uint8Array | Int16Array | Float32Array, tag, probe?): 0 queued, 1 queued but the
  // oldest queued item was dropped, 2 unknown/closed stream (or a probe on a downlink), 3 datagram
  // too large. probe: validate an uplink datagram from an unproven address without using it.
  Napi::Value Push(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Core& c = core(env);
    const auto id = static_cast<uint32_t>(integer_arg(info, 0, "id", 0, 0xFFFFFFFFLL));
    if (info.Length() < 2 || !info[1].IsTypedArray()) {
      throw_type_error(env, "ERR_INVALID_ARG_TYPE", "The \"data\" argument must be a Uint8Array, Int16Array or Float32Array");
    }
    const auto tag = static_cast<uint32_t>(integer_arg(info, 2, "tag", 0, 0xFFFFFFFFLL));
    Napi::TypedArray ta = info[1].As<Napi::TypedArray>();
    pipeline::SampleFormat fmt;
    switch (ta.TypedArrayType()) {
      case napi_uint8_array: fmt = pipeline::SampleFormat::kS16; break;  // datagram bytes
      case napi_int16_array: fmt = pipeline::SampleFormat::kS16; break;
      case napi_float32_array: fmt = pipeline::SampleFormat::kF32; break;
      default:
        throw_type_error(env, "ERR_INVALID_ARG_TYPE", "The \"data\" argument must be a Uint8Array, Int16Array or Float32Array");
    }
    const auto* bytes = static_cast<const uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
    const auto kind = info.Length() > 3 && info[3].ToBoolean() ? pipeline::ItemKind::kProbe : pipeline::ItemKind::kData;
    const pipeline::PushResult r =
        guarded(env, [&] { return c.scheduler->push(id, bytes, ta.ByteLength(), fmt, tag, kind); });
    c.start_workers();
    return Napi::Number::New(env, static_cast<int>(r));
  }

  Napi::Value Flush(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Core& c = core(env);
    const auto id = static_cast<uint32_t>(integer_arg(info, 0, "id", 0, 0xFFFFFFFFLL));
    const auto tag = static_cast<uint32_t>(integer_arg(info, 1, "tag", 0, 0xFFFFFFFFLL));
    const pipeline::PushResult r = c.scheduler->push_control(id, pipeline::ItemKind::kFlush, tag);
    c.start_workers();
    return Napi::Number::New(env, static_cast<int>(r));
  }

  Napi::Value Abort(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Core& c = core(env);
    const auto id = static_cast<uint32_t>(integer_arg(info, 0, "id", 0, 0xFFFFFFFFLL));
    const auto tag = static_cast<uint32_t>(integer_arg(info, 1, "tag", 0, 0xFFFFFFFFLL));
    const bool ok = c.scheduler->abort_stream(id, tag);
    c.start_workers();
    return Napi::Boolean::New(env, ok);
  }

  Napi::Value CloseStream(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Core& c = core(env);
    const auto id = static_cast<uint32_t>(integer_arg(info, 0, "id", 0, 0xFFFFFFFFLL));
    return Napi::Boolean::New(env, c.scheduler->close_stream(id));
  }

  // The metrics block as an ArrayBuffer over native memory (the same memory every call): JS reads
  // counters without calling into the addon.
  Napi::Value Metrics(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!core_) throw_type_error(env, "ERR_CLOSED", "AudioPipeline is closed");
    if (metrics_ref_.IsEmpty()) {
      auto* keep = new std::shared_ptr<pipeline::MetricsBlock>(core_->metrics);
      Napi::ArrayBuffer ab = Napi::ArrayBuffer::New(
          env, core_->metrics.get(), sizeof(pipeline::MetricsBlock),
          [](Napi::Env, void*, std::shared_ptr<pipeline::MetricsBlock>* hint) { delete hint; }, keep);
      metrics_ref_ = Napi::Persistent(ab);
    }
    return metrics_ref_.Value();
  }

  Napi::Value MetricsLayout(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Object o = Napi::Object::New(env);
    Napi::Array counters = Napi::Array::New(env, pipeline::kCounterCount);
    for (uint32_t i = 0; i < pipeline::kCounterCount; ++i) counters.Set(i, pipeline::counter_name(i));
    Napi::Array hists = Napi::Array::New(env, pipeline::kHistogramCount);
    for (uint32_t i = 0; i < pipeline::kHistogramCount; ++i) hists.Set(i, pipeline::histogram_name(i));
    o.Set("counters", counters);
    o.Set("histograms", hists);
    o.Set("buckets", static_cast<double>(pipeline::kHistogramBuckets));
    o.Set("histogramOffset", static_cast<double>(pipeline::kCounterCount));  // in 64-bit words
    return o;
  }

  Napi::Value SetLadderLevel(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Core& c = core(env);
    c.scheduler->set_ladder_level(static_cast<int>(integer_arg(info, 0, "level", 0, 64)));
    return env.Undefined();
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    core(info.Env());
    shutdown();
    return info.Env().Undefined();
  }

  Napi::Value InFlight(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), core_ ? core_->in_flight : 0);
  }

  std::shared_ptr<Core> core_;
  Napi::Reference<Napi::ArrayBuffer> metrics_ref_;
};

}  // namespace

void init_pipeline(Napi::Env env, Napi::Object exports) {
  exports.Set("NativePipeline", PipelineWrap::Define(env));
}

}  // namespace xz::binding
