// linear_act on every device (CPU and CUDA; nothing in it is device-specific):
// torch's own Linear arithmetic (addmm, or mm without a
// bias, on the input flattened to 2-D, as torch.nn.functional.linear does for
// 2-D and contiguous 3-D inputs) and then the activation applied in place
// on the matmul's output, so Linear + activation leaves one tensor behind,
// bit-identical to the unfused pair.
#include <ATen/TensorOperators.h>
#include <ATen/core/grad_mode.h>
#include <ATen/ops/addmm.h>
#include <ATen/ops/sigmoid.h>
#include <ATen/ops/elu.h>
#include <ATen/ops/elu_backward.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/silu.h>
#include <ATen/ops/silu_backward.h>
#include <ATen/ops/softplus.h>
#include <ATen/ops/softplus_backward.h>
#include <torch/library.h>

#include "linear_act_ops.h"
#include "op_handles.h"

namespace fastact::linear_act {

// torch's Softplus default: fastact.fuse takes Softplus with this threshold only.
constexpr double kSoftplusThreshold = 20.0;

at::Tensor activate(at::Tensor pre, Activation act, double param, bool in_place) {
  switch (act) {
    case Activation::None: return pre;
    case Activation::Relu: return in_place ? (ops::relu_(pre), pre) : ops::relu(pre);
    case Activation::LeakyRelu: return in_place ? (ops::leaky_relu_(pre, param), pre) : ops::leaky_relu(pre, param);
    case Activation::Sigmoid: return ops::sigmoid(pre);
    case Activation::Tanh: return ops::tanh(pre);
    case Activation::Gelu: return ops::gelu(pre, "none");
    case Activation::GeluTanh: return ops::gelu(pre, "tanh");
    case Activation::Silu: return at::silu(pre);
    case Activation::Elu: return at::elu(pre, param);
    case Activation::Selu: return ops::selu(pre);
    case Activation::Softplus: return at::softplus(pre, param, kSoftplusThreshold);
  }
  return pre;
}

at::Tensor activation_grad(Activation act, double param, const at::Tensor& g, const at::Tensor& saved) {
  switch (act) {
    case Activation::None: return g;
    case Activation::Relu: return ops::relu_backward(g, saved);
    case Activation::LeakyRelu: return ops::leaky_relu_backward(g, saved, param);
    case Activation::Sigmoid: return ops::sigmoid_backward(g, saved);
    case Activation::Tanh: return ops::tanh_backward(g, saved);
    case Activation::Gelu: return ops::gelu_backward(g, saved, "none");
    case Activation::GeluTanh: return ops::gelu_backward(g, saved, "tanh");
    case Activation::Silu: {
      if (!at::GradMode::is_enabled()) return at::silu_backward(g, saved);
      // recorded: silu_backward has no derivative; torch's own formula then
      const at::Tensor sigmoid = at::sigmoid(saved);
      return g * sigmoid * (1.0 + saved * (1.0 - sigmoid));
    }
    case Activation::Elu: return at::elu_backward(g, param, 1, 1, /*is_result=*/false, saved);
    case Activation::Selu: return ops::selu_backward(g, saved, /*is_result=*/false);
    case Activation::Softplus: return at::softplus_backward(g, saved, param, kSoftplusThreshold);
  }
  return g;
}

}  // namespace fastact::linear_act

namespace fastact::composite {
namespace {

namespace ops = fastact::ops;

at::Tensor linear_act(const at::Tensor& input, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                      c10::string_view activation, double negative_slope) {
  const linear_act::Activation act = linear_act::parse_activation(activation);
  TORCH_CHECK(input.dim() >= 1 && weight.dim() >= 1, "both arguments to linear need to be at least 1D, but they are ",
              input.dim(), "D and ", weight.dim(), "D");
  TORCH_CHECK(weight.dim() == 2, "fastact.linear: weight must be 2-D [out_features, in_features], got ",
              weight.dim(), "-D");
  const at::Tensor flat = input.dim() == 2 ? input : input.reshape({-1, input.size(-1)});
  const at::Tensor pre =
      bias.has_value() && bias->defined() ? at::addmm(*bias, flat, weight.t()) : at::mm(flat, weight.t());
  const at::Tensor out = linear_act::activate(pre, act, negative_slope, /*in_place=*/true);
  if (input.dim() == 2) return out;
  std::vector<int64_t> shape(input.sizes().begin(), input.sizes().end() - 1);
  shape.push_back(weight.size(0));
  return out.view(shape);
}

}  // namespace

// Registered per backend rather than as CompositeExplicitAutograd, which
// would also claim the Meta key that fastact/_backends/fake.py's fake kernel holds.
TORCH_LIBRARY_IMPL(fastact, CPU, m) { m.impl("linear_act", &linear_act); }
#if defined(FASTACT_WITH_CUDA)
TORCH_LIBRARY_IMPL(fastact, CUDA, m) { m.impl("linear_act", &linear_act); }
#endif

}  // namespace fastact::composite
