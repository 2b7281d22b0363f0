// fastact.optim's steps (the _sgd_step_ and _adam_step_ ops of op_list.h):
// their settings, the checks every kernel makes, and torch's per-parameter
// formulas as ATen calls (composite/optimizer.cpp), which the CPU kernel
// falls back to for what its loop does not take and which serve every other
// device.
//
// The goal is torch.equal with torch.optim's default implementation, the
// single-tensor loop (torch/optim/sgd.py _single_tensor_sgd, adam.py
// _single_tensor_adam): the same ops in the same order, each result rounded
// to the parameter's dtype, the scalars (bias corrections, step size)
// computed in double as Python computes them.
#pragma once
#include <ATen/core/Tensor.h>
#include <c10/util/ArrayRef.h>

namespace fastact::optimizer {

struct SgdOptions {
  double lr, weight_decay, momentum, dampening;
  bool nesterov, maximize, fresh_buffers;
};

struct AdamOptions {
  double lr, beta1, beta2, weight_decay, eps;
  bool amsgrad, maximize, decoupled_weight_decay;
};

// What one Adam step scales by, given the step count after its increment:
// torch's Python computes these in double, with libm's pow (x ** y).
struct AdamScalars {
  double step_size;              // lr / (1 - beta1^step)
  double bias_correction2_sqrt;  // (1 - beta2^step) ** 0.5
  double decoupled_decay;        // 1 - lr weight_decay (decoupled_decay below)
};
AdamScalars adam_scalars(const AdamOptions& options, double step);

// 1 - lr * weight_decay, AdamW's decay factor, rounded as Python rounds it:
// the product first (no fused multiply-add).
double decoupled_decay(const AdamOptions& options);

// out = sqrt(in) as torch's sqrt kernel computes it: MKL's vector sqrt
// (high-accuracy mode, within 1 ulp but not always correctly rounded) where
// torch has MKL, the correctly rounded sqrt elsewhere. in == out is allowed.
void sqrt_as_torch(const float* in, float* out, int64_t n);
void sqrt_as_torch(const double* in, double* out, int64_t n);

// step_t += 1 in its own dtype, then its value as Python's step_t.item() has it.
double increment_step(const at::Tensor& step);

// Whether torch's elementwise kernels round a * b + c once (an FMA): its
// AVX2 and AVX-512 kernels do (ATen's vec::fmadd, and the compiler
// contracting the scalar tails); its DEFAULT kernels on x86-64 round twice.
// Decided by torch's capability, not fastact's: the point is to match torch.
bool torch_fuses_multiply_add();

void check_sgd_lists(at::TensorList params, at::TensorList grads, at::TensorList momentum_buffers,
                     const SgdOptions& options);
void check_adam_lists(at::TensorList params, at::TensorList grads, at::TensorList exp_avgs,
                      at::TensorList exp_avg_sqs, at::TensorList max_exp_avg_sqs, at::TensorList state_steps,
                      const AdamOptions& options);

// torch's loop body for one parameter, op by op: any device, dtype (complex
// included) and layout. momentum_buffer / max_exp_avg_sq are undefined when
// momentum is 0 / without amsgrad.
void sgd_param(const at::Tensor& param, const at::Tensor& grad, const at::Tensor& momentum_buffer,
               const SgdOptions& options);
void adam_param(const at::Tensor& param, const at::Tensor& grad, const at::Tensor& exp_avg,
                const at::Tensor& exp_avg_sq, const at::Tensor& max_exp_avg_sq, const at::Tensor& step,
                const AdamOptions& options);

}  // namespace fastact::optimizer
