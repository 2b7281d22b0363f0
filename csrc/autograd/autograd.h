// What the autograd kernels (autograd/*.cpp) share: when a call must be
// recorded, the refusal of forward-mode AD, and building a backward node.
#pragma once
#include "op_handles.h"

#include <torch/autograd.h>
#include <torch/csrc/autograd/VariableTypeUtils.h>
#include <torch/csrc/autograd/functions/utils.h>
#include <torch/csrc/autograd/variable.h>

namespace fastact::autograd {

// True when the call must be recorded for autograd.
template <typename... Tensors>
bool needs_grad(const Tensors&... ts) {
  return at::GradMode::is_enabled() && (ts.requires_grad() || ...);
}

// fastact's derivatives are reverse-mode only: refuse dual tensors rather
// than drop their tangents silently.
template <typename... Tensors>
void check_no_forward_ad(const char* op, const Tensors&... ts) {
  TORCH_CHECK_NOT_IMPLEMENTED(!(torch::autograd::isFwGradDefined(ts) || ...),
                              "fastact::", op, ": forward-mode AD is not implemented");
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
