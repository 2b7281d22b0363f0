// CUDA kernels for softmax and log_softmax, forward and backward, over a
// contiguous tensor seen as [outer, classes, inner] around the softmax dim.
//   softmax:     y = exp(x - m) / s,   m = max x,  s = sum exp(x - m)
//   log_softmax: y = (x - m) - log s
//   backward:    dx = y (g - sum g y)  /  dx = g - exp(y) sum g
// Forward reads a row twice: once for m and s together (online softmax),
// once to write y. A warp owns a row of up to 1024 classes and a block a
// longer one (16-byte packs when aligned); for a non-last dim (inner > 1)
// each thread owns a row, and neighbouring threads read neighbouring columns,
// so loads stay coalesced without a transpose. Arithmetic is in acc_t.
#include "cuda/device.cuh"

namespace fastact::cuda {
namespace {

template <typename T, int V>
__device__ __forceinline__ RowRef<T, V> row_of(const T* data, const RowShape& s, int64_t r) {
  const int64_t offset = (r / s.inner) * s.classes * s.inner + r % s.inner;
  return {const_cast<T*>(data) + offset, s.inner};
}

template <typename T, int V, typename Group, bool kLog>
__global__ void softmax_kernel(const T* __restrict__ x_data, T* __restrict__ y_data, RowShape s) {
  using A = acc_t<T>;
  __shared__ ReduceScratch scratch;
  const Group group = make_group<Group>(scratch);
  const int64_t rows = s.outer * s.inner, packs = s.classes / V;
  for (int64_t r = group.first_row(); r < rows; r += group.row_step()) {
    const RowRef<T, V> x = row_of<T, V>(x_data, s, r), y = row_of<T, V>(y_data, s, r);
    MaxSum<A> ms{-math::infinity<A>(), A(0)};
    for_my_packs(packs, group.rank(), group.size(), false, [&](int64_t p) {
      A v[V];
      x.load(p, v);
      ms = online_update(ms, v);
    });
    ms = group.reduce(ms, CombineMaxSum{});
    const A log_s = math::log(ms.s), inv_s = A(1) / ms.s;
    for_my_packs(packs, group.rank(), group.size(), true, [&](int64_t p) {
      A v[V];
      x.load(p, v);
      for (int k = 0; k < V; ++k) v[k] = kLog ? (v[k] - ms.m) - log_s : math::exp(v[k] - ms.m) * inv_s;
      y.store(p, v);
    });
  }
}

template <typename T, int V, typename Group, bool kLog>
__global__ void softmax_backward_kernel(const T* __restrict__ g_data, const T* __restrict__ y_data,
                                        T* __restrict__ dx_data, RowShape s) {
  using A = acc_t<T>;
  __shared__ ReduceScratch scratch;
  const Group group = make_group<Group>(scratch);
  const int64_t rows = s.outer * s.inner, packs = s.classes / V;
  for (int64_t r = group.first_row(); r < rows; r += group.row_step()) {
    const RowRef<T, V> g = row_of<T, V>(g_data, s, r), y = row_of<T, V>(y_data, s, r),
                       dx = row_of<T, V>(dx_data, s, r);
    A total = 0;  // sum g (log_softmax) or sum g y (softmax)
    for_my_packs(packs, group.rank(), group.size(), false, [&](int64_t p) {
      A gv[V], yv[V];
      g.load(p, gv);
      if constexpr (!kLog) y.load(p, yv);
      for (int k = 0; k < V; ++k) total += kLog ? gv[k] : gv[k] * yv[k];
    });
    total = group.reduce(total, Sum{});
    for_my_packs(packs, group.rank(), group.size(), true, [&](int64_t p) {
      A gv[V], yv[V];
      g.load(p, gv);
      y.load(p, yv);
      for (int k = 0; k < V; ++k) gv[k] = kLog ? gv[k] - math::exp(yv[k]) * total : yv[k] * (gv[k] - total);
      dx.store(p, gv);
    });
  }
}

// Picks the row mode and pack width, then launches kernel<T, V, Group>.
template <typename T, template <typename, int, typename> class Kernel, typename... Args>
cudaError_t launch_rows(const RowShape& s, bool aligned, cudaStream_t stream, Args... args) {
  const int64_t rows = s.outer * s.inner;
  if (rows == 0 || s.classes == 0) return cudaSuccess;
  const RowPlan plan = plan_rows(rows, s.classes, s.inner, sizeof(T));
  constexpr int V = kPack<T>;
  const bool packed = s.inner == 1 && aligned && s.classes % V == 0;
  switch (plan.mode) {
    case RowMode::Thread:
      return launch(Kernel<T, 1, ThreadGroup>::fn, plan.blocks, plan.threads, stream, args..., s);
    case RowMode::Warp:
      return packed ? launch(Kernel<T, V, WarpGroup>::fn, plan.blocks, plan.threads, stream, args..., s)
                    : launch(Kernel<T, 1, WarpGroup>::fn, plan.blocks, plan.threads, stream, args..., s);
    case RowMode::Block:
      return packed ? launch(Kernel<T, V, BlockGroup>::fn, plan.blocks, plan.threads, stream, args..., s)
                    : launch(Kernel<T, 1, BlockGroup>::fn, plan.blocks, plan.threads, stream, args..., s);
  }
  return cudaErrorInvalidValue;
}

template <bool kLog>
struct Forward {
  template <typename T, int V, typename Group>
  struct Kernel {
    static constexpr auto fn = softmax_kernel<T, V, Group, kLog>;
  };
};
template <bool kLog>
struct Backward {
  template <typename T, int V, typename Group>
  struct Kernel {
    static constexpr auto fn = softmax_backward_kernel<T, V, Group, kLog>;
  };
};

template <bool kLog>
cudaError_t softmax_forward(ScalarType type, const void* x, void* y, RowShape s, cudaStream_t stream) {
  return dispatch_floating(type, [&](auto tag) {
    using T = decltype(tag);
    return launch_rows<T, Forward<kLog>::template Kernel>(s, packs_aligned(x, y), stream, static_cast<const T*>(x),
                                                          static_cast<T*>(y));
  });
}

template <bool kLog>
cudaError_t softmax_backward(ScalarType type, const void* g, const void* y, void* dx, RowShape s,
                             cudaStream_t stream) {
  return dispatch_floating(type, [&](auto tag) {
    using T = decltype(tag);
    return launch_rows<T, Backward<kLog>::template Kernel>(s, packs_aligned(g, y, dx), stream,
                                                           static_cast<const T*>(g), static_cast<const T*>(y),
                                                           static_cast<T*>(dx));
  });
}

}  // namespace

cudaError_t launch_softmax(bool log, ScalarType type, const void* x, void* y, RowShape shape,
                           cudaStream_t stream) {
  return log ? softmax_forward<true>(type, x, y, shape, stream) : softmax_forward<false>(type, x, y, shape, stream);
}

cudaError_t launch_softmax_backward(bool log, ScalarType type, const void* grad, const void* y, void* grad_input,
                                    RowShape shape, cudaStream_t stream) {
  return log ? softmax_backward<true>(type, grad, y, grad_input, shape, stream)
             : softmax_backward<false>(type, grad, y, grad_input, shape, stream);
}

}  // namespace fastact::cuda
