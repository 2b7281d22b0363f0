// Just enough of CUDA's execution model, on host threads, to run fastact's
// kernels (csrc/cuda/*_kernel.cu) on a machine without a GPU, for the tests
// in tests/test_cuda_emulated.py. Included by this directory's
// cuda/platform.cuh, which the emulated build finds ahead of
// csrc/cuda/platform.cuh; never in a real build.
//
// Model: a launch runs its blocks one after another; a block runs as
// blockDim.x OS threads (so __syncthreads is a real barrier and races between
// threads are real races), taken from a pool that lives as long as the
// process (starting 1024 threads per block cost most of a test's time); every 32 consecutive threads form a warp whose
// __shfl_xor_sync exchanges values through a barrier, so a shuffle not
// reached by all 32 lanes deadlocks here as it is undefined there. __shared__
// variables become function statics: shared by the block's threads, and
// fresh per block because blocks never overlap. A failing device assert
// aborts the process, as it kills the CUDA context. Not modelled: memory
// coalescing, timing, more than one block at a time, the 16-byte alignment
// of vector loads (checked with an assert instead).
#pragma once

// CUDA's own headers, as any host compiler sees them: types (dim3, uint3,
// cudaError_t, cudaStream_t), the runtime's declarations, __half and
// __nv_bfloat16 with host conversions.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime_api.h>

#include <barrier>
#include <cassert>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

// The execution-space qualifiers mean nothing on the host; __shared__ means
// one variable per block (see above).
#undef __global__
#undef __device__
#undef __host__
#undef __shared__
#undef __forceinline__
#define __global__
#define __device__
#define __host__
#define __shared__ static
#define __forceinline__ inline

namespace cuda_emulation {

constexpr int kWarpSize = 32;

struct Warp {
  std::barrier<> barrier{kWarpSize};
  alignas(16) unsigned char lanes[kWarpSize][16];
};

struct Block {
  explicit Block(int threads) : barrier(threads) {
    for (int w = 0; w < threads / kWarpSize; ++w) warps.push_back(std::make_unique<Warp>());
  }
  std::barrier<> barrier;
  std::vector<std::unique_ptr<Warp>> warps;
};

struct ThreadState {
  uint3 thread_idx, block_idx;
  dim3 block_dim, grid_dim;
  Block* block;
};

inline thread_local ThreadState self;

// A small "GPU", so that grids stay small and the kernels' grid-stride loops
// and multi-block reductions are exercised.
inline int sm_count() { return 2; }

// The block's threads: workers 0 .. threads-1 of the pool run job(t) for
// one block, and run() returns when all have. Workers are started once, as
// a block first needs them, and never joined (the process ends them).
class ThreadPool {
 public:
  static ThreadPool& get() {
    static ThreadPool* pool = new ThreadPool;  // never destroyed: its threads block forever
    return *pool;
  }

  void run(int threads, const std::function<void(int)>& job) {
    std::unique_lock<std::mutex> lock(mutex_);
    while (int(started_) < threads) std::thread(&ThreadPool::work, this, started_++).detach();
    job_ = &job;
    active_ = remaining_ = threads;
    ++generation_;
    start_.notify_all();
    done_.wait(lock, [&] { return remaining_ == 0; });
  }

 private:
  void work(int id) {
    uint64_t seen = 0;
    std::unique_lock<std::mutex> lock(mutex_);
    for (;;) {
      // a block starts only once every worker of the one before has finished,
      // so a worker it needs never misses it
      start_.wait(lock, [&] { return generation_ != seen; });
      seen = generation_;
      if (id >= active_) continue;
      const std::function<void(int)>& job = *job_;
      lock.unlock();
      job(id);
      lock.lock();
      if (--remaining_ == 0) done_.notify_one();
    }
  }

  std::mutex mutex_;
  std::condition_variable start_, done_;
  const std::function<void(int)>* job_ = nullptr;
  uint64_t generation_ = 0;
  int started_ = 0, active_ = 0, remaining_ = 0;
};

template <typename... KernelArgs, typename... Args>
cudaError_t launch(void (*kernel)(KernelArgs...), int64_t blocks, int threads, Args&&... args) {
  assert(threads % kWarpSize == 0 && threads <= 1024);
  for (int64_t b = 0; b < blocks; ++b) {
    Block block(threads);
    ThreadPool::get().run(threads, [&](int t) {
      self = ThreadState{uint3{unsigned(t), 0, 0}, uint3{unsigned(b), 0, 0}, dim3(threads), dim3(unsigned(blocks)),
                         &block};
      kernel(args...);
      // An exited thread no longer holds up its block's or warp's barriers.
      block.warps[t / kWarpSize]->barrier.arrive_and_drop();
      block.barrier.arrive_and_drop();
    });
  }
  return cudaSuccess;
}

inline void syncthreads() { self.block->barrier.arrive_and_wait(); }

template <typename T>
T shfl_xor_sync(unsigned mask, T value, int lane_mask) {
  static_assert(sizeof(T) <= 16, "shuffles move up to 16 bytes here");
  assert(mask == 0xffffffffu);
  Warp& warp = *self.block->warps[self.thread_idx.x / kWarpSize];
  const unsigned lane = self.thread_idx.x % kWarpSize;
  std::memcpy(warp.lanes[lane], &value, sizeof(T));
  warp.barrier.arrive_and_wait();
  T result;
  std::memcpy(&result, warp.lanes[lane ^ unsigned(lane_mask)], sizeof(T));
  warp.barrier.arrive_and_wait();  // nobody overwrites a lane before all have read
  return result;
}

}  // namespace cuda_emulation

#define threadIdx (::cuda_emulation::self.thread_idx)
#define blockIdx (::cuda_emulation::self.block_idx)
#define blockDim (::cuda_emulation::self.block_dim)
#define gridDim (::cuda_emulation::self.grid_dim)
#define __syncthreads() ::cuda_emulation::syncthreads()
#define __shfl_xor_sync(mask, value, lane_mask) ::cuda_emulation::shfl_xor_sync(mask, value, lane_mask)
