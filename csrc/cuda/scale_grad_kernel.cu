// The fused losses' backward on CUDA: grad *= *scale, where the scale is one
// element in device memory and the pass is skipped on the device when it is
// exactly 1 (loss.backward() of a reduced loss): no host sync, one near-empty
// launch. Same 16-byte packs and grid-stride walk as the activations.
#include "cuda/device.cuh"

namespace fastact::cuda {
namespace {

// grad *= *scale unless *scale == 1 (see launchers.h).
template <typename T, int V>
__global__ void scale_grad_kernel(T* grad, const T* __restrict__ scale_ptr, int64_t n) {
  const acc_t<T> scale = to_acc(*scale_ptr);
  if (scale == acc_t<T>(1)) return;
  const int64_t packs = n / V;
  for (int64_t p = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; p < packs; p += int64_t(gridDim.x) * blockDim.x) {
    Pack<T, V> v = load_pack<T, V>(grad + p * V);
    for (int k = 0; k < V; ++k) v.v[k] = from_acc<T>(to_acc(v.v[k]) * scale);
    store_pack<T, V>(grad + p * V, v);
  }
  if (blockIdx.x == 0 && threadIdx.x < n - packs * V) {
    T* g = grad + packs * V + threadIdx.x;
    *g = from_acc<T>(to_acc(*g) * scale);
  }
}

}  // namespace

cudaError_t launch_scale_grad(ScalarType type, void* grad, const void* scale, int64_t n, cudaStream_t stream) {
  return dispatch_floating(type, [&](auto tag) -> cudaError_t {
    using T = decltype(tag);
    if (n == 0) return cudaSuccess;
    constexpr int kThreads = 256;
    const int64_t max_blocks = int64_t(sm_count()) * (2048 / kThreads) * 4;
    T* g = static_cast<T*>(grad);
    if (packs_aligned(g)) {
      constexpr int V = kPack<T>;
      const int64_t blocks = std::max<int64_t>(1, std::min(max_blocks, (n / V + kThreads - 1) / kThreads));
      return launch(scale_grad_kernel<T, V>, blocks, kThreads, stream, g, static_cast<const T*>(scale), n);
    }
    const int64_t blocks = std::max<int64_t>(1, std::min(max_blocks, (n + kThreads - 1) / kThreads));
    return launch(scale_grad_kernel<T, 1>, blocks, kThreads, stream, g, static_cast<const T*>(scale), n);
  });
}

}  // namespace fastact::cuda
