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
// Forward-mode AD, tangents t (of x), tg, ty:
//   softmax:              dy = softmax_backward(t, y)   (symmetric Jacobian: one fused pass)
//   log_softmax:          dy = t - sum(t * exp(y))
//   softmax_backward:     d  = softmax_backward(tg, y) + ty * (g - sum(g * y)) - y * sum(g * ty)
//   log_softmax_backward: d  = tg - exp(y) * sum(tg) - ty * exp(y) * sum(g)
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

// The tangent of softmax_backward / log_softmax_backward (see the top).
template <bool kLog>
at::Tensor softmax_backward_tangent(const at::Tensor& g_dual, const at::Tensor& y_dual, int64_t dim) {
  const at::Tensor tg = tangent(g_dual), ty = tangent(y_dual);
  const at::Tensor g = primal(g_dual), y = primal(y_dual);
  at::Tensor d;
  if constexpr (kLog) {
    const at::Tensor p = y.exp();
    if (tg.defined()) d = tg - p * tg.sum(dim, /*keepdim=*/true);
    if (ty.defined()) {
      const at::Tensor dy = -ty * p * g.sum(dim, /*keepdim=*/true);
      d = d.defined() ? d + dy : dy;
    }
  } else {
    if (tg.defined()) d = softmax_backward<false>(tg, y, dim);
    if (ty.defined()) {
      const at::Tensor dy = ty * (g - (g * y).sum(dim, true)) - y * (g * ty).sum(dim, true);
      d = d.defined() ? d + dy : dy;
    }
  }
  return d;
}

template <bool kLog>
at::Tensor softmax_backward(const at::Tensor& g, const at::Tensor& y, int64_t dim) {
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
  if (any_tangent(g, y)) set_tangent(dx, softmax_backward_tangent<kLog>(g, y, at::maybe_wrap_dim(dim, y.dim())));
  return dx;
}

template <bool kLog>
at::Tensor softmax(const at::Tensor& x, int64_t dim) {
  at::Tensor y;
  {
    at::AutoDispatchBelowADInplaceOrView below;
    y = kLog ? ops::log_softmax(x, dim) : ops::softmax(x, dim);
  }
  c10::intrusive_ptr<SoftmaxNode<kLog>> node;
  if (needs_grad(x)) {
    node = make_node<SoftmaxNode<kLog>>(x);
    node->dim = at::maybe_wrap_dim(dim, x.dim());
    torch::autograd::set_history(y, node);
  }
  if (has_tangent(x)) {
    const at::Tensor t = tangent(x);
    const int64_t d = at::maybe_wrap_dim(dim, x.dim());
    set_tangent(y, kLog ? t - (t * y.exp()).sum(d, /*keepdim=*/true) : softmax_backward<false>(t, y, d));
  }
  if (node) node->y = SavedVariable(y, /*is_output=*/true);  // after its tangent: saved with it
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
