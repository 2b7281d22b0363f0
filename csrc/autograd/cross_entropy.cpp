// Autograd for the fused cross entropy. The forward op has already written
// d loss / d input for an incoming gradient of 1 (scaled for the reduction);
// this node keeps that tensor, and nothing else, for backward:
//  - incoming gradient exactly 1 (a scalar loss, read on the CPU without any
//    device sync): the tensor is the answer, no pass at all;
//  - otherwise one scaling pass, in place when the graph is not retained
//    (no second R x C buffer), out of place when it is, or when the call is
//    being traced by torch.compile (the compiler fuses the scale anyway).
// The tensor is owned by this node alone (the Python layer drops the op's
// second output), which is what makes handing it out or scaling it safe.
#include "autograd/op_handles.h"

#include <ATen/TensorOperators.h>
#include <ATen/ops/mul.h>
#include <torch/csrc/autograd/graph_task.h>
#include <torch/library.h>

namespace fastact::autograd {
namespace {

using torch::autograd::variable_list;

constexpr int64_t kReductionNone = 0;

// A tensor seen by torch.compile / torch.export tracing (fake or functional):
// no values to read, and no in-place tricks on graph outputs.
bool is_traced(const at::Tensor& t) {
  static const auto traced = c10::DispatchKeySet({c10::DispatchKey::Python, c10::DispatchKey::Functionalize,
                                                  c10::DispatchKey::PythonTLSSnapshot});
  return t.key_set().has_any(traced);
}

// A plain CPU scalar holding exactly 1.
bool is_concrete_one(const at::Tensor& g) {
  return g.numel() == 1 && g.device().is_cpu() && g.layout() == at::kStrided && g.item<double>() == 1.0;
}

struct CrossEntropyNode final : torch::autograd::Node {
  at::Tensor grad_input;
  int64_t reduction = 0;

  variable_list apply(variable_list&& grads) override {
    TORCH_CHECK(!at::GradMode::is_enabled(),
                "fastact.cross_entropy does not support double backward (create_graph=True); "
                "use torch.nn.functional.cross_entropy where second derivatives are needed");
    TORCH_CHECK(grad_input.defined(),
                "Trying to backward through the graph a second time (or directly access saved "
                "tensors after they have already been freed). Specify retain_graph=True if you need "
                "to backward through the graph a second time.");
    variable_list out(1);
    const at::Tensor& g = grads[0];
    if (!g.defined() || !should_compute_output(0)) return out;
    const bool traced = is_traced(g) || is_traced(grad_input);
    if (!traced && reduction != kReductionNone && is_concrete_one(g)) {
      out[0] = grad_input;  // released right after, so the next node may own it
      return out;
    }
    const at::Tensor scale = reduction == kReductionNone ? g.unsqueeze(-1) : g;
    if (traced || torch::autograd::get_current_graph_task_keep_graph()) {
      out[0] = grad_input * scale;
    } else {
      grad_input.mul_(scale);
      out[0] = std::move(grad_input);
    }
    return out;
  }
  std::string name() const override { return "FastactCrossEntropyBackward"; }
  void release_variables() override { grad_input.reset(); }
};

std::tuple<at::Tensor, at::Tensor> cross_entropy(const at::Tensor& input, const at::Tensor& target,
                                                 const std::optional<at::Tensor>& weight,
                                                 int64_t reduction, int64_t ignore_index,
                                                 double label_smoothing, bool compute_grad) {
  check_no_forward_ad("cross_entropy", input);
  TORCH_CHECK_NOT_IMPLEMENTED(!needs_grad(target),
                              "fastact.cross_entropy: gradients with respect to the target are not "
                              "implemented; detach the target or use torch.nn.functional.cross_entropy");
  TORCH_CHECK_NOT_IMPLEMENTED(!(weight.has_value() && weight->defined() && needs_grad(*weight)),
                              "fastact.cross_entropy: gradients with respect to weight are not implemented");
  const bool grad = needs_grad(input);
  TORCH_CHECK(!grad || compute_grad,
              "fastact::cross_entropy: input requires grad but compute_grad=False; its loss could "
              "not be differentiated");
  at::Tensor loss, grad_input;
  {
    // compute_grad passes through as given: a compiled forward calls the op
    // with autograd off and still needs the gradient for its backward graph.
    at::AutoDispatchBelowADInplaceOrView below;
    std::tie(loss, grad_input) =
        ops::cross_entropy(input, target, weight, reduction, ignore_index, label_smoothing, compute_grad);
  }
  if (grad) {
    auto node = make_node<CrossEntropyNode>(input);
    node->grad_input = grad_input;
    node->reduction = reduction;
    torch::autograd::set_history(loss, node);
  }
  return {loss, grad_input};
}

}  // namespace

TORCH_LIBRARY_IMPL(fastact, Autograd, m) {
  m.impl("cross_entropy", &cross_entropy);
}

}  // namespace fastact::autograd
