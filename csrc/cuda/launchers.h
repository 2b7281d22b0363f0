// The host-side interface of fastact's CUDA kernels: what the torch glue
// (csrc/cuda/*.cpp) calls and the *_kernel.cu files define. Deliberately free
// of torch headers: raw pointers, sizes and a cudaStream_t, so that every .cu
// compiles with plain `nvcc -c -std=c++17 -Icsrc` on a machine whose torch has
// no CUDA (CI's check), and the kernels never depend on ATen's ABI.
//
// Conventions for every launcher:
//  - tensors are dense: elementwise ones walk their storage in memory order
//    (the glue hands them tensors that share one layout), row ones take
//    contiguous rows; sizes and offsets are int64 throughout, so tensors past
//    2^31 elements are fine;
//  - the work goes on `stream` (the caller's current stream) and nothing waits
//    for it: no host synchronisation, no allocation, so a launch can be
//    captured in a CUDA graph; scratch memory comes from the caller;
//  - the return value is cudaGetLastError() after the launches (a bad launch
//    configuration); errors inside kernels surface at the next sync, as torch's.
#pragma once

#include <cuda_runtime_api.h>  // cudaError_t, cudaStream_t

#include <cstddef>
#include <cstdint>

#include "constants.h"

namespace fastact::cuda {

// The element types the kernels are compiled for, spelt as torch's ScalarType.
enum class ScalarType { Byte, Char, Short, Int, Long, Half, BFloat16, Float, Double };


// ---- pointwise activations (activation_kernel.cu) -------------------------
enum class Activation { Relu, LeakyRelu, Sigmoid, Tanh, GeluErf, GeluTanh, Selu };

// out[i] = act(x[i]) over n elements; out may equal x (in place). `param` is
// leaky_relu's negative slope. Relu takes every type above, the rest floating
// types only (the glue checks).
cudaError_t launch_activation(Activation act, ScalarType type, const void* x, void* out, int64_t n, double param,
                              cudaStream_t stream);

// grad_input[i] = grad[i] * act'(at saved[i]), where `saved` is what the
// forward op keeps: the output for relu, sigmoid, tanh, selu_ and leaky_relu
// with a slope >= 0, the input for gelu, selu and leaky_relu with a negative
// slope. `param`: leaky_relu's slope; for selu, nonzero when saved is the output.
cudaError_t launch_activation_backward(Activation act, ScalarType type, const void* grad, const void* saved,
                                       void* grad_input, int64_t n, double param, cudaStream_t stream);

// ---- softmax and log_softmax (softmax_kernel.cu) --------------------------
// `shape`: the contiguous tensor as [outer, classes, inner] around the softmax dim.
cudaError_t launch_softmax(bool log, ScalarType type, const void* x, void* y, RowShape shape,
                           cudaStream_t stream);
// softmax: dx = y (g - sum g y); log_softmax: dx = g - exp(y) sum g
cudaError_t launch_softmax_backward(bool log, ScalarType type, const void* grad, const void* y, void* grad_input,
                                    RowShape shape, cudaStream_t stream);

// ---- fused softmax cross entropy (cross_entropy_kernel.cu) ----------------
struct CrossEntropyArgs {
  const void* input;            // [rows, classes], contiguous
  const int64_t* index_target;  // [rows] class indices, or nullptr
  const void* prob_target;      // [rows, classes] probabilities, or nullptr
  const void* weight;           // [classes], or nullptr for all ones
  int64_t rows, classes, ignore_index;
  double label_smoothing;
  Reduction reduction;
  void* loss;       // [rows] for kNone, a scalar otherwise
  void* grad;       // [rows, classes] d loss / d input for a loss gradient of 1, or nullptr
  void* workspace;  // cross_entropy_workspace_bytes(args) bytes of device memory, uninitialised
};

size_t cross_entropy_workspace_bytes(const CrossEntropyArgs& args);
cudaError_t launch_cross_entropy(ScalarType type, const CrossEntropyArgs& args, cudaStream_t stream);

// ---- fused binary cross entropy with logits (binary_cross_entropy_kernel.cu)
struct BinaryCrossEntropyArgs {
  const void* input;       // n elements each, contiguous, one dtype
  const void* target;
  const void* weight;      // or nullptr
  const void* pos_weight;  // or nullptr
  int64_t n;
  Reduction reduction;
  void* loss;       // n elements for kNone, a scalar otherwise
  void* grad;       // n elements, or nullptr
  void* workspace;  // binary_cross_entropy_workspace_bytes(args) bytes
};

size_t binary_cross_entropy_workspace_bytes(const BinaryCrossEntropyArgs& args);
cudaError_t launch_binary_cross_entropy(ScalarType type, const BinaryCrossEntropyArgs& args, cudaStream_t stream);

// ---- the fused losses' backward (scale_grad_kernel.cu) ----------------------
// grad[i] *= *scale over n elements, where scale is one element of grad's
// type in device memory. When it is exactly 1 (a loss's backward started by
// loss.backward()) every block returns at once: the decision is made on the
// device, so backward costs one near-empty launch and no host sync.
cudaError_t launch_scale_grad(ScalarType type, void* grad, const void* scale, int64_t n, cudaStream_t stream);

}  // namespace fastact::cuda
