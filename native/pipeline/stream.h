// What the scheduler moves around: input items queued per stream, results handed back to JS, and
// the Stream base class (one device session direction). Streams are processed in order and never on
// two threads at once: the scheduler owns that guarantee, streams just process one item at a time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "dsp/buffer_pool.h"
#include "encoder_ladder.h"
#include "metrics_block.h"

namespace xz::pipeline {

enum class ItemKind : uint8_t {
  kData,   // uplink: one datagram; downlink: a chunk of PCM
  kFlush,  // downlink: end of a speech turn, pad and emit the last partial frame;
           // uplink: a marker reported once every datagram queued before it was processed
  kReset,  // downlink: barge-in, forget buffered audio (queued items were already dropped)
  kProbe,  // uplink: a datagram from an address not yet proven: validate only, change no state
};
enum class SampleFormat : uint8_t { kS16 = 0, kF32 = 1 };

struct InputItem {
  uint8_t* slab = nullptr;  // from Pools::input; released by the scheduler after processing
  uint32_t length = 0;      // bytes
  uint32_t tag = 0;         // opaque JS value handed back with every result of this item
  uint64_t enqueued_ns = 0;
  ItemKind kind = ItemKind::kData;
  SampleFormat format = SampleFormat::kS16;
  // Whether this item made its stream ready for a worker (see Stream::wake_for). Only such
  // items' queue wait feeds the latency histogram and the encoder ladder: an item that rides along
  // with a later one waits for that one by design, not because the pool is busy.
  bool wakes = true;
  // Whether a result someone waits for hangs on it (an uplink frame, a finished downlink frame, a
  // turn's end), as opposed to work done ahead (a part of a downlink frame): workers take streams
  // with such items first.
  bool urgent = true;
};

enum class ResultKind : uint8_t {
  kUplinkPcm = 0,         // Int16 PCM at the uplink output rate
  kDownlinkDatagram = 1,  // header + encrypted Opus, ready for dgram.send
  kDownlinkTurnEnd = 2,   // every datagram of the flushed turn has been produced (no payload)
  kUplinkDrained = 4,     // every uplink datagram queued before a flush marker has been processed
  kUplinkProbe = 3,       // verdict on a probed datagram (no payload); kResultProbeValid when it is
                          // genuine-looking: fresh sequence, decrypts to a well-formed Opus packet
                          // of the session's shape
};

// Result flags
constexpr uint32_t kResultConcealed = 1;  // uplink: produced by packet loss concealment
constexpr uint32_t kResultRecovered = 2;  // uplink: recovered from the next packet's in-band FEC
constexpr uint32_t kResultLastOfTurn = 4; // downlink: last datagram before a flush
constexpr uint32_t kResultProbeValid = 8; // uplink probe: the datagram passed every check

struct Result {
  uint32_t stream_id = 0;
  ResultKind kind = ResultKind::kUplinkPcm;
  uint32_t flags = 0;
  uint8_t* slab = nullptr;        // owned until delivered; from `pool`
  dsp::BufferPool* pool = nullptr;
  uint32_t length = 0;            // bytes of payload in slab
  uint32_t tag = 0;
  uint32_t sequence = 0;          // uplink: the packet's sequence; downlink: the datagram's
  uint32_t timestamp = 0;         // downlink: header timestamp (ms media clock)
  uint64_t enqueued_ns = 0;       // of the input item, for latency
};

// Fixed-size slab pools shared by all streams of a pipeline.
struct Pools {
  static constexpr size_t kDatagramSlab = 1536;  // one UDP datagram (<= 1500 bytes)
  static constexpr size_t kPcmSlab = 16384;      // PCM chunk in or frame out (<= 8192 Int16 samples)
  // Free slabs kept for reuse are capped (6 MB + 16 MB): a burst beyond that allocates and frees,
  // instead of pinning its peak memory for the life of the process.
  dsp::BufferPool datagram{kDatagramSlab, 256, 4096};
  dsp::BufferPool pcm{kPcmSlab, 64, 1024};
};

// Everything a stream needs while processing one item on a threadpool thread.
struct ProcessContext {
  MetricsBlock& metrics;
  Pools& pools;
  std::vector<Result>& results;  // append in order
  const EncoderLadder& ladder;
  int ladder_level;              // snapshot for this item
};

class Stream {
 public:
  virtual ~Stream() = default;
  virtual bool is_uplink() const = 0;
  virtual void process(const InputItem& item, ProcessContext& ctx) = 0;

  // Called on the main thread, under the scheduler's mutex, as `item` is queued (in queue order):
  // what processing it will produce.
  //  * kRide: nothing; the stream is not made ready for it: it waits in the queue and is processed
  //    together with the next item that wakes. Downlink PCM arrives in 10 ms chunks but is coded in
  //    20 ms parts of 60 ms frames, so this saves one threadpool round trip in two.
  //  * kAhead: work done ahead of a deadline (a part of a downlink frame): wakes a worker, which
  //    takes streams with urgent work first.
  //  * kUrgent: an output someone waits for (an uplink frame, a finished downlink frame).
  enum class Wake { kRide, kAhead, kUrgent };
  virtual Wake wake_for(const InputItem& /*item*/) { return Wake::kUrgent; }
  // Called under the scheduler's mutex by the worker that holds the stream, after its chunk: make
  // the queue-time prediction above exact again from the stream's real state and what is queued
  // (after queued items were dropped, the prediction no longer matches what the stream will see).
  virtual void resync_prediction(const std::vector<InputItem>& /*ring*/, size_t /*head*/, size_t /*count*/) {}

  uint32_t id = 0;

  // A result of this stream answering `item` (its tag and enqueue time travel with it).
  Result result_for(const InputItem& item, ResultKind kind) const {
    Result r;
    r.stream_id = id;
    r.kind = kind;
    r.tag = item.tag;
    r.enqueued_ns = item.enqueued_ns;
    return r;
  }

  // --- owned by the Scheduler, guarded by its mutex ---
  std::vector<InputItem> ring;  // bounded queue, capacity fixed at creation
  size_t head = 0, count = 0;
  bool scheduled = false;  // in a ready list or being processed by a worker
  bool closed = false;     // JS closed it: no new input; freed once no worker holds it
  size_t waking = 0;       // queued items with `wakes` set
  size_t urgent = 0;       // queued items with `wakes` and `urgent` set
  size_t riding = 0;       // items queued after the last one with `wakes` set (the queue's tail)
  bool prediction_stale = false;  // items were dropped: every item wakes until the next resync
  int ready_list = -1;     // which ready list it is in (Scheduler::kUrgentList, kAheadList), -1 none
  Stream* next_ready = nullptr;
  Stream* prev_ready = nullptr;
};

}  // namespace xz::pipeline
