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
#include "autograd/autograd.h"

#include <ATen/TensorOperators.h>
#include <ATen/WrapDimUtils.h>
#include <ATen/ops/exp.h>
#include <ATen/ops/sum.h>
#include <torch/library.h>

namespace fastact::autograd {
namespace {

using torch::autograd::SavedVariable;
using torch::autograd::variable_list;

template <bool kLog>
at::Tensor softmax_backward(const at::Tensor& g, const at::Tensor& y, int64_t dim);

// Of the forward op: grad -> grad_input.
template <bool kLog>
struct SoftmaxNode final : torch::autograd::Node {
  SavedVariable y;
  int64_t dim = 0;

  variable_list apply(variable_list&& grads) override {
    variable_list out(1);
    if (grads[0].defined() && should_compute_output(0)) {
      out[0] = softmax_backward<kLog>(grads[0], y.unpack(this->getptr()), dim);
    }
    return out;
  }
  std::string name() const override { return kLog ? "FastactLogSoftmaxBackward" : "FastactSoftmaxBackward"; }
  void release_variables() override { y.reset_data(); }
};

// Of the backward op: gg -> (grad of g, grad of y).
template <bool kLog>
struct SoftmaxBackwardNode final : torch::autograd::Node {
  SavedVariable g, y;
  int64_t dim = 0;

  variable_list apply(variable_list&& grads) override {
    variable_list out(2);
    const at::Tensor& gg = grads[0];
    if (!gg.defined()) return out;
    const auto self = this->getptr();
    const at::Tensor g_ = g.unpack(self), y_ = y.unpack(self);
    if constexpr (kLog) {
      const at::Tensor p = y_.exp();
      if (should_compute_output(0)) out[0] = gg - (gg * p).sum(dim, /*keepdim=*/true);
      if (should_compute_output(1)) out[1] = -gg * p * g_.sum(dim, /*keepdim=*/true);
    } else {
      if (should_compute_output(0)) out[0] = softmax_backward<false>(gg, y_, dim);
      if (should_compute_output(1)) {
        out[1] = gg * (g_ - (g_ * y_).sum(dim, true)) - g_ * (gg * y_).sum(dim, true);
      }
    }
    return out;
  }
  std::string name() const override {
    return kLog ? "FastactLogSoftmaxBackwardBackward" : "FastactSoftmaxBackwardBackward";
  }
  void release_variables() override {
    g.reset_data();
    y.reset_data();
  }
};

constexpr const char* op_name(bool log) { return log ? "log_softmax" : "softmax"; }

template <bool kLog>
at::Tensor softmax_backward(const at::Tensor& g, const at::Tensor& y, int64_t dim) {
  check_no_forward_ad(op_name(kLog), g, y);
  at::Tensor dx;
  {
    at::AutoDispatchBelowADInplaceOrView below;
    dx = kLog ? ops::log_softmax_backward(g, y, dim) : ops::softmax_backward(g, y, dim);
  }
  if (needs_grad(g, y)) {
    auto node = make_node<SoftmaxBackwardNode<kLog>>(g, y);
    node->g = SavedVariable(g, false);
    node->y = SavedVariable(y, false);
    node->dim = at::maybe_wrap_dim(dim, y.dim());
    torch::autograd::set_history(dx, node);
  }
  return dx;
}

template <bool kLog>
at::Tensor softmax(const at::Tensor& x, int64_t dim) {
  check_no_forward_ad(op_name(kLog), x);
  at::Tensor y;
  {
    at::AutoDispatchBelowADInplaceOrView below;
    y = kLog ? ops::log_softmax(x, dim) : ops::softmax(x, dim);
  }
  if (needs_grad(x)) {
    auto node = make_node<SoftmaxNode<kLog>>(x);
    node->dim = at::maybe_wrap_dim(dim, x.dim());
    torch::autograd::set_history(y, node);
    node->y = SavedVariable(y, /*is_output=*/true);
  }
  return y;
}

}  // namespace

TORCH_LIBRARY_IMPL(fastact, Autograd, m) {
  m.impl("softmax", &softmax<false>);
  m.impl("log_softmax", &softmax<true>);
  m.impl("softmax_backward", &softmax_backward<false>);
  m.impl("log_softmax_backward", &softmax_backward<true>);
}

}  // namespace fastact::autograd
