// Autograd for the fused losses (cross_entropy, binary_cross_entropy_with_logits).
// The forward op has already written d loss / d input for an incoming
// gradient of 1 (scaled for the reduction); one node keeps that tensor, and
// nothing else, for backward:
//  - the last backward through the node (graph not retained) and the node
//    the tensor's only owner: it is handed out as it is when the incoming
//    gradient is exactly 1 (a scalar loss, read on the CPU without any device
//    sync; on CUDA the scaling kernel makes the same test on the device), and
//    scaled in place otherwise: no second R x C buffer;
//  - otherwise (graph retained, the op's second output still held by a
//    caller, or the call being traced by torch.compile) a fresh scaled copy:
//    memory the node may hand out again, or that someone else can see, is
//    never handed out or written.
// The Python layer drops the op's second output, so the node is normally
// the only owner.
#include "autograd/fused_loss.h"
#include "constants.h"

#include <ATen/TensorOperators.h>
#include <ATen/ops/mul.h>
#include <torch/csrc/autograd/graph_task.h>

namespace fastact::autograd {
namespace {

using torch::autograd::variable_list;

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

// No other tensor (the op's second output, a view of it) shares t's memory.
// torch's own test for a gradient it may steal: a Python wrapper kept alive
// only by the tensor itself does not count as another owner.
bool owned_alone(const at::Tensor& t) {
  return torch::autograd::impl::is_tensor_stealable(t, 1) && t.storage().use_count() == 1;
}

struct FusedLossNode final : torch::autograd::Node {
  at::Tensor grad_input;
  int64_t reduction = 0;
  const char* loss_name = "";

  variable_list apply(variable_list&& grads) override {
    TORCH_CHECK(!at::GradMode::is_enabled(), "fastact.", loss_name,
                " does not support double backward (create_graph=True); use torch.nn.functional.", loss_name,
                " where second derivatives are needed");
    TORCH_CHECK(grad_input.defined(),
                "Trying to backward through the graph a second time (or directly access saved "
                "tensors after they have already been freed). Specify retain_graph=True if you need "
                "to backward through the graph a second time.");
    variable_list out(1);
    const at::Tensor& g = grads[0];
    if (!g.defined() || !should_compute_output(0)) return out;
    const bool traced = is_traced(g) || is_traced(grad_input);
    // 'none': one gradient per loss element (cross entropy's losses lack the class dim)
    const at::Tensor scale = g.dim() < grad_input.dim() ? g.unsqueeze(-1) : g;
    if (traced || torch::autograd::get_current_graph_task_keep_graph() || !owned_alone(grad_input)) {
      out[0] = grad_input * scale;
      return out;
    }
    if (reduction != kNone && is_concrete_one(g)) {
      // no pass at all
    } else if (reduction != kNone && g.numel() == 1 && g.scalar_type() == grad_input.scalar_type() &&
               g.device() == grad_input.device()) {
      // A reduced loss's gradient: _scale_grad_, which on CUDA decides on the
      // device to skip the pass when g is 1 (no .item(), no sync).
      ops::_scale_grad_(grad_input, g);
    } else {
      grad_input.mul_(scale);
    }
    out[0] = std::move(grad_input);  // the node lets go of it: the next node may own it
    return out;
  }
  std::string name() const override {
    return std::string(loss_name) == "cross_entropy" ? "FastactCrossEntropyBackward"
                                                     : "FastactBinaryCrossEntropyWithLogitsBackward";
  }
  void release_variables() override { grad_input.reset(); }
};

// Checks what the fused losses cannot differentiate, runs the op below
// autograd, and records the node that keeps its gradient.
}  // namespace

bool defined_and_needs_grad(const std::optional<at::Tensor>& t) {
  return t.has_value() && t->defined() && needs_grad(*t);
}

TensorPair fused_loss(const char* name, const at::Tensor& input, const at::Tensor& target, bool extras_need_grad,
                      int64_t reduction, bool compute_grad, c10::function_ref<TensorPair()> run_op) {
  check_no_forward_ad(name, input);
  TORCH_CHECK_NOT_IMPLEMENTED(!needs_grad(target), "fastact.", name,
                              ": gradients with respect to the target are not implemented; detach the "
                              "target or use torch.nn.functional.", name);
  TORCH_CHECK_NOT_IMPLEMENTED(!extras_need_grad, "fastact.", name,
                              ": gradients with respect to weight or pos_weight are not implemented");
  const bool grad = needs_grad(input);
  TORCH_CHECK(!grad || compute_grad, "fastact::", name,
              ": input requires grad but compute_grad=False; its loss could not be differentiated");
  at::Tensor loss, grad_input;
  {
    // compute_grad passes through as given: a compiled forward calls the op
    // with autograd off and still needs the gradient for its backward graph.
    at::AutoDispatchBelowADInplaceOrView below;
    std::tie(loss, grad_input) = run_op();
  }
  if (grad) {
    auto node = make_node<FusedLossNode>(input);
    node->grad_input = grad_input;
    node->reduction = reduction;
    node->loss_name = name;
    torch::autograd::set_history(loss, node);
  }
  return {loss, grad_input};
}

}  // namespace fastact::autograd
