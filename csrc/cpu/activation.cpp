// CPU kernels for the pointwise activations: relu and leaky_relu, forward,
// in place and backward.
#include "cpu/elementwise.h"
#include "cpu/output_allocator.h"

#include <ATen/Dispatch.h>
#include <torch/library.h>

namespace fastact::cpu {
namespace {

void check_grad_pair(const char* op, const at::Tensor& grad, const at::Tensor& saved) {
  TORCH_CHECK(grad.sizes() == saved.sizes(), op, ": grad_output of shape ", grad.sizes(),
              " does not match the saved tensor of shape ", saved.sizes());
  TORCH_CHECK(grad.scalar_type() == saved.scalar_type(), op, ": grad_output has dtype ",
              grad.scalar_type(), " but the saved tensor has dtype ", saved.scalar_type());
  TORCH_CHECK(grad.device() == saved.device(), op, ": tensors on different devices");
}

// out = max(x, 0); NaN stays NaN, as in torch (clamp_min propagates it).
template <typename T>
void relu_into(const at::Tensor& x, const at::Tensor& out) {
  using Vec = typename VecIO<T>::Vec;
  map_elementwise<T, 1>({x}, out, [zero = Vec(0)](Vec v) { return at::vec::clamp_min(v, zero); });
}

template <typename T>
void leaky_relu_into(const at::Tensor& x, const at::Tensor& out, double negative_slope) {
  using Vec = typename VecIO<T>::Vec;
  const Vec zero(0), slope(static_cast<acc_t<T>>(negative_slope));
  map_elementwise<T, 1>({x}, out, [=](Vec v) { return Vec::blendv(v * slope, v, v > zero); });
}

void check_not_bool(const at::Tensor& self) {
  TORCH_CHECK(self.scalar_type() != at::kBool, "Boolean inputs not supported for relu");
}

at::Tensor relu(const at::Tensor& self) {
  check_not_bool(self);
  at::Tensor out = empty_output_like(self);
  AT_DISPATCH_ALL_TYPES_AND2(at::kHalf, at::kBFloat16, self.scalar_type(), "relu",
                             [&] { relu_into<scalar_t>(self, out); });
  return out;
}

void relu_(at::Tensor& self) {
  check_not_bool(self);
  AT_DISPATCH_ALL_TYPES_AND2(at::kHalf, at::kBFloat16, self.scalar_type(), "relu_",
                             [&] { relu_into<scalar_t>(self, self); });
}

// torch's threshold_backward(grad, result, 0): result <= 0 ? 0 : grad, so a
// NaN output passes its gradient through.
at::Tensor relu_backward(const at::Tensor& grad_output, const at::Tensor& result) {
  check_grad_pair("relu_backward", grad_output, result);
  at::Tensor grad_input = empty_output_like(result);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, result.scalar_type(), "relu_backward", [&] {
    using Vec = typename VecIO<scalar_t>::Vec;
    map_elementwise<scalar_t, 2>({grad_output, result}, grad_input, [zero = Vec(0)](Vec g, Vec r) {
      return Vec::blendv(g, zero, r <= zero);
    });
  });
  return grad_input;
}

at::Tensor leaky_relu(const at::Tensor& self, double negative_slope) {
  at::Tensor out = empty_output_like(self);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, self.scalar_type(), "leaky_relu",
                                  [&] { leaky_relu_into<scalar_t>(self, out, negative_slope); });
  return out;
}

void leaky_relu_(at::Tensor& self, double negative_slope) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, self.scalar_type(), "leaky_relu_",
                                  [&] { leaky_relu_into<scalar_t>(self, self, negative_slope); });
}

// grad * (s > 0 ? 1 : slope), where s is the output (slope >= 0: same sign as
// the input) or the input itself (slope < 0).
at::Tensor leaky_relu_backward(const at::Tensor& grad_output, const at::Tensor& self_or_result,
                               double negative_slope) {
  check_grad_pair("leaky_relu_backward", grad_output, self_or_result);
  at::Tensor grad_input = empty_output_like(self_or_result);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, self_or_result.scalar_type(),
                                  "leaky_relu_backward", [&] {
    using Vec = typename VecIO<scalar_t>::Vec;
    const Vec zero(0), slope(static_cast<acc_t<scalar_t>>(negative_slope));
    map_elementwise<scalar_t, 2>({grad_output, self_or_result}, grad_input, [=](Vec g, Vec s) {
      return Vec::blendv(g * slope, g, s > zero);
    });
  });
  return grad_input;
}

// exp as the kernels compute it (vec_exp), for tests/test_exp.py.
at::Tensor vec_exp_kernel(const at::Tensor& self) {
  TORCH_CHECK(self.scalar_type() == at::kFloat, "_vec_exp: float32 only");
  at::Tensor out = empty_output_like(self);
  map_elementwise<float, 1>({self}, out, [](Vectorized<float> v) { return fastact::cpu::vec_exp(v); });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(fastact, CPU, m) {
  m.impl("_vec_exp", &vec_exp_kernel);
  m.impl("relu", &relu);
  m.impl("relu_", &relu_);
  m.impl("relu_backward", &relu_backward);
  m.impl("leaky_relu", &leaky_relu);
  m.impl("leaky_relu_", &leaky_relu_);
  m.impl("leaky_relu_backward", &leaky_relu_backward);
}

}  // namespace fastact::cpu
