// Drivers for elementwise kernels: run a vector lambda over the flat storage
// of tensors that share one dense layout, and fall back to contiguous copies
// for anything else (slices, broadcasts, mismatched strides).
#pragma once
#include "cpu/vec_io.h"

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>

#include <array>

namespace fastact::cpu::CPU_CAPABILITY {

inline bool shares_dense_layout(const at::Tensor& t, const at::Tensor& out) {
  return t.is_non_overlapping_and_dense() && t.strides() == out.strides();
}

// out = op(in...) elementwise, where op maps VecIO<T>::Vec arguments to a Vec.
// `out` is already allocated with the sizes of the inputs.
template <typename T, size_t N, typename Op>
void map_elementwise(const std::array<at::Tensor, N>& inputs, const at::Tensor& out, const Op& op) {
  const int64_t n = out.numel();
  if (n == 0) return;
  bool flat = true;
  for (const auto& t : inputs) flat = flat && shares_dense_layout(t, out);
  at::Tensor target = out;
  std::array<at::Tensor, N> ins = inputs;
  if (!flat) {
    for (auto& t : ins) t = t.contiguous();
    if (!out.is_contiguous()) target = at::empty(out.sizes(), out.options());
  }
  std::array<const T*, N> in_ptrs;
  for (size_t k = 0; k < N; ++k) in_ptrs[k] = ins[k].template const_data_ptr<T>();
  T* out_ptr = target.template mutable_data_ptr<T>();
  // In place, the output lines were just read into cache: streaming them out
  // would save nothing.
  bool aliases_input = false;
  for (auto* p : in_ptrs) aliases_input = aliases_input || p == out_ptr;
  const bool stream = !aliases_input && use_streaming_stores(n * int64_t(sizeof(T)));
  parallel_for_vectors<T>(n, [&](int64_t begin, int64_t end) {
    map_vectors(out_ptr + begin, end - begin, stream, [&](int64_t i, int64_t count) {
      return std::apply(
          [&](auto*... p) { return op(VecIO<T>::load(p + begin + i, count)...); }, in_ptrs);
    });
    if (stream) streaming_store_fence();
  });
  if (!target.is_same(out)) out.copy_(target);
}

}  // namespace fastact::cpu::CPU_CAPABILITY
