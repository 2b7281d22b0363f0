// CUDA kernel for the fused binary cross entropy with logits; the math is
// that of csrc/cpu/binary_cross_entropy.cpp. Per element, with
// lw = 1 + (pw - 1) t (pw: pos_weight, 1 without):
//   loss     = w ((1 - t) x + lw (log1p(exp(-|x|)) + max(-x, 0)))
//   dloss/dx = w (lw sigmoid(x) - pw t)   (times 1 / n for 'mean')
// One grid-stride pass writes the loss ('none') or per-block partial sums
// (then added up in block order by finalize_loss_kernel), and the gradient
// when asked.
#include "cuda/device.cuh"

namespace fastact::cuda {
namespace {

template <typename T>
__global__ void binary_cross_entropy_kernel(const T* __restrict__ x, const T* __restrict__ t,
                                            const T* __restrict__ w, const T* __restrict__ pw, int64_t n,
                                            acc_t<T> grad_scale, T* __restrict__ loss, T* __restrict__ grad,
                                            double* __restrict__ partials) {
  using A = acc_t<T>;
  __shared__ ReduceScratch scratch;
  double total = 0;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const A xv = to_acc(x[i]), tv = to_acc(t[i]);
    const A wv = w ? to_acc(w[i]) : A(1), pwv = pw ? to_acc(pw[i]) : A(1);
    const A lw = A(1) + (pwv - A(1)) * tv;
    const A softplus_neg = math::log1p(math::exp(-(xv < A(0) ? -xv : xv))) + math::max(-xv, A(0));
    A l = (A(1) - tv) * xv + lw * softplus_neg;
    if (w) l = l * wv;
    if (loss) loss[i] = from_acc<T>(l);
    total += double(l);
    if (grad) {
      const A sigmoid = A(1) / (A(1) + math::exp(-xv));
      grad[i] = from_acc<T>((lw * sigmoid - pwv * tv) * wv * grad_scale);
    }
  }
  if (partials) {
    total = block_reduce(total, Sum{}, scratch);
    if (threadIdx.x == 0) partials[blockIdx.x] = total;
  }
}

constexpr int kThreads = 256;

int64_t max_blocks() { return int64_t(sm_count()) * (2048 / kThreads); }

}  // namespace

size_t binary_cross_entropy_workspace_bytes(const BinaryCrossEntropyArgs&) {
  return sizeof(double) * size_t(max_blocks());
}

cudaError_t launch_binary_cross_entropy(ScalarType type, const BinaryCrossEntropyArgs& a, cudaStream_t stream) {
  return dispatch_floating(type, [&](auto tag) -> cudaError_t {
    using T = decltype(tag);
    using A = acc_t<T>;
    const bool reduced = a.reduction != kNone;
    const int64_t blocks = std::max<int64_t>(1, std::min(max_blocks(), (a.n + kThreads - 1) / kThreads));
    double* partials = reduced ? static_cast<double*>(a.workspace) : nullptr;
    const A grad_scale = a.reduction == kMean && a.n > 0 ? A(1.0 / double(a.n)) : A(1);
    const cudaError_t err =
        launch(binary_cross_entropy_kernel<T>, blocks, kThreads, stream, static_cast<const T*>(a.input),
               static_cast<const T*>(a.target), static_cast<const T*>(a.weight), static_cast<const T*>(a.pos_weight),
               a.n, grad_scale, reduced ? nullptr : static_cast<T*>(a.loss), static_cast<T*>(a.grad), partials);
    if (err != cudaSuccess || !reduced) return err;
    return launch(finalize_loss_kernel<T>, 1, 256, stream, partials, blocks, static_cast<const double*>(nullptr),
                  int64_t(0), double(a.n), a.reduction == kMean, static_cast<T*>(a.loss), /*negated_sum=*/false);
  });
}

}  // namespace fastact::cuda
