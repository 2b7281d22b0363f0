// The optimizer steps under autograd: never recorded (torch steps under
// no_grad), but every tensor they write gets its version bumped, as torch's
// in-place ops bump it, so a graph that saved a parameter before the step
// refuses to backward through the stale value.
#include "autograd/autograd.h"

#include <torch/library.h>

namespace fastact::autograd {
namespace {

void bump_versions(std::initializer_list<at::TensorList> lists) {
  for (at::TensorList list : lists) {
    for (const at::Tensor& t : list) {
      if (t.defined() && !t.is_inference()) torch::autograd::increment_version(t);
    }
  }
}

void sgd_step(at::TensorList params, at::TensorList grads, at::TensorList momentum_buffers, double lr,
              double weight_decay, double momentum, double dampening, bool nesterov, bool maximize,
              bool fresh_buffers) {
  bump_versions({params, momentum_buffers});
  at::AutoDispatchBelowADInplaceOrView below;
  ops::_sgd_step_(params, grads, momentum_buffers, lr, weight_decay, momentum, dampening, nesterov, maximize,
                  fresh_buffers);
}

void adam_step(at::TensorList params, at::TensorList grads, at::TensorList exp_avgs, at::TensorList exp_avg_sqs,
               at::TensorList max_exp_avg_sqs, at::TensorList state_steps, double lr, double beta1, double beta2,
               double weight_decay, double eps, bool amsgrad, bool maximize, bool decoupled_weight_decay) {
  bump_versions({params, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, state_steps});
  at::AutoDispatchBelowADInplaceOrView below;
  ops::_adam_step_(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, state_steps, lr, beta1, beta2,
                   weight_decay, eps, amsgrad, maximize, decoupled_weight_decay);
}

}  // namespace

TORCH_LIBRARY_IMPL(fastact, Autograd, m) {
  m.impl("_sgd_step_", &sgd_step);
  m.impl("_adam_step_", &adam_step);
}

}  // namespace fastact::autograd
