// Tests for xz::dsp::BufferPool and PooledBuffer (native/dsp/buffer_pool.h): the counters, slab reuse
// (the steady state allocates nothing), the max_cached bound, thread safety under contention and the
// RAII/move semantics of PooledBuffer.
#include "../dsp/buffer_pool.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <random>
#include <set>
#include <thread>
#include <utility>
#include <vector>

namespace dsp = xz::dsp;
using dsp::BufferPool;
using dsp::BufferPoolStats;
using dsp::PooledBuffer;

namespace {

void ExpectStats(const BufferPool& pool, uint64_t in_use, uint64_t peak, uint64_t misses, uint64_t acquires,
                 uint64_t cached) {
  const BufferPoolStats s = pool.stats();
  EXPECT_EQ(s.in_use, in_use) << "in_use";
  EXPECT_EQ(s.peak, peak) << "peak";
  EXPECT_EQ(s.misses, misses) << "misses";
  EXPECT_EQ(s.acquires, acquires) << "acquires";
  EXPECT_EQ(s.cached, cached) << "cached";
}

TEST(BufferPool, FreshPoolCounters) {
  BufferPool pool(1500, 4, 16);
  EXPECT_EQ(pool.slab_size(), 1500u);
  ExpectStats(pool, 0, 0, 0, 0, 4);
  BufferPool empty(64, 0, 0);
  ExpectStats(empty, 0, 0, 0, 0, 0);
}

TEST(BufferPool, AcquireReleaseCounters) {
  BufferPool pool(256, 2, 8);
  uint8_t* a = pool.acquire();
  ExpectStats(pool, 1, 1, 0, 1, 1);  // served from the preallocated slabs: no miss
  uint8_t* b = pool.acquire();
  ExpectStats(pool, 2, 2, 0, 2, 0);
  uint8_t* c = pool.acquire();       // free list empty: allocates, counts a miss
  ExpectStats(pool, 3, 3, 1, 3, 0);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  ASSERT_NE(c, nullptr);
  EXPECT_NE(a, b);
  EXPECT_NE(b, c);
  EXPECT_NE(a, c);
  pool.release(b);
  ExpectStats(pool, 2, 3, 1, 3, 1);
  pool.release(a);
  pool.release(c);
  ExpectStats(pool, 0, 3, 1, 3, 3);  // peak is a high-water mark: it stays
  uint8_t* d = pool.acquire();
  ExpectStats(pool, 1, 3, 1, 4, 2);
  EXPECT_EQ(d, c) << "the most recently released slab is reused first (warm in cache)";
  pool.release(d);
}

TEST(BufferPool, ReleaseNullIsANoOp) {
  BufferPool pool(32, 1, 1);
  pool.release(nullptr);
  ExpectStats(pool, 0, 0, 0, 0, 1);
}

TEST(BufferPool, SlabsAreAlignedWritableAndDistinct) {
  constexpr size_t kSize = 1000;  // deliberately not a multiple of the alignment
  BufferPool pool(kSize, 3, 64);
  std::vector<uint8_t*> slabs;
  for (int i = 0; i < 40; ++i) {
    uint8_t* p = pool.acquire();
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 64, 0u) << "slab " << i << " not 64-byte aligned";
    std::memset(p, i, kSize);
    slabs.push_back(p);
  }
  for (size_t i = 0; i < slabs.size(); ++i) {
    for (size_t k = 0; k < kSize; ++k) ASSERT_EQ(slabs[i][k], static_cast<uint8_t>(i)) << "slabs overlap";
  }
  EXPECT_EQ(std::set<uint8_t*>(slabs.begin(), slabs.end()).size(), slabs.size());
  for (uint8_t* p : slabs) pool.release(p);
}

TEST(BufferPool, SteadyStateReusesTheSameSlabsWithoutMisses) {
  BufferPool pool(960 * 2, 0, 32);
  // Warm-up: the working set is 6 slabs in flight.
  std::vector<uint8_t*> held;
  for (int i = 0; i < 6; ++i) held.push_back(pool.acquire());
  const std::set<uint8_t*> working_set(held.begin(), held.end());
  for (uint8_t* p : held) pool.release(p);
  held.clear();
  const uint64_t misses_after_warmup = pool.stats().misses;
  EXPECT_EQ(misses_after_warmup, 6u);

  // Steady state: thousands of frames, never more than 6 in flight, in varying patterns.
  std::mt19937 rng(1);
  for (int frame = 0; frame < 10000; ++frame) {
    const size_t want = 1 + rng() % 6;
    while (held.size() < want) {
      uint8_t* p = pool.acquire();
      ASSERT_TRUE(working_set.count(p)) << "a slab outside the warmed-up working set was handed out";
      held.push_back(p);
    }
    while (held.size() > want - 1 + rng() % 2 && !held.empty()) {
      const size_t k = rng() % held.size();
      pool.release(held[k]);
      held.erase(held.begin() + static_cast<std::ptrdiff_t>(k));
    }
  }
  for (uint8_t* p : held) pool.release(p);
  const BufferPoolStats s = pool.stats();
  EXPECT_EQ(s.misses, misses_after_warmup) << "steady state allocated";
  EXPECT_EQ(s.in_use, 0u);
  EXPECT_EQ(s.peak, 6u);
  EXPECT_EQ(s.cached, 6u);
  EXPECT_GT(s.acquires, 10000u);
}

TEST(BufferPool, PreallocatedSlabsCoverTheSteadyState) {
  BufferPool pool(128, 8, 8);
  std::vector<uint8_t*> held;
  for (int round = 0; round < 1000; ++round) {
    for (int i = 0; i < 8; ++i) held.push_back(pool.acquire());
    for (uint8_t* p : held) pool.release(p);
    held.clear();
  }
  ExpectStats(pool, 0, 8, 0, 8000, 8);
}

TEST(BufferPool, MaxCachedBoundFreesTheExtras) {
  BufferPool pool(64, 0, 4);
  std::vector<uint8_t*> burst;
  for (int i = 0; i < 10; ++i) burst.push_back(pool.acquire());
  ExpectStats(pool, 10, 10, 10, 10, 0);
  for (int i = 0; i < 10; ++i) {
    pool.release(burst[i]);
    EXPECT_EQ(pool.stats().cached, std::min<uint64_t>(i + 1, 4)) << i;
  }
  ExpectStats(pool, 0, 10, 10, 10, 4);  // 6 slabs freed, 4 kept
  // The kept ones serve the next 4 acquires; the 5th misses again.
  std::vector<uint8_t*> again;
  for (int i = 0; i < 4; ++i) again.push_back(pool.acquire());
  EXPECT_EQ(pool.stats().misses, 10u);
  again.push_back(pool.acquire());
  EXPECT_EQ(pool.stats().misses, 11u);
  for (uint8_t* p : again) pool.release(p);
  EXPECT_EQ(pool.stats().cached, 4u);
}

TEST(BufferPool, MaxCachedBelowPreallocateIsRaisedToPreallocate) {
  BufferPool pool(64, 6, 2);
  ExpectStats(pool, 0, 0, 0, 0, 6);
  std::vector<uint8_t*> held;
  for (int i = 0; i < 6; ++i) held.push_back(pool.acquire());
  for (uint8_t* p : held) pool.release(p);
  ExpectStats(pool, 0, 6, 0, 6, 6);  // all six kept: preallocated slabs are never dropped
}

TEST(BufferPool, ZeroMaxCachedKeepsNothing) {
  BufferPool pool(64, 0, 0);
  for (int i = 0; i < 100; ++i) pool.release(pool.acquire());
  ExpectStats(pool, 0, 1, 100, 100, 0);
}

// 4 threads, 1e6 acquire/release operations in total, each thread holding a varying number of slabs
// and stamping them with its id: a slab handed to two holders at once shows up as a torn stamp.
void RunConcurrent(BufferPool& pool, uint64_t* total_acquires) {
  constexpr int kThreads = 4;
  constexpr int kOpsPerThread = 250000;  // one op = one acquire or one release
  std::atomic<int> start{0};
  std::atomic<uint64_t> acquires{0};
  std::atomic<uint64_t> torn{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937 rng(static_cast<uint32_t>(t) * 7919u + 1);
      std::vector<uint8_t*> held;
      uint64_t local_acquires = 0;
      start.fetch_add(1);
      while (start.load() < kThreads) std::this_thread::yield();
      const uint8_t stamp = static_cast<uint8_t>(0x10 + t);
      for (int op = 0; op < kOpsPerThread; ++op) {
        const bool do_acquire = held.empty() || (held.size() < 8 && (rng() & 1));
        if (do_acquire) {
          uint8_t* p = pool.acquire();
          std::memset(p, stamp, pool.slab_size());
          held.push_back(p);
          ++local_acquires;
        } else {
          const size_t k = rng() % held.size();
          uint8_t* p = held[k];
          for (size_t i = 0; i < pool.slab_size(); ++i) {
            if (p[i] != stamp) {
              torn.fetch_add(1);
              break;
            }
          }
          held[k] = held.back();
          held.pop_back();
          pool.release(p);
        }
      }
      for (uint8_t* p : held) pool.release(p);
      acquires.fetch_add(local_acquires);
    });
  }
  for (std::thread& th : threads) th.join();
  EXPECT_EQ(torn.load(), 0u) << "a slab was handed to two holders at once";
  *total_acquires = acquires.load();
}

TEST(BufferPoolConcurrency, FourThreadsOneMillionOpsLargeCache) {
  BufferPool pool(64, 4, 1024);
  uint64_t acquires = 0;
  RunConcurrent(pool, &acquires);
  const BufferPoolStats s = pool.stats();
  EXPECT_EQ(s.in_use, 0u);
  EXPECT_EQ(s.acquires, acquires);
  EXPECT_GT(acquires, 400000u);
  EXPECT_LE(s.peak, 4u * 8u);
  EXPECT_GE(s.peak, 8u);
  // Nothing is ever freed with this cache size, so every slab ever created is cached now, and a miss
  // only happens when every existing slab is in use: created slabs = max(peak, preallocated).
  EXPECT_EQ(s.cached, 4u + s.misses);
  EXPECT_EQ(s.cached, std::max<uint64_t>(s.peak, 4u));
}

TEST(BufferPoolConcurrency, FourThreadsOneMillionOpsSmallCache) {
  BufferPool pool(64, 0, 3);
  uint64_t acquires = 0;
  RunConcurrent(pool, &acquires);
  const BufferPoolStats s = pool.stats();
  EXPECT_EQ(s.in_use, 0u);
  EXPECT_EQ(s.acquires, acquires);
  EXPECT_LE(s.cached, 3u);
  EXPECT_LE(s.peak, 32u);
  EXPECT_GE(s.misses, s.peak);
  EXPECT_LE(s.misses, s.acquires);
}

// ---------------------------------------------------------------------------------------------
// PooledBuffer

TEST(PooledBuffer, DefaultIsEmpty) {
  PooledBuffer b;
  EXPECT_FALSE(b);
  EXPECT_EQ(b.data(), nullptr);
  EXPECT_EQ(b.size(), 0u);
  b.reset();  // harmless
  EXPECT_FALSE(b);
}

TEST(PooledBuffer, RaiiAcquiresAndReleases) {
  BufferPool pool(100, 1, 4);
  {
    PooledBuffer b(pool);
    EXPECT_TRUE(b);
    EXPECT_NE(b.data(), nullptr);
    EXPECT_EQ(b.size(), 100u);
    ExpectStats(pool, 1, 1, 0, 1, 0);
  }
  ExpectStats(pool, 0, 1, 0, 1, 1);
  {
    PooledBuffer b(pool);
    b.reset();
    EXPECT_FALSE(b);
    EXPECT_EQ(b.data(), nullptr);
    ExpectStats(pool, 0, 1, 0, 2, 1);
    b.reset();  // idempotent
    ExpectStats(pool, 0, 1, 0, 2, 1);
  }
  ExpectStats(pool, 0, 1, 0, 2, 1);  // destructor after reset releases nothing twice
}

TEST(PooledBuffer, MoveConstructionTransfersOwnership) {
  BufferPool pool(16, 2, 4);
  PooledBuffer a(pool);
  uint8_t* slab = a.data();
  PooledBuffer b(std::move(a));
  EXPECT_EQ(b.data(), slab);
  EXPECT_TRUE(b);
  EXPECT_FALSE(a);  // NOLINT(bugprone-use-after-move): moved-from state is specified
  EXPECT_EQ(a.data(), nullptr);
  EXPECT_EQ(pool.stats().in_use, 1u);
  a.reset();  // moved-from: releases nothing
  EXPECT_EQ(pool.stats().in_use, 1u);
  b.reset();
  EXPECT_EQ(pool.stats().in_use, 0u);
}

TEST(PooledBuffer, MoveAssignmentReleasesTheOldSlab) {
  BufferPool pool(16, 0, 4);
  PooledBuffer a(pool);
  PooledBuffer b(pool);
  uint8_t* slab_a = a.data();
  EXPECT_EQ(pool.stats().in_use, 2u);
  b = std::move(a);  // b's old slab goes back to the pool
  EXPECT_EQ(b.data(), slab_a);
  EXPECT_FALSE(a);  // NOLINT(bugprone-use-after-move)
  EXPECT_EQ(pool.stats().in_use, 1u);
  EXPECT_EQ(pool.stats().cached, 1u);

  PooledBuffer empty;
  b = std::move(empty);  // assigning an empty buffer releases and leaves b empty
  EXPECT_FALSE(b);
  EXPECT_EQ(pool.stats().in_use, 0u);

  PooledBuffer c(pool);
  PooledBuffer& alias = c;
  uint8_t* slab_c = c.data();
  c = std::move(alias);  // self-move: no change, no release
  EXPECT_EQ(c.data(), slab_c);
  EXPECT_EQ(pool.stats().in_use, 1u);
}

TEST(PooledBuffer, MoveAcrossPools) {
  BufferPool p1(16, 0, 4), p2(32, 0, 4);
  PooledBuffer a(p1);
  PooledBuffer b(p2);
  b = std::move(a);  // b's slab returns to p2; b now holds a p1 slab and releases it to p1
  EXPECT_EQ(p2.stats().in_use, 0u);
  EXPECT_EQ(p2.stats().cached, 1u);
  EXPECT_EQ(p1.stats().in_use, 1u);
  EXPECT_EQ(b.size(), 16u);
  b.reset();
  EXPECT_EQ(p1.stats().in_use, 0u);
  EXPECT_EQ(p1.stats().cached, 1u);
  EXPECT_EQ(p2.stats().cached, 1u);
}

TEST(PooledBuffer, WorksInContainers) {
  BufferPool pool(48, 0, 64);
  {
    std::vector<PooledBuffer> v;
    for (int i = 0; i < 50; ++i) v.emplace_back(pool);  // reallocation moves them around
    EXPECT_EQ(pool.stats().in_use, 50u);
    v.erase(v.begin(), v.begin() + 10);
    EXPECT_EQ(pool.stats().in_use, 40u);
  }
  ExpectStats(pool, 0, 50, 50, 50, 50);
}

TEST(PooledBuffer, ReleaseOwnershipHandsTheSlabToTheCaller) {
  BufferPool pool(16, 1, 4);
  PooledBuffer b(pool);
  uint8_t* slab = b.data();
  uint8_t* taken = b.release_ownership();
  EXPECT_EQ(taken, slab);
  EXPECT_FALSE(b);
  EXPECT_EQ(b.data(), nullptr);
  b.reset();
  EXPECT_EQ(pool.stats().in_use, 1u) << "the caller owns it now: nothing was released";
  pool.release(taken);
  ExpectStats(pool, 0, 1, 0, 1, 1);
  PooledBuffer empty;
  EXPECT_EQ(empty.release_ownership(), nullptr);
}

}  // namespace
