// CUDA glue for binary_cross_entropy_with_logits (kernels: binary_cross_entropy_kernel.cu): the same checks as on CPU
// (checks.h), contiguous operands, the outputs and a small scratch buffer
// from torch's caching allocator, and no host synchronisation: a reduced
// loss is summed and divided on the device.
#include "checks.h"
#include "cuda/glue.h"

#include <ATen/ops/empty.h>
#include <torch/library.h>

namespace fastact::cuda {
namespace {

std::tuple<at::Tensor, at::Tensor> binary_cross_entropy_with_logits(
    const at::Tensor& input, const at::Tensor& target, const std::optional<at::Tensor>& weight_opt,
    const std::optional<at::Tensor>& pos_weight_opt, int64_t reduction, bool compute_grad) {
  check_binary_cross_entropy(input, target, reduction);
  const at::Tensor w = binary_cross_entropy_extra(input, weight_opt, "weight"),
                   pw = binary_cross_entropy_extra(input, pos_weight_opt, "pos_weight");
  const ScalarType type = scalar_type_of(input, "binary_cross_entropy_with_logits");
  const DeviceScope scope(input);
  const at::Tensor x = input.contiguous(), t = target.contiguous();
  at::Tensor grad = compute_grad ? at::empty(input.sizes(), input.options()) : at::empty({0}, input.options());
  at::Tensor loss = reduction == kNone ? at::empty(input.sizes(), input.options()) : at::empty({}, input.options());
  BinaryCrossEntropyArgs args{x.const_data_ptr(),
                              t.const_data_ptr(),
                              data_or_null(w),
                              data_or_null(pw),
                              x.numel(),
                              static_cast<Reduction>(reduction),
                              loss.mutable_data_ptr(),
                              compute_grad ? grad.mutable_data_ptr() : nullptr,
                              nullptr};
  const at::Tensor scratch = workspace(input, binary_cross_entropy_workspace_bytes(args));
  args.workspace = scratch.mutable_data_ptr();
  check_launch(launch_binary_cross_entropy(type, args, scope.stream()), "binary_cross_entropy_with_logits");
  return {loss, grad};
}

}  // namespace

FASTACT_CUDA_KERNELS(m) { m.impl("binary_cross_entropy_with_logits", &binary_cross_entropy_with_logits); }

}  // namespace fastact::cuda
