// linear_act on every device (CPU and CUDA; nothing in it is device-specific):
// torch's own Linear arithmetic (addmm, or mm without a
// bias, on the input flattened to 2-D, as torch.nn.functional.linear does for
// 2-D and contiguous 3-D inputs) and then the activation applied in place
// on the matmul's output, so Linear + activation leaves one tensor behind,
// bit-identical to the unfused pair.
#include <ATen/ops/addmm.h>
#include <ATen/ops/mm.h>
#include <torch/library.h>

#include "op_handles.h"
#include "linear_act.h"

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
  at::Tensor out = bias.has_value() && bias->defined() ? at::addmm(*bias, flat, weight.t()) : at::mm(flat, weight.t());
  switch (act) {
    case linear_act::Activation::None: break;
    case linear_act::Activation::Relu: ops::relu_(out); break;
    case linear_act::Activation::LeakyRelu: ops::leaky_relu_(out, negative_slope); break;
    case linear_act::Activation::Sigmoid: out = ops::sigmoid(out); break;
    case linear_act::Activation::Tanh: out = ops::tanh(out); break;
  }
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
