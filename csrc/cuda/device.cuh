// What fastact's .cu files share: element types and their fp32 accumulators,
// 16-byte packs, warp and block reductions, the three ways a group of threads
// can own a row, the launch helper and the dtype switch. Device code only
// (and the host-side launch plumbing); no torch header, see launchers.h.
#pragma once

// Out-of-range class indices trip a device-side assert, as torch's CUDA
// nll_loss does; keep it in release builds too (NDEBUG would remove it).
#undef NDEBUG
#include <cassert>

#include "cuda/launchers.h"
#include "cuda/platform.cuh"

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <utility>

namespace fastact::cuda {

// ---- element types ----------------------------------------------------------
// Arithmetic happens in acc_t: fp32 for the 16-bit floats (rounded once, on
// the store), the type itself otherwise.
template <typename T>
struct AccumulatorOf {
  using type = T;
};
template <>
struct AccumulatorOf<__half> {
  using type = float;
};
template <>
struct AccumulatorOf<__nv_bfloat16> {
  using type = float;
};
template <typename T>
using acc_t = typename AccumulatorOf<T>::type;

template <typename T>
__device__ __forceinline__ acc_t<T> to_acc(T v) {
  return static_cast<acc_t<T>>(v);
}
template <>
__device__ __forceinline__ float to_acc<__half>(__half v) {
  return __half2float(v);
}
template <>
__device__ __forceinline__ float to_acc<__nv_bfloat16>(__nv_bfloat16 v) {
  return __bfloat162float(v);
}

// Round to nearest even, as torch's conversions do.
template <typename T>
__device__ __forceinline__ T from_acc(acc_t<T> v) {
  return static_cast<T>(v);
}
template <>
__device__ __forceinline__ __half from_acc<__half>(float v) {
  return __float2half_rn(v);
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_acc<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

// fp32 and fp64 spellings of the math the kernels use, so one template
// serves both accumulator types (and never silently widens float to double).
namespace math {
__device__ __forceinline__ float exp(float x) { return ::expf(x); }
__device__ __forceinline__ double exp(double x) { return ::exp(x); }
__device__ __forceinline__ float log(float x) { return ::logf(x); }
__device__ __forceinline__ double log(double x) { return ::log(x); }
__device__ __forceinline__ float log1p(float x) { return ::log1pf(x); }
__device__ __forceinline__ double log1p(double x) { return ::log1p(x); }
__device__ __forceinline__ float expm1(float x) { return ::expm1f(x); }
__device__ __forceinline__ double expm1(double x) { return ::expm1(x); }
__device__ __forceinline__ float tanh(float x) { return ::tanhf(x); }
__device__ __forceinline__ double tanh(double x) { return ::tanh(x); }
__device__ __forceinline__ float erf(float x) { return ::erff(x); }
__device__ __forceinline__ double erf(double x) { return ::erf(x); }
// NaN-propagating, as torch's max (fmax would drop a NaN, and a row with a
// NaN must come out NaN).
template <typename A>
__device__ __forceinline__ A max(A a, A b) {
  return (a > b || a != a) ? a : b;
}
template <typename A>
__device__ __forceinline__ A infinity() {
  return static_cast<A>(INFINITY);  // a constant, unlike numeric_limits' host function
}
}  // namespace math

// ---- 16-byte packs ------------------------------------------------------------
// V consecutive elements moved by one 16-byte load or store (ld.global.v4)
// when V == kPack<T>; V == 1 is the fallback for rows or tensors whose
// addresses are not 16-byte aligned.
template <typename T>
constexpr int kPack = 16 / sizeof(T);

template <typename T, int V>
struct alignas(sizeof(T) * V) Pack {
  T v[V];
};

template <typename T, int V>
__device__ __forceinline__ Pack<T, V> load_pack(const T* p) {
  check_pack_alignment(p, sizeof(Pack<T, V>));
  return *reinterpret_cast<const Pack<T, V>*>(p);
}
template <typename T, int V>
__device__ __forceinline__ void store_pack(T* p, const Pack<T, V>& pack) {
  check_pack_alignment(p, sizeof(Pack<T, V>));
  *reinterpret_cast<Pack<T, V>*>(p) = pack;
}

// Whether every pointer allows 16-byte packs of T at every multiple of V
// elements from it (null pointers do not count).
template <typename... Ptrs>
inline bool packs_aligned(const Ptrs*... ptrs) {
  return ((ptrs == nullptr || reinterpret_cast<uintptr_t>(ptrs) % 16 == 0) && ...);
}

// ---- reductions -------------------------------------------------------------
struct Sum {
  template <typename A>
  __device__ __forceinline__ A operator()(A a, A b) const {
    return a + b;
  }
};

// Running max m and sum s of exp(x - m) over part of a row: online softmax
// reads a row once for both (Milakov and Gimelshein, 2018).
template <typename A>
struct MaxSum {
  A m, s;
};

// Merges two partial (m, s). Symmetric in its arguments bit for bit, so a
// butterfly reduction leaves the same value in every lane (a NaN m is the
// one asymmetry, and makes everything NaN anyway). A part that saw only -inf
// contributes nothing; +inf and NaN end up in s as NaN, so such rows give
// NaN, as torch's max-then-sum softmax does.
struct CombineMaxSum {
  template <typename A>
  __device__ __forceinline__ MaxSum<A> operator()(MaxSum<A> a, MaxSum<A> b) const {
    const A m = math::max(a.m, b.m);
    if (m == -math::infinity<A>()) return {m, a.s + b.s};
    return {m, a.s * math::exp(a.m - m) + b.s * math::exp(b.m - m)};
  }
};

// Folds the values x[0..n) into a running (m, s).
template <typename A, int N>
__device__ __forceinline__ MaxSum<A> online_update(MaxSum<A> acc, const A (&x)[N]) {
  A m = acc.m;
  for (int i = 0; i < N; ++i) m = math::max(m, x[i]);
  if (m == -math::infinity<A>()) return acc;
  A s = acc.s * math::exp(acc.m - m);
  for (int i = 0; i < N; ++i) s += math::exp(x[i] - m);
  return {m, s};
}

__device__ __forceinline__ float shfl_xor(float v, int lane_mask) {
  return __shfl_xor_sync(0xffffffffu, v, lane_mask);
}
__device__ __forceinline__ double shfl_xor(double v, int lane_mask) {
  return __shfl_xor_sync(0xffffffffu, v, lane_mask);
}
template <typename A>
__device__ __forceinline__ MaxSum<A> shfl_xor(MaxSum<A> v, int lane_mask) {
  return {shfl_xor(v.m, lane_mask), shfl_xor(v.s, lane_mask)};
}

// Butterfly: every lane ends with the reduction of all 32 (the same bits in
// each, since op is commutative).
template <typename V, typename Op>
__device__ __forceinline__ V warp_reduce(V v, Op op) {
  for (int mask = 16; mask > 0; mask >>= 1) v = op(v, shfl_xor(v, mask));
  return v;
}

constexpr int kWarp = 32;
constexpr int kMaxWarps = 32;  // 1024 threads

// Shared memory for one block reduction of values up to 16 bytes.
struct alignas(16) ReduceScratch {
  unsigned char bytes[kMaxWarps * 16];
};

// Every thread of the block gets the reduction, the warps' partials combined
// in warp order (deterministic). All threads of the block must call it.
template <typename V, typename Op>
__device__ __forceinline__ V block_reduce(V v, Op op, ReduceScratch& scratch) {
  static_assert(sizeof(V) <= 16, "ReduceScratch holds values of up to 16 bytes");
  V* partial = reinterpret_cast<V*>(scratch.bytes);
  v = warp_reduce(v, op);
  __syncthreads();  // the previous reduction's readers are done with `partial`
  if (threadIdx.x % kWarp == 0) partial[threadIdx.x / kWarp] = v;
  __syncthreads();
  V r = partial[0];
  for (int w = 1; w < int(blockDim.x) / kWarp; ++w) r = op(r, partial[w]);
  return r;
}

// ---- who owns a row ---------------------------------------------------------
// The row kernels are written once against these: a group of threads owns a
// row at a time, its rank-th thread takes every size-th pack, and reduce()
// combines the group's values (every member gets the result).
//  - ThreadGroup: one thread per row (softmax over a non-last dim, where the
//    neighbouring threads' rows sit next to each other in memory);
//  - WarpGroup: a warp per row, for rows of up to kWarpRowClasses;
//  - BlockGroup: the whole block per row, for longer ones.
struct ThreadGroup {
  __device__ int rank() const { return 0; }
  __device__ int size() const { return 1; }
  __device__ int64_t first_row() const { return int64_t(blockIdx.x) * blockDim.x + threadIdx.x; }
  __device__ int64_t row_step() const { return int64_t(gridDim.x) * blockDim.x; }
  template <typename V, typename Op>
  __device__ V reduce(V v, Op) const {
    return v;
  }
};

struct WarpGroup {
  __device__ int rank() const { return threadIdx.x % kWarp; }
  __device__ int size() const { return kWarp; }
  __device__ int64_t first_row() const { return int64_t(blockIdx.x) * (blockDim.x / kWarp) + threadIdx.x / kWarp; }
  __device__ int64_t row_step() const { return int64_t(gridDim.x) * (blockDim.x / kWarp); }
  template <typename V, typename Op>
  __device__ V reduce(V v, Op op) const {
    return warp_reduce(v, op);
  }
};

struct BlockGroup {
  ReduceScratch* scratch;
  __device__ int rank() const { return threadIdx.x; }
  __device__ int size() const { return blockDim.x; }
  __device__ int64_t first_row() const { return blockIdx.x; }
  __device__ int64_t row_step() const { return gridDim.x; }
  template <typename V, typename Op>
  __device__ V reduce(V v, Op op) const {
    return block_reduce(v, op, *scratch);
  }
};

// The group a kernel's threads form (a BlockGroup reduces through `scratch`).
template <typename Group>
__device__ __forceinline__ Group make_group(ReduceScratch& scratch) {
  if constexpr (std::is_same_v<Group, BlockGroup>) {
    return BlockGroup{&scratch};
  } else {
    return Group{};
  }
}

// A row of a [outer, classes, inner] tensor: `classes` elements `stride`
// apart (stride 1 whenever V > 1), read and written V at a time.
template <typename T, int V>
struct RowRef {
  T* base;
  int64_t stride;

  __device__ void load(int64_t pack, acc_t<T> (&out)[V]) const {
    if constexpr (V == 1) {
      out[0] = to_acc(base[pack * stride]);
    } else {
      const Pack<T, V> p = load_pack<T, V>(base + pack * V);
      for (int k = 0; k < V; ++k) out[k] = to_acc(p.v[k]);
    }
  }
  __device__ void store(int64_t pack, const acc_t<T> (&in)[V]) const {
    if constexpr (V == 1) {
      base[pack * stride] = from_acc<T>(in[0]);
    } else {
      Pack<T, V> p;
      for (int k = 0; k < V; ++k) p.v[k] = from_acc<T>(in[k]);
      store_pack<T, V>(base + pack * V, p);
    }
  }
};

// Calls f(pack_index) for the packs of a row of `packs` that group member
// `rank` of `size` owns: rank, rank + size, ... A second pass over a row
// walks them backwards, so it starts with the lines the first pass loaded
// last, the likeliest to be still in L1/L2.
template <typename F>
__device__ __forceinline__ void for_my_packs(int64_t packs, int rank, int size, bool backwards, F f) {
  if (rank >= packs) return;
  const int64_t mine = (packs - 1 - rank) / size + 1;
  for (int64_t k = 0; k < mine; ++k) f(rank + (backwards ? mine - 1 - k : k) * size);
}

// ---- launch plans -------------------------------------------------------------
constexpr int64_t kWarpRowClasses = 1024;

enum class RowMode { Thread, Warp, Block };

// How a row kernel covers rows of `classes` (inner: the stride between a
// row's elements): a thread, a warp or a block per row; the block size; and a
// grid of at most what the GPU holds at once (the kernels loop over rows).
struct RowPlan {
  RowMode mode;
  int threads;
  int64_t blocks;
};

inline RowPlan plan_rows(int64_t rows, int64_t classes, int64_t inner, int element_bytes) {
  const int64_t sms = sm_count();
  auto grid = [&](int64_t work_blocks, int threads) {
    const int64_t resident = sms * (2048 / threads);
    return std::max<int64_t>(1, std::min(work_blocks, resident));
  };
  if (inner > 1) {
    const int threads = 256;
    return {RowMode::Thread, threads, grid((rows + threads - 1) / threads, threads)};
  }
  if (classes <= kWarpRowClasses) {
    const int threads = 256;
    const int rows_per_block = threads / kWarp;
    return {RowMode::Warp, threads, grid((rows + rows_per_block - 1) / rows_per_block, threads)};
  }
  // enough threads that each takes a few packs of the row
  const int64_t packs = classes / (16 / element_bytes);
  int threads = 128;
  while (threads < 1024 && packs > int64_t(threads) * 4) threads *= 2;
  return {RowMode::Block, threads, grid(rows, threads)};
}

// ---- launching ----------------------------------------------------------------
template <typename... KernelArgs, typename... Args>
cudaError_t launch(void (*kernel)(KernelArgs...), int64_t blocks, int threads, cudaStream_t stream,
                   Args&&... args) {
  if (blocks <= 0) return cudaSuccess;
  return launch_kernel(kernel, blocks, threads, stream, std::forward<Args>(args)...);
}

// Calls f(T{}) with T the C++ type of `type`; unknown types are a launch error.
template <typename F>
cudaError_t dispatch_floating(ScalarType type, F&& f) {
  switch (type) {
    case ScalarType::Float: return f(float{});
    case ScalarType::Double: return f(double{});
    case ScalarType::Half: return f(__half{});
    case ScalarType::BFloat16: return f(__nv_bfloat16{});
    default: return cudaErrorInvalidValue;
  }
}

template <typename F>
cudaError_t dispatch_all(ScalarType type, F&& f) {
  switch (type) {
    case ScalarType::Byte: return f(uint8_t{});
    case ScalarType::Char: return f(int8_t{});
    case ScalarType::Short: return f(int16_t{});
    case ScalarType::Int: return f(int32_t{});
    case ScalarType::Long: return f(int64_t{});
    default: return dispatch_floating(type, std::forward<F>(f));
  }
}

// ---- reduced losses -----------------------------------------------------------
// The losses sum rows into per-block partials (double, fixed order), and
// this one-block kernel adds them up in block order, so a loss is the same
// bits on every run: out = sum(partials) / denominator, where denominator is
// the sum of `denominator_parts` (strided by 2), or `fixed_denominator` when
// there are none, or 1 for a plain sum. negated_sum: a loss torch forms as
// -(sum), whose zero is -0 there.
template <typename T>
__global__ void finalize_loss_kernel(const double* __restrict__ partials, int64_t n_partials,
                                     const double* __restrict__ denominator_parts, int64_t n_denominator_parts,
                                     double fixed_denominator, bool mean, T* __restrict__ out,
                                     bool negated_sum) {
  __shared__ ReduceScratch scratch;
  double total = 0;
  for (int64_t i = threadIdx.x; i < n_partials; i += blockDim.x) total += partials[i];
  total = block_reduce(total, Sum{}, scratch);
  if (threadIdx.x != 0) return;
  if (negated_sum && total == 0) total = -0.0;
  double denominator = 1;
  if (mean) {
    denominator = fixed_denominator;
    if (denominator_parts) {
      denominator = 0;
      for (int64_t i = 0; i < n_denominator_parts; ++i) denominator += denominator_parts[2 * i];
    }
  }
  *out = from_acc<T>(static_cast<acc_t<T>>(total / denominator));  // 0 / 0: NaN, as torch
}

}  // namespace fastact::cuda
