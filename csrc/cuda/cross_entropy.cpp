// CUDA glue for cross_entropy (kernels: cross_entropy_kernel.cu): the same checks as on CPU
// (checks.h), contiguous operands, the outputs and a small scratch buffer
// from torch's caching allocator, and no host synchronisation: a reduced
// loss is summed and divided on the device.
#include "checks.h"
#include "cuda/glue.h"

#include <ATen/ops/empty.h>
#include <torch/library.h>

namespace fastact::cuda {
namespace {

std::tuple<at::Tensor, at::Tensor> cross_entropy(const at::Tensor& input, const at::Tensor& target,
                                                 const std::optional<at::Tensor>& weight_opt, int64_t reduction,
                                                 int64_t ignore_index, double label_smoothing, bool compute_grad) {
  const at::Tensor weight = check_cross_entropy(input, target, weight_opt, reduction, label_smoothing);
  const ScalarType type = scalar_type_of(input, "cross_entropy");
  const DeviceScope scope(input);
  const int64_t R = input.size(0), C = input.size(1);
  const bool probs = target.is_floating_point();
  const at::Tensor x = input.contiguous(), t = target.contiguous();
  at::Tensor grad = compute_grad ? at::empty({R, C}, input.options()) : at::empty({0}, input.options());
  at::Tensor loss = reduction == kNone ? at::empty({R}, input.options()) : at::empty({}, input.options());
  CrossEntropyArgs args{x.const_data_ptr(),
                        probs ? nullptr : t.const_data_ptr<int64_t>(),
                        probs ? t.const_data_ptr() : nullptr,
                        data_or_null(weight),
                        R,
                        C,
                        ignore_index,
                        label_smoothing > 0 ? label_smoothing : 0,  // torch: smoothing <= 0 (or NaN) is none
                        static_cast<Reduction>(reduction),
                        loss.mutable_data_ptr(),
                        compute_grad ? grad.mutable_data_ptr() : nullptr,
                        nullptr};
  const at::Tensor scratch = workspace(input, cross_entropy_workspace_bytes(args));
  args.workspace = scratch.mutable_data_ptr();
  check_launch(launch_cross_entropy(type, args, scope.stream()), "cross_entropy");
  return {loss, grad};
}

}  // namespace

FASTACT_CUDA_KERNELS(m) { m.impl("cross_entropy", &cross_entropy); }

}  // namespace fastact::cuda
