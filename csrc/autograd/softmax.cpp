// Autograd for softmax and log_softmax, on the Autograd dispatch key. Both
// save only their output y; backward is one fused pass each:
//   softmax:     dx = y * (g - sum(g * y))
//   log_softmax: dx = g - exp(y) * sum(g)
// The backward ops are differentiable too (double backward), with
//   softmax:     d/dg = softmax_backward(gg, y)   (the Jacobian is symmetric)
//                d/dy = gg * (g - sum(g * y)) - g * sum(gg * y)
//   log_softmax: d/dg = gg - sum(gg * exp(y))
//                d/dy = -gg * exp(y) * sum(g)
// written with ATen ops so that higher orders keep working.
#include "autograd/op_handles.h"

#include <ATen/WrapDimUtils.h>
#include <ATen/TensorOperators.h>
#include <ATen/ops/exp.h>
#include <ATen/ops/sum.h>
#include <torch/library.h>

namespace fastact::autograd {
namespace {

using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

template <bool kLog>
at::Tensor forward_op(const at::Tensor& x, int64_t dim) {
  return kLog ? ops::log_softmax(x, dim) : ops::softmax(x, dim);
}
template <bool kLog>
at::Tensor backward_op(const at::Tensor& g, const at::Tensor& y, int64_t dim) {
  return kLog ? ops::log_softmax_backward(g, y, dim) : ops::softmax_backward(g, y, dim);
}

// Nodes are named (grad_fn shows the type name): the logic is a CRTP base.
template <typename Self, bool kLog>
struct SoftmaxBackwardNode : torch::autograd::Function<Self> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& g, const at::Tensor& y, int64_t dim) {
    at::AutoDispatchBelowADInplaceOrView below;
    ctx->save_for_backward({g, y});
    ctx->saved_data["dim"] = dim;
    return backward_op<kLog>(g, y, dim);
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto saved = ctx->get_saved_variables();
    const at::Tensor &g = saved[0], &y = saved[1], &gg = grads[0];
    const int64_t dim = ctx->saved_data["dim"].toInt();
    at::Tensor grad_g, grad_y;
    if constexpr (kLog) {
      const at::Tensor p = y.exp();
      grad_g = gg - (gg * p).sum(dim, /*keepdim=*/true);
      grad_y = -gg * p * g.sum(dim, /*keepdim=*/true);
    } else {
      grad_g = backward_op<false>(gg, y, dim);
      grad_y = gg * (g - (g * y).sum(dim, true)) - g * (gg * y).sum(dim, true);
    }
    return {grad_g, grad_y, at::Tensor()};
  }
};

struct FastactSoftmaxBackwardBackward : SoftmaxBackwardNode<FastactSoftmaxBackwardBackward, false> {};
struct FastactLogSoftmaxBackwardBackward
    : SoftmaxBackwardNode<FastactLogSoftmaxBackwardBackward, true> {};

template <bool kLog>
at::Tensor softmax_backward(const at::Tensor& g, const at::Tensor& y, int64_t dim) {
  if (!needs_grad(g) && !needs_grad(y)) {
    at::AutoDispatchBelowADInplaceOrView below;
    return backward_op<kLog>(g, y, dim);
  }
  using Node = std::conditional_t<kLog, FastactLogSoftmaxBackwardBackward, FastactSoftmaxBackwardBackward>;
  return Node::apply(g, y, at::maybe_wrap_dim(dim, y.dim()));
}

template <typename Self, bool kLog>
struct SoftmaxNode : torch::autograd::Function<Self> {
  static at::Tensor forward(AutogradContext* ctx, const at::Tensor& x, int64_t dim) {
    at::AutoDispatchBelowADInplaceOrView below;
    at::Tensor y = forward_op<kLog>(x, dim);
    ctx->save_for_backward({y});
    ctx->saved_data["dim"] = dim;
    return y;
  }
  static variable_list backward(AutogradContext* ctx, variable_list grads) {
    const auto y = ctx->get_saved_variables()[0];
    return {softmax_backward<kLog>(grads[0], y, ctx->saved_data["dim"].toInt()), at::Tensor()};
  }
};

struct FastactSoftmaxBackward : SoftmaxNode<FastactSoftmaxBackward, false> {};
struct FastactLogSoftmaxBackward : SoftmaxNode<FastactLogSoftmaxBackward, true> {};

template <bool kLog>
at::Tensor softmax(const at::Tensor& x, int64_t dim) {
  if (!needs_grad(x)) {
    at::AutoDispatchBelowADInplaceOrView below;
    return forward_op<kLog>(x, dim);
  }
  using Node = std::conditional_t<kLog, FastactLogSoftmaxBackward, FastactSoftmaxBackward>;
  return Node::apply(x, at::maybe_wrap_dim(dim, x.dim()));
}

}  // namespace

TORCH_LIBRARY_IMPL(fastact, Autograd, m) {
  m.impl("softmax", &softmax<false>);
  m.impl("log_softmax", &softmax<true>);
  m.impl("softmax_backward", &softmax_backward<false>);
  m.impl("log_softmax_backward", &softmax_backward<true>);
}

}  // namespace fastact::autograd
