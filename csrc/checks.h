// Argument checks and preparation shared by every backend's kernels (cpu/,
// cuda/): the same errors, with torch's wording where torch has one, on
// every device. Shapes and dtypes only: nothing here reads tensor data, so
// nothing here synchronises with a device.
#pragma once
#include <ATen/WrapDimUtils.h>
#include <ATen/core/Tensor.h>
#include <c10/core/DefaultDtype.h>
#include <c10/util/Exception.h>

#include "constants.h"

#include <limits>
#include <optional>

namespace fastact {

inline void check_grad_pair(const char* op, const at::Tensor& grad, const at::Tensor& saved) {
  TORCH_CHECK(grad.sizes() == saved.sizes(), op, ": grad_output of shape ", grad.sizes(),
              " does not match the saved tensor of shape ", saved.sizes());
  TORCH_CHECK(grad.scalar_type() == saved.scalar_type(), op, ": grad_output has dtype ", grad.scalar_type(),
              " but the saved tensor has dtype ", saved.scalar_type());
  TORCH_CHECK(grad.device() == saved.device(), op, ": tensors on different devices");
}

inline void check_relu_input(const at::Tensor& self) {
  TORCH_CHECK(self.scalar_type() != at::kBool, "Boolean inputs not supported for relu");
}

// torch.sigmoid and torch.tanh compute integer and bool inputs in the default
// float dtype.
inline at::Tensor promote_to_float(const at::Tensor& x) {
  return at::isIntegralType(x.scalar_type(), /*includeBool=*/true)
             ? x.to(c10::typeMetaToScalarType(c10::get_default_dtype()))
             : x;
}

inline bool gelu_uses_tanh(c10::string_view approximate) {
  TORCH_CHECK(approximate == "none" || approximate == "tanh", "approximate argument must be either none or tanh.");
  return approximate == "tanh";
}

// Wraps dim; NotImplementedError for integer inputs, as torch raises.
inline int64_t check_softmax_input(const char* name, const at::Tensor& self, int64_t dim) {
  dim = at::maybe_wrap_dim(dim, self.dim());
  TORCH_CHECK_NOT_IMPLEMENTED(at::isFloatingType(self.scalar_type()), name, ": expected a floating point input, got ",
                              self.scalar_type(), " (pass dtype= to compute in a floating type)");
  return dim;
}

// t's sizes before, along and after dim: the RowShape (constants.h) the row
// kernels walk.
inline RowShape row_shape(const at::Tensor& t, int64_t dim) {
  RowShape s{1, t.dim() == 0 ? 1 : t.size(dim), 1};
  for (int64_t d = 0; d < dim; ++d) s.outer *= t.size(d);
  for (int64_t d = dim + 1; d < t.dim(); ++d) s.inner *= t.size(d);
  return s;
}

inline int64_t check_softmax_backward(const char* name, const at::Tensor& grad_output, const at::Tensor& output,
                                      int64_t dim) {
  TORCH_CHECK(grad_output.sizes() == output.sizes(), name, ": grad_output of shape ", grad_output.sizes(),
              " does not match output of shape ", output.sizes());
  TORCH_CHECK(grad_output.scalar_type() == output.scalar_type(), name, ": grad_output has dtype ",
              grad_output.scalar_type(), " but output has dtype ", output.scalar_type());
  return at::maybe_wrap_dim(dim, output.dim());
}

// The factor 'mean' puts on cross entropy's gradient: 1 / denominator
// whatever its sign, inf at 0 (torch's nll_loss backward); at 0 with label
// smoothing, torch's two terms meet with infinities of both signs in one
// log_softmax backward and every counted row's gradient is NaN.
inline double mean_grad_scale(bool mean, double denominator, bool smoothed_index_targets) {
  if (!mean) return 1.0;
  if (denominator == 0 && smoothed_index_targets) return std::numeric_limits<double>::quiet_NaN();
  return 1.0 / denominator;
}

// Checks cross_entropy's arguments and returns the contiguous weight (or an
// undefined tensor).
inline at::Tensor check_cross_entropy(const at::Tensor& input, const at::Tensor& target,
                                      const std::optional<at::Tensor>& weight_opt, int64_t reduction,
                                      double label_smoothing) {
  TORCH_CHECK(input.dim() == 2, "fastact::cross_entropy: expected input of shape [rows, classes], got ",
              input.sizes());
  TORCH_CHECK(reduction >= kNone && reduction <= kSum, "fastact::cross_entropy: bad reduction ", reduction);
  // torch refuses only smoothing above 1; below 0 (and NaN) it means none
  TORCH_CHECK(!(label_smoothing > 1), "label_smoothing must be between 0.0 and 1.0. Got: ", label_smoothing);
  const int64_t R = input.size(0), C = input.size(1);
  if (target.is_floating_point()) {
    TORCH_CHECK(target.sizes() == input.sizes(), "fastact::cross_entropy: probability target of shape ",
                target.sizes(), " does not match input ", input.sizes());
    TORCH_CHECK(target.scalar_type() == input.scalar_type(), "fastact::cross_entropy: target dtype ",
                target.scalar_type(), " differs from input dtype ", input.scalar_type());
  } else {
    TORCH_CHECK(target.scalar_type() == at::kLong, "fastact::cross_entropy: expected int64 class indices, got ",
                target.scalar_type());
    TORCH_CHECK(target.dim() == 1 && target.size(0) == R, "fastact::cross_entropy: expected ", R,
                " targets, got shape ", target.sizes());
  }
  TORCH_CHECK(target.device() == input.device(), "fastact::cross_entropy: target is on ", target.device(),
              " but input is on ", input.device());
  if (!weight_opt.has_value() || !weight_opt->defined()) return at::Tensor();
  const at::Tensor& weight = *weight_opt;
  TORCH_CHECK(weight.dim() == 1 && weight.numel() == C, "weight tensor should be defined either for all ", C,
              " classes or no classes but got weight tensor of shape: ", weight.sizes());
  TORCH_CHECK(weight.scalar_type() == input.scalar_type(), "expected scalar type ", input.scalar_type(),
              " but found ", weight.scalar_type());
  TORCH_CHECK(weight.device() == input.device(), "fastact::cross_entropy: weight is on ", weight.device(),
              " but input is on ", input.device());
  return weight.contiguous();
}

inline void check_binary_cross_entropy(const at::Tensor& input, const at::Tensor& target, int64_t reduction) {
  TORCH_CHECK(reduction >= kNone && reduction <= kSum, "fastact::binary_cross_entropy_with_logits: bad reduction ",
              reduction);
  TORCH_CHECK(target.sizes() == input.sizes(), "Target size (", target.sizes(), ") must be the same as input size (",
              input.sizes(), ")");
  TORCH_CHECK(target.scalar_type() == input.scalar_type(), "fastact::binary_cross_entropy_with_logits: target dtype ",
              target.scalar_type(), " differs from input dtype ", input.scalar_type());
  TORCH_CHECK(target.device() == input.device(), "fastact::binary_cross_entropy_with_logits: target is on ",
              target.device(), " but input is on ", input.device());
}

// weight or pos_weight of binary_cross_entropy_with_logits, checked and made
// contiguous (undefined when absent).
inline at::Tensor binary_cross_entropy_extra(const at::Tensor& input, const std::optional<at::Tensor>& opt,
                                             const char* what) {
  if (!opt.has_value() || !opt->defined()) return at::Tensor();
  TORCH_CHECK(opt->sizes() == input.sizes(), "fastact::binary_cross_entropy_with_logits: ", what,
              " must be expanded to the input's shape");
  TORCH_CHECK(opt->scalar_type() == input.scalar_type(), "expected scalar type ", input.scalar_type(), " but found ",
              opt->scalar_type());
  TORCH_CHECK(opt->device() == input.device(), "fastact::binary_cross_entropy_with_logits: ", what, " is on ",
              opt->device(), " but input is on ", input.device());
  return opt->contiguous();
}

}  // namespace fastact
