// Autograd for the fused losses (cross_entropy, binary_cross_entropy_with_logits).
// The forward op has already written d loss / d input for an incoming
// gradient of 1 (scaled for the reduction); one node keeps that tensor for
// backward (and references to the call's tensors, for the cases below):
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
//
// What the fused path cannot serve goes to ATen:
//  - a backward that is itself recorded (create_graph, every torch.func
//    transform's vjp) or that carries tangents: the node also keeps the
//    input (a reference: the logits are alive at the loss's forward anyway;
//    now they live on until its backward) and writes the gradient with
//    differentiable ATen ops from it, so double backward, jacrev(jacrev)
//    and forward-over-reverse hessians work;
//  - a tangent on the input (jvp, jacfwd): the fused forward, and the
//    tangent <d loss / d input, t> from that ATen gradient (differentiable
//    again, for reverse-over-forward and nested transforms);
//  - a target, weight or pos_weight that needs a gradient or carries a
//    tangent: torch's own loss, whose autograd covers every argument.
// The op's second output is not differentiable: only this node reads it.
#include "autograd/fused_loss.h"
#include "constants.h"

#include <ATen/TensorOperators.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/mul.h>
#include <torch/csrc/autograd/graph_task.h>

namespace fastact::autograd {
namespace {

using torch::autograd::variable_list;

// A tensor seen by torch.compile / torch.export tracing (fake or functional)
// or by a torch.func transform (a batched or wrapped tensor): no values to
// read (.item() has no batching rule), and no in-place tricks on it.
bool is_traced_or_transformed(const at::Tensor& t) {
  static const auto traced = c10::DispatchKeySet({c10::DispatchKey::Python, c10::DispatchKey::Functionalize,
                                                  c10::DispatchKey::PythonTLSSnapshot,
                                                  c10::DispatchKey::FuncTorchBatched,
                                                  c10::DispatchKey::FuncTorchGradWrapper});
  return t.key_set().has_any(traced);
}

// A plain CPU scalar holding exactly 1 (read from host memory: no device sync).
bool is_concrete_one(const at::Tensor& g) {
  return g.numel() == 1 && g.device().is_cpu() && g.layout() == at::kStrided && g.item<double>() == 1.0;
}

// No other tensor (the op's second output, a view of it) shares t's memory.
// torch's own test for a gradient it may steal: a Python wrapper kept alive
// only by the tensor itself does not count as another owner.
bool owned_alone(const at::Tensor& t) {
  return torch::autograd::impl::is_tensor_stealable(t, 1) && t.storage().use_count() == 1;
}

// A tensor of the call that the node keeps for a recorded backward only.
// A plain reference, not a SavedVariable: saved-tensor hooks (offloading,
// checkpointing) would run on every call for a tensor the plain path never
// reads; the version check a SavedVariable makes is made here.
struct KeptTensor {
  at::Tensor tensor;
  int64_t version = 0;

  KeptTensor() = default;
  explicit KeptTensor(const std::optional<at::Tensor>& t)
      : tensor(t.has_value() ? *t : at::Tensor()), version(tensor.defined() ? tensor._version() : 0) {}

  at::Tensor get() const {
    TORCH_CHECK(!tensor.defined() || tensor._version() == version,
                "one of the variables needed for gradient computation has been modified by an inplace "
                "operation: [", tensor.toString(), " ", tensor.sizes(), "] is at version ", tensor._version(),
                "; expected version ", version, " instead.");
    return tensor;
  }
  std::optional<at::Tensor> get_optional() const {
    return tensor.defined() ? std::optional<at::Tensor>(get()) : std::nullopt;
  }
};

// 'none': one gradient per loss element (cross entropy's losses lack the class dim)
at::Tensor per_element(const at::Tensor& g, const at::Tensor& grad_input) {
  return g.dim() < grad_input.dim() ? g.unsqueeze(-1) : g;
}

struct FusedLossNode final : torch::autograd::Node {
  const FusedLoss* loss = nullptr;
  at::Tensor grad_input;
  KeptTensor input, target, weight, pos_weight;     // for the differentiable gradient only
  LossArgs args;                                    // its scalars (the tensors are saved above)

  variable_list apply(variable_list&& grads) override {
    TORCH_CHECK(grad_input.defined(),
                "Trying to backward through the graph a second time (or directly access saved "
                "tensors after they have already been freed). Specify retain_graph=True if you need "
                "to backward through the graph a second time.");
    variable_list out(1);
    const at::Tensor& g = grads[0];
    if (!g.defined() || !should_compute_output(0)) return out;
    if (at::GradMode::is_enabled() || has_tangent(g)) {
      // recorded (create_graph, torch.func) or carrying tangents: ATen's differentiable gradient
      LossArgs a = args;
      a.target = target.get();
      a.weight = weight.get_optional();
      a.pos_weight = pos_weight.get_optional();
      const at::Tensor d = loss->differentiable_grad(input.get(), a);
      out[0] = d * per_element(g, d);
      return out;
    }
    const at::Tensor scale = per_element(g, grad_input);
    if (is_traced_or_transformed(g) || is_traced_or_transformed(grad_input) || torch::autograd::get_current_graph_task_keep_graph() ||
        !owned_alone(grad_input)) {
      out[0] = grad_input * scale;
      return out;
    }
    if (args.reduction != kNone && is_concrete_one(g)) {
      // no pass at all
    } else if (args.reduction != kNone && g.numel() == 1 && g.scalar_type() == grad_input.scalar_type() &&
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
  std::string name() const override { return loss->node_name; }
  void release_variables() override {
    grad_input.reset();
    input = target = weight = pos_weight = KeptTensor();
  }
};

bool needs_grad_or_tangent(const std::optional<at::Tensor>& t) {
  return t.has_value() && t->defined() && (needs_grad(*t) || has_tangent(*t));
}

}  // namespace

TensorPair fused_loss(const FusedLoss& loss, const at::Tensor& input, const LossArgs& args, bool compute_grad) {
  const bool grad = needs_grad(input);
  TORCH_CHECK(!grad || compute_grad, "fastact::", loss.name,
              ": input requires grad but compute_grad=False; its loss could not be differentiated");
  if (needs_grad_or_tangent(args.target) || needs_grad_or_tangent(args.weight) ||
      needs_grad_or_tangent(args.pos_weight)) {
    // torch's loss, recorded by ATen. The op's gradient output keeps its
    // contract (asked for: written; else empty), though no node reads it here.
    at::Tensor grad_input = at::empty({0}, input.options());
    if (compute_grad) {
      at::AutoDispatchBelowADInplaceOrView below;
      grad_input = std::get<1>(loss.op(input, args, true));
    }
    return {loss.torch_loss(input, args), grad_input};
  }
  at::Tensor value, grad_input;
  {
    // compute_grad passes through as given: a compiled forward calls the op
    // with autograd off and still needs the gradient for its backward graph.
    at::AutoDispatchBelowADInplaceOrView below;
    std::tie(value, grad_input) = loss.op(input, args, compute_grad);
  }
  if (grad) {
    auto node = make_node<FusedLossNode>(input);
    node->loss = &loss;
    node->grad_input = grad_input;
    node->args = args;
    node->args.target = at::Tensor();
    node->args.weight = node->args.pos_weight = std::nullopt;
    torch::autograd::set_history(value, node);
    node->input = KeptTensor(input);
    node->target = KeptTensor(args.target);
    node->weight = KeptTensor(args.weight);
    node->pos_weight = KeptTensor(args.pos_weight);
  }
  if (has_tangent(input)) {
    const at::Tensor d = loss.differentiable_grad(primal(input), args) * tangent(input);
    set_tangent(value, args.reduction != kNone ? d.sum() : d.dim() > value.dim() ? d.sum(-1) : d);
  }
  return {value, grad_input};
}

}  // namespace fastact::autograd
