// Fixed-size slabs reused across frames, so the steady state of the audio path allocates nothing.
// Thread-safe (the threadpool and the main thread both acquire and release). When the free list is
// empty, acquire() allocates a new slab and counts a miss; released slabs are kept for reuse up to
// `max_cached`, beyond that they are freed, so a burst does not pin memory forever.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <vector>

namespace xz::dsp {

struct BufferPoolStats {
  uint64_t in_use = 0;    // slabs handed out and not yet released
  uint64_t peak = 0;      // highest in_use seen
  uint64_t misses = 0;    // acquires that had to allocate
  uint64_t acquires = 0;  // total acquires
  uint64_t cached = 0;    // free slabs held for reuse
};

class BufferPool {
 public:
  BufferPool(size_t slab_size, size_t preallocate, size_t max_cached);
  ~BufferPool();
  BufferPool(const BufferPool&) = delete;
  BufferPool& operator=(const BufferPool&) = delete;

  size_t slab_size() const { return slab_size_; }
  uint8_t* acquire();            // never returns nullptr (throws std::bad_alloc if memory is out)
  void release(uint8_t* slab);   // slab must come from this pool's acquire()
  BufferPoolStats stats() const;

 private:
  const size_t slab_size_;
  const size_t max_cached_;
  mutable std::mutex mutex_;
  std::vector<uint8_t*> free_;
  uint64_t in_use_ = 0, peak_ = 0, misses_ = 0, acquires_ = 0;
};

// RAII owner of one slab.
class PooledBuffer {
 public:
  PooledBuffer() = default;
  explicit PooledBuffer(BufferPool& pool) : pool_(&pool), data_(pool.acquire()) {}
  ~PooledBuffer() { reset(); }
  PooledBuffer(PooledBuffer&& o) noexcept : pool_(o.pool_), data_(o.data_) { o.data_ = nullptr; }
  PooledBuffer& operator=(PooledBuffer&& o) noexcept {
    if (this != &o) { reset(); pool_ = o.pool_; data_ = o.data_; o.data_ = nullptr; }
    return *this;
  }
  PooledBuffer(const PooledBuffer&) = delete;
  PooledBuffer& operator=(const PooledBuffer&) = delete;
  uint8_t* data() const { return data_; }
  size_t size() const { return data_ ? pool_->slab_size() : 0; }
  explicit operator bool() const { return data_ != nullptr; }
  void reset() { if (data_) { pool_->release(data_); data_ = nullptr; } }
  // Hands the slab to the caller, who must release it to the pool later.
  [[nodiscard]] uint8_t* release_ownership() { uint8_t* p = data_; data_ = nullptr; return p; }

 private:
  BufferPool* pool_ = nullptr;
  uint8_t* data_ = nullptr;
};

}  // namespace xz::dsp
