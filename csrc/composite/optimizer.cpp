// The optimizer steps as torch's single-tensor loops write them, one ATen
// call per line of torch/optim/sgd.py and adam.py: the reference the CPU
// kernel must equal, its fallback (reduced precision, strided or sparse
// tensors), and the kernel of every other device. As
// CompositeExplicitAutograd they serve CUDA, sparse tensors and Meta.
#include "optimizer.h"

#include <ATen/ATen.h>
#include <ATen/ScalarOps.h>
#include <ATen/Version.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>

// MKL's vector sqrt, exported by libtorch_cpu where torch was built with
// MKL (ATen/cpu/vml.h calls it for every float and double sqrt). Weak: a
// torch without MKL leaves them null. Sizes and modes are passed as 64-bit
// values, which serve MKL's LP64 and ILP64 interfaces alike.
extern "C" {
__attribute__((weak)) void vmsSqrt(int64_t n, const float* a, float* r, int64_t mode);
__attribute__((weak)) void vmdSqrt(int64_t n, const double* a, double* r, int64_t mode);
}

namespace fastact::optimizer {
namespace {

// ATen's mode: VML_HA | VML_FTZDAZ_OFF | VML_ERRMODE_IGNORE (mkl_vml_defines.h).
constexpr int64_t kTorchVmlMode = 0x2 | 0x140000 | 0x100;
// MKL_INT may be 32-bit: calls stay below its range, as ATen's do.
constexpr int64_t kVmlChunk = int64_t(1) << 30;

template <typename T, typename Mkl>
void sqrt_with(Mkl mkl, const T* in, T* out, int64_t n) {
  for (int64_t begin = 0; begin < n; begin += kVmlChunk) {
    const int64_t size = std::min(kVmlChunk, n - begin);
    if (mkl) {
      mkl(size, in + begin, out + begin, kTorchVmlMode);
    } else {
      for (int64_t i = begin; i < begin + size; ++i) out[i] = std::sqrt(in[i]);
    }
  }
}

}  // namespace

void sqrt_as_torch(const float* in, float* out, int64_t n) { sqrt_with(&vmsSqrt, in, out, n); }
void sqrt_as_torch(const double* in, double* out, int64_t n) { sqrt_with(&vmdSqrt, in, out, n); }

double decoupled_decay(const AdamOptions& o) {
  // Stored, so no compiler fuses it into the subtraction as one rounding.
  volatile double product = o.lr * o.weight_decay;
  return 1 - product;
}

AdamScalars adam_scalars(const AdamOptions& o, double step) {
  const double bias_correction1 = 1 - std::pow(o.beta1, step);
  const double bias_correction2 = 1 - std::pow(o.beta2, step);
  return {o.lr / bias_correction1, std::pow(bias_correction2, 0.5), decoupled_decay(o)};
}

double increment_step(const at::Tensor& step) {
  // A CPU count (torch keeps it there unless capturable or fused) is bumped
  // in place: an add_ through the dispatcher would cost more than the step.
  if (step.device().is_cpu() && step.numel() == 1 && step.layout() == at::kStrided) {
    if (step.scalar_type() == at::kFloat) return *step.mutable_data_ptr<float>() += 1.0f;
    if (step.scalar_type() == at::kDouble) return *step.mutable_data_ptr<double>() += 1.0;
  }
  step.add_(1);
  return step.item<double>();
}

bool torch_fuses_multiply_add() {
#if defined(__x86_64__) || defined(_M_X64)
  static const bool fuses = at::get_cpu_capability() != "DEFAULT";
  return fuses;
#else
  return true;  // other CPUs' compilers contract a * b + c by default
#endif
}

namespace {

void check_parallel(const char* op, const char* what, at::TensorList list, size_t expected) {
  TORCH_CHECK(list.size() == expected, op, ": expected ", expected, " ", what, " (one per parameter), got ",
              list.size());
}

}  // namespace

void check_sgd_lists(at::TensorList params, at::TensorList grads, at::TensorList momentum_buffers,
                     const SgdOptions& o) {
  check_parallel("fastact::_sgd_step_", "gradients", grads, params.size());
  check_parallel("fastact::_sgd_step_", "momentum buffers", momentum_buffers, o.momentum != 0 ? params.size() : 0);
}

void check_adam_lists(at::TensorList params, at::TensorList grads, at::TensorList exp_avgs,
                      at::TensorList exp_avg_sqs, at::TensorList max_exp_avg_sqs, at::TensorList state_steps,
                      const AdamOptions& o) {
  const char* op = "fastact::_adam_step_";
  check_parallel(op, "gradients", grads, params.size());
  check_parallel(op, "exp_avgs", exp_avgs, params.size());
  check_parallel(op, "exp_avg_sqs", exp_avg_sqs, params.size());
  check_parallel(op, "max_exp_avg_sqs", max_exp_avg_sqs, o.amsgrad ? params.size() : 0);
  check_parallel(op, "state_steps", state_steps, params.size());
}

namespace {

// A Python number as torch's Python calls pass it to `tensor.mul_(x)`, `/`
// and `.add_(x)`: a wrapped-number tensor, which half and bfloat16 kernels
// apply in float (the Scalar overloads round it to the tensor's dtype first).
at::Tensor number(double x) { return at::native::wrapped_scalar_tensor(x); }

}  // namespace

void sgd_param(const at::Tensor& param, const at::Tensor& grad_in, const at::Tensor& buf, const SgdOptions& o) {
  at::Tensor grad = o.maximize ? grad_in.neg() : grad_in;
  if (o.weight_decay != 0) grad = grad.add(param, o.weight_decay);
  if (o.momentum != 0) {
    if (o.fresh_buffers) {
      buf.copy_(grad);  // torch: buf = grad.detach().clone()
    } else {
      buf.mul_(number(o.momentum)).add_(grad, 1 - o.dampening);
    }
    grad = o.nesterov ? grad.add(buf, o.momentum) : buf;
  }
  param.add_(grad, -o.lr);
}

void adam_param(const at::Tensor& param_in, const at::Tensor& grad_in, const at::Tensor& exp_avg_in,
                const at::Tensor& exp_avg_sq_in, const at::Tensor& max_exp_avg_sq_in, const at::Tensor& step_t,
                const AdamOptions& o) {
  at::Tensor grad = o.maximize ? grad_in.neg() : grad_in;
  const double step = increment_step(step_t);
  if (o.weight_decay != 0) {
    if (o.decoupled_weight_decay) {
      param_in.mul_(number(decoupled_decay(o)));
    } else {
      grad = grad.add(param_in, o.weight_decay);
    }
  }
  at::Tensor param = param_in, exp_avg = exp_avg_in, exp_avg_sq = exp_avg_sq_in, max_exp_avg_sq = max_exp_avg_sq_in;
  if (param.is_complex()) {
    grad = at::view_as_real(grad);
    exp_avg = at::view_as_real(exp_avg);
    exp_avg_sq = at::view_as_real(exp_avg_sq);
    if (o.amsgrad) max_exp_avg_sq = at::view_as_real(max_exp_avg_sq);
    param = at::view_as_real(param);
  }
  exp_avg.lerp_(grad, 1 - o.beta1);
  exp_avg_sq.mul_(number(o.beta2)).addcmul_(grad, grad, 1 - o.beta2);
  const AdamScalars s = adam_scalars(o, step);
  at::Tensor denom;
  if (o.amsgrad) {
    at::maximum_out(max_exp_avg_sq, max_exp_avg_sq, exp_avg_sq);
    denom = max_exp_avg_sq.sqrt().div(number(s.bias_correction2_sqrt)).add_(number(o.eps));
  } else {
    denom = exp_avg_sq.sqrt().div(number(s.bias_correction2_sqrt)).add_(number(o.eps));
  }
  param.addcdiv_(exp_avg, denom, -s.step_size);
}

namespace {

void sgd_step(at::TensorList params, at::TensorList grads, at::TensorList momentum_buffers, double lr,
              double weight_decay, double momentum, double dampening, bool nesterov, bool maximize,
              bool fresh_buffers) {
  const SgdOptions o{lr, weight_decay, momentum, dampening, nesterov, maximize, fresh_buffers};
  check_sgd_lists(params, grads, momentum_buffers, o);
  for (size_t i = 0; i < params.size(); ++i) {
    sgd_param(params[i], grads[i], momentum != 0 ? momentum_buffers[i] : at::Tensor(), o);
  }
}

void adam_step(at::TensorList params, at::TensorList grads, at::TensorList exp_avgs, at::TensorList exp_avg_sqs,
               at::TensorList max_exp_avg_sqs, at::TensorList state_steps, double lr, double beta1, double beta2,
               double weight_decay, double eps, bool amsgrad, bool maximize, bool decoupled_weight_decay) {
  const AdamOptions o{lr, beta1, beta2, weight_decay, eps, amsgrad, maximize, decoupled_weight_decay};
  check_adam_lists(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, state_steps, o);
  for (size_t i = 0; i < params.size(); ++i) {
    adam_param(params[i], grads[i], exp_avgs[i], exp_avg_sqs[i], amsgrad ? max_exp_avg_sqs[i] : at::Tensor(),
               state_steps[i], o);
  }
}

}  // namespace

TORCH_LIBRARY_IMPL(fastact, CompositeExplicitAutograd, m) {
  m.impl("_sgd_step_", &sgd_step);
  m.impl("_adam_step_", &adam_step);
}

}  // namespace fastact::optimizer
