// What the autograd kernels (autograd/*.cpp) share: when a call must be
// recorded, the tangents of forward-mode AD, and building a backward node.
//
// Forward-mode AD is written as torch's generated kernels write it: after
// the forward (and its backward node), each output gets a tangent computed
// from the inputs' tangents with ops that are themselves differentiable, so
// forward-over-reverse, reverse-over-forward and nested torch.func
// transforms compose.
#pragma once
#include "op_handles.h"

#include <torch/autograd.h>
#include <torch/csrc/autograd/VariableTypeUtils.h>
#include <torch/csrc/autograd/functions/utils.h>
#include <torch/csrc/autograd/variable.h>

#include <optional>

namespace fastact::autograd {

// True when the call must be recorded for autograd.
template <typename... Tensors>
bool needs_grad(const Tensors&... ts) {
  return at::GradMode::is_enabled() && (ts.requires_grad() || ...);
}

// True when forward-mode AD (torch.autograd.forward_ad, torch.func.jvp)
// gives any of the tensors a tangent: the outputs then need theirs.
inline bool has_tangent(const at::Tensor& t) { return t.defined() && torch::autograd::isFwGradDefined(t); }
inline bool has_tangent(const std::optional<at::Tensor>& t) { return t.has_value() && has_tangent(*t); }
template <typename... Tensors>
bool any_tangent(const Tensors&... ts) {
  return (has_tangent(ts) || ...);
}

// t's tangent (forward-AD level 0, the one torch's own kernels use), or an
// undefined tensor where it has none.
inline at::Tensor tangent(const at::Tensor& t) { return has_tangent(t) ? t._fw_grad(/*level=*/0) : at::Tensor(); }

// t without its tangent (a differentiable view, as torch's generated
// kernels read inputs in tangent formulas): a tangent must not carry one of
// its own at the same level.
inline at::Tensor primal(const at::Tensor& t) { return has_tangent(t) ? t._fw_primal(/*level=*/0) : t; }

// Gives out the tangent computed for it (out of place: a fresh output).
inline void set_tangent(const at::Tensor& out, const at::Tensor& out_tangent) {
  if (out_tangent.defined()) out._set_fw_grad(out_tangent, /*level=*/0, /*is_inplace_op=*/false);
}

// A backward node wired to the inputs' histories, as torch's generated
// autograd code builds them (raw Nodes: cheaper per call than a custom
// autograd::Function, which matters for tiny tensors).
template <typename NodeT, typename... Tensors>
c10::intrusive_ptr<NodeT> make_node(const Tensors&... inputs) {
  auto node = c10::make_intrusive<NodeT>();
  node->set_next_edges(torch::autograd::collect_next_edges(inputs...));
  return node;
}

}  // namespace fastact::autograd
