// CPU kernels for the pointwise activations: relu, leaky_relu, sigmoid, tanh,
// gelu, selu; forward, in place (where torch has it) and backward.
#include "checks.h"
#include "cpu_shared/capability.h"
#include "cpu/elementwise.h"
#include "cpu_shared/output_allocator.h"

#include <ATen/Dispatch.h>

#include <cmath>

namespace fastact::cpu::CPU_CAPABILITY {
namespace {

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

at::Tensor relu(const at::Tensor& self) {
  check_relu_input(self);
  at::Tensor out = empty_output_like(self);
  AT_DISPATCH_ALL_TYPES_AND2(at::kHalf, at::kBFloat16, self.scalar_type(), "relu",
                             [&] { relu_into<scalar_t>(self, out); });
  return out;
}

void relu_(at::Tensor& self) {
  check_relu_input(self);
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

at::Tensor sigmoid(const at::Tensor& self) {
  const at::Tensor x = promote_to_float(self);
  at::Tensor out = empty_output_like(x);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "sigmoid", [&] {
    using Vec = typename VecIO<scalar_t>::Vec;
    map_elementwise<scalar_t, 1>({x}, out, [](Vec v) { return Vec(1) / (Vec(1) + vec_exp(Vec(0) - v)); });
  });
  return out;
}

at::Tensor tanh(const at::Tensor& self) {
  const at::Tensor x = promote_to_float(self);
  at::Tensor out = empty_output_like(x);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "tanh", [&] {
    using Vec = typename VecIO<scalar_t>::Vec;
    map_elementwise<scalar_t, 1>({x}, out, [](Vec v) { return vec_tanh(v); });
  });
  return out;
}

// grad * y (1 - y), as torch's sigmoid_backward
at::Tensor sigmoid_backward(const at::Tensor& grad_output, const at::Tensor& result) {
  check_grad_pair("sigmoid_backward", grad_output, result);
  at::Tensor grad_input = empty_output_like(result);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, result.scalar_type(), "sigmoid_backward", [&] {
    using Vec = typename VecIO<scalar_t>::Vec;
    map_elementwise<scalar_t, 2>({grad_output, result}, grad_input,
                                 [](Vec g, Vec y) { return g * (Vec(1) - y) * y; });
  });
  return grad_input;
}

// grad * (1 - y^2)
at::Tensor tanh_backward(const at::Tensor& grad_output, const at::Tensor& result) {
  check_grad_pair("tanh_backward", grad_output, result);
  at::Tensor grad_input = empty_output_like(result);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, result.scalar_type(), "tanh_backward", [&] {
    using Vec = typename VecIO<scalar_t>::Vec;
    map_elementwise<scalar_t, 2>({grad_output, result}, grad_input,
                                 [](Vec g, Vec y) { return g * (Vec(1) - y * y); });
  });
  return grad_input;
}

// The tanh form's constants: sqrt(2 / pi) and 0.044715.
constexpr double kGeluBeta = 0.7978845608028654;
constexpr double kGeluKappa = 0.044715;

// none: x Phi(x) = 0.5 x (1 + erf(x / sqrt 2));
// tanh: 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))
at::Tensor gelu(const at::Tensor& self, c10::string_view approximate) {
  const bool use_tanh = gelu_uses_tanh(approximate);
  at::Tensor out = empty_output_like(self);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, self.scalar_type(), "gelu", [&] {
    using Vec = typename VecIO<scalar_t>::Vec;
    using Acc = acc_t<scalar_t>;
    const Vec half(0.5), one(1), beta(static_cast<Acc>(kGeluBeta)), kappa(static_cast<Acc>(kGeluKappa));
    map_elementwise<scalar_t, 1>({self}, out, [=](Vec x) {
      if (use_tanh) return half * x * (one + vec_tanh(beta * (x + kappa * x * x * x)));
      return x * vec_normal_cdf(x);
    });
  });
  return out;
}

// d/dx of either form, as torch's gelu_backward computes it
at::Tensor gelu_backward(const at::Tensor& grad_output, const at::Tensor& self, c10::string_view approximate) {
  check_grad_pair("gelu_backward", grad_output, self);
  const bool use_tanh = gelu_uses_tanh(approximate);
  at::Tensor grad_input = empty_output_like(self);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, self.scalar_type(), "gelu_backward", [&] {
    using Vec = typename VecIO<scalar_t>::Vec;
    using Acc = acc_t<scalar_t>;
    const Vec half(0.5), one(1), three(3), beta(static_cast<Acc>(kGeluBeta)), kappa(static_cast<Acc>(kGeluKappa));
    map_elementwise<scalar_t, 2>({grad_output, self}, grad_input, [=](Vec g, Vec x) {
      if (use_tanh) {
        const Vec x_sq = x * x;
        const Vec t = vec_tanh(beta * (x + kappa * x_sq * x));
        const Vec left_derivative = half * (one + t);
        const Vec right_derivative = half * x * (one - t * t) * beta * (one + three * kappa * x_sq);
        return g * (left_derivative + right_derivative);
      }
      return g * vec_gelu_slope(x);
    });
  });
  return grad_input;
}


template <typename T>
void selu_into(const at::Tensor& x, const at::Tensor& out) {
  using Vec = typename VecIO<T>::Vec;
  using Acc = acc_t<T>;
  const Vec zero(0), scale(static_cast<Acc>(kSeluScale)), alpha_scale(static_cast<Acc>(kSeluAlpha * kSeluScale));
  map_elementwise<T, 1>({x}, out, [=](Vec v) { return Vec::blendv(alpha_scale * vec_expm1(v), scale * v, v > zero); });
}

at::Tensor selu(const at::Tensor& self) {
  at::Tensor out = empty_output_like(self);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, self.scalar_type(), "selu",
                                  [&] { selu_into<scalar_t>(self, out); });
  return out;
}

void selu_(at::Tensor& self) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, self.scalar_type(), "selu_",
                                  [&] { selu_into<scalar_t>(self, self); });
}

// torch's elu_backward: from the input, or (is_result) from the output,
// whose sign is the input's. A NaN input gives a NaN gradient, as torch's
// vectorized loop (its scalar tail takes the scale branch instead).
at::Tensor selu_backward(const at::Tensor& grad_output, const at::Tensor& self_or_result, bool is_result) {
  check_grad_pair("selu_backward", grad_output, self_or_result);
  at::Tensor grad_input = empty_output_like(self_or_result);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, self_or_result.scalar_type(), "selu_backward", [&] {
    using Vec = typename VecIO<scalar_t>::Vec;
    using Acc = acc_t<scalar_t>;
    const Vec zero(0), scale(static_cast<Acc>(kSeluScale)), alpha_scale(static_cast<Acc>(kSeluAlpha * kSeluScale));
    map_elementwise<scalar_t, 2>({grad_output, self_or_result}, grad_input, [=](Vec g, Vec s) {
      const Vec negative = is_result ? g * (s + alpha_scale) : g * (alpha_scale * vec_exp(s));
      return Vec::blendv(negative, g * scale, s > zero);
    });
  });
  return grad_input;
}

// exp as the kernels compute it (vec_exp), for tests/test_exp.py.
at::Tensor vec_exp_kernel(const at::Tensor& self) {
  TORCH_CHECK(self.scalar_type() == at::kFloat, "_vec_exp: float32 only");
  at::Tensor out = empty_output_like(self);
  map_elementwise<float, 1>({self}, out, [](Vectorized<float> v) { return vec_exp(v); });
  return out;
}

}  // namespace

void register_activation(CpuKernels& kernels) {
  kernels._vec_exp = &vec_exp_kernel;
  kernels.relu = &relu;
  kernels.relu_ = &relu_;
  kernels.relu_backward = &relu_backward;
  kernels.leaky_relu = &leaky_relu;
  kernels.leaky_relu_ = &leaky_relu_;
  kernels.leaky_relu_backward = &leaky_relu_backward;
  kernels.sigmoid = &sigmoid;
  kernels.sigmoid_backward = &sigmoid_backward;
  kernels.tanh = &tanh;
  kernels.tanh_backward = &tanh_backward;
  kernels.gelu = &gelu;
  kernels.gelu_backward = &gelu_backward;
  kernels.selu = &selu;
  kernels.selu_ = &selu_;
  kernels.selu_backward = &selu_backward;
}

}  // namespace fastact::cpu::CPU_CAPABILITY
