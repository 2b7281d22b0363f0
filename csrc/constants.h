// Constants every backend's kernels share (CPU, CUDA, autograd). No torch
// header, so the CUDA kernels (*_kernel.cu) include it too. The Python side's
// copies are in fastact/_spec.py.
#pragma once
#include <cstdint>

namespace fastact {

// torch's reduction enum (torch.nn._reduction.get_enum), as the loss ops take it
enum Reduction : int64_t { kNone = 0, kMean = 1, kSum = 2 };

// SELU's alpha and scale, torch's values (torch.nn.functional.selu)
constexpr double kSeluAlpha = 1.6732632423543772848170429916717;
constexpr double kSeluScale = 1.0507009873554804934193349852946;

// The [outer, classes, inner] view of a contiguous tensor around one dim
// (0-d: one of each), which every backend's row kernels (softmax, cross
// entropy) walk: `outer` blocks of `classes` x `inner` elements, a row's
// elements `inner` apart.
struct RowShape {
  int64_t outer, classes, inner;
};

// CPU outputs at least this large are written with non-temporal stores: they
// cannot stay in the last-level cache anyway, and streaming them skips the
// read-for-ownership that a normal store of a cold line costs.
constexpr int64_t kStreamingStoreBytes = 24 << 20;

}  // namespace fastact
