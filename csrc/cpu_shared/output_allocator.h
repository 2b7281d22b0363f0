// Where fastact's CPU kernels get their outputs.
#pragma once
#include <ATen/core/Tensor.h>

namespace fastact::cpu {

// An empty tensor with the layout torch.empty_like would give `like` (dense
// inputs keep their strides, others get contiguous ones), of `dtype`.
at::Tensor empty_output_like(const at::Tensor& like);

// An empty contiguous tensor.
at::Tensor empty_output(at::IntArrayRef sizes, const at::TensorOptions& options);

// Returns the cached free huge-page mappings to the OS.
void empty_cache();

// Bytes held in that cache, and the most it holds.
int64_t cached_bytes();
int64_t cache_capacity();

// Bytes at and above which an output is placed on transparent huge pages.
int64_t huge_page_threshold_bytes();

}  // namespace fastact::cpu
