#include "buffer_pool.h"

#include <new>

namespace xz::dsp {

namespace {
// 64-byte alignment: SIMD loads and no false sharing between slabs used by different threads.
constexpr std::align_val_t kAlign{64};
uint8_t* allocate_slab(size_t size) { return static_cast<uint8_t*>(::operator new(size, kAlign)); }
void free_slab(uint8_t* p) { ::operator delete(p, kAlign); }
}  // namespace

BufferPool::BufferPool(size_t slab_size, size_t preallocate, size_t max_cached)
    : slab_size_(slab_size), max_cached_(max_cached < preallocate ? preallocate : max_cached) {
  free_.reserve(max_cached_);
  for (size_t i = 0; i < preallocate; ++i) free_.push_back(allocate_slab(slab_size_));
}

BufferPool::~BufferPool() {
  for (uint8_t* p : free_) free_slab(p);
}

uint8_t* BufferPool::acquire() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    ++acquires_;
    if (++in_use_ > peak_) peak_ = in_use_;
    if (!free_.empty()) {
      uint8_t* p = free_.back();
      free_.pop_back();
      return p;
    }
    ++misses_;
  }
  try {
    return allocate_slab(slab_size_);
  } catch (...) {
    std::lock_guard<std::mutex> lock(mutex_);
    --in_use_;
    throw;
  }
}

void BufferPool::release(uint8_t* slab) {
  if (!slab) return;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    --in_use_;
    if (free_.size() < max_cached_) {
      free_.push_back(slab);  // capacity reserved up front: no allocation here
      return;
    }
  }
  free_slab(slab);
}

BufferPoolStats BufferPool::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  BufferPoolStats s;
  s.in_use = in_use_;
  s.peak = peak_;
  s.misses = misses_;
  s.acquires = acquires_;
  s.cached = free_.size();
  return s;
}

}  // namespace xz::dsp
