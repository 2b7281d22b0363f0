// CPU kernels of the optimizer steps: every parameter of a group in one
// call, each in one pass over its tensors (torch's default implementation
// makes 4 passes for SGD with momentum and about 10 for Adam, each an op
// dispatched from Python). The arithmetic is torch's op by op (see
// optimizer.h): each line below is one ATen kernel's vector formula, rounded
// to the dtype where that kernel stores its result. Parameters the loop does
// not take (half, bfloat16, complex, non-contiguous) go through the
// composite path, which is torch's loop in ATen calls.
#include "cpu/vec_io.h"
#include "cpu_shared/capability.h"
#include "optimizer.h"

#include <ATen/Dispatch.h>

#include <cmath>

namespace fastact::cpu::CPU_CAPABILITY {
namespace {

using optimizer::AdamOptions;
using optimizer::SgdOptions;

// a * b + c as torch's kernels compute it: rounded once (kFused) or twice.
template <bool kFused, typename T>
C10_ALWAYS_INLINE Vectorized<T> madd(const Vectorized<T>& a, const Vectorized<T>& b, const Vectorized<T>& c) {
  if constexpr (!kFused) {
    return a * b + c;
  } else {
#if defined(__FMA__)
    return at::vec::fmadd(a, b, c);
#else
    // This copy has no FMA instructions but torch's kernels use them
    // (FASTACT_CPU_CAPABILITY set below torch's): round once all the same.
    constexpr int64_t kSize = Vectorized<T>::size();
    alignas(64) T x[kSize], y[kSize], z[kSize];
    a.store(x);
    b.store(y);
    c.store(z);
    for (int64_t i = 0; i < kSize; ++i) x[i] = std::fma(x[i], y[i], z[i]);
    return Vectorized<T>::loadu(x);
#endif
  }
}

// Calls body(i, n) for the vectors of [begin, end): full ones (n a constant,
// so loads and stores are unmasked), then the last, partial one.
template <typename T, typename Body>
C10_ALWAYS_INLINE void for_each_vector(int64_t begin, int64_t end, const Body& body) {
  constexpr int64_t kSize = Vectorized<T>::size();
  int64_t i = begin;
  for (; i + kSize <= end; i += kSize) body(i, kSize);
  if (i < end) body(i, end - i);
}

// The loop takes a parameter when every tensor of it is a contiguous CPU
// float or double tensor of the parameter's shape and dtype.
bool loop_takes(const at::Tensor& param, std::initializer_list<const at::Tensor*> others) {
  if (!param.device().is_cpu() || param.layout() != at::kStrided || !param.is_contiguous()) return false;
  if (param.scalar_type() != at::kFloat && param.scalar_type() != at::kDouble) return false;
  for (const at::Tensor* t : others) {
    if (!t->defined()) continue;
    if (t->layout() != at::kStrided || !t->is_contiguous() || t->scalar_type() != param.scalar_type() ||
        !t->device().is_cpu() || t->sizes() != param.sizes()) {
      return false;
    }
  }
  return true;
}

// Runs span(begin, end) over n elements, split across threads when large.
template <typename Span>
void for_each_span(int64_t n, const Span& span) {
  if (n < kSerialGrain) {
    span(0, n);
  } else {
    at::parallel_for(0, n, kSerialGrain, span);
  }
}

// torch: grad = -grad (maximize); grad = grad.add(param, alpha=wd);
// buf.mul_(momentum).add_(grad, alpha=1 - dampening) (or buf = grad, fresh);
// grad = grad.add(buf, alpha=momentum) (nesterov) or buf;
// param.add_(grad, alpha=-lr). add with alpha is fmadd(other, alpha, self).
template <bool kFused, typename T>
void sgd_span(T* param, const T* grad, T* buf, int64_t begin, int64_t end, const SgdOptions& o) {
  using Vec = Vectorized<T>;
  const Vec weight_decay(T(o.weight_decay)), momentum(T(o.momentum)), keep(T(1 - o.dampening)), neg_lr(T(-o.lr));
  for_each_vector<T>(begin, end, [&](int64_t i, int64_t n) {
    const Vec p = Vec::loadu(param + i, n);
    Vec g = Vec::loadu(grad + i, n);
    if (o.maximize) g = g.neg();
    if (o.weight_decay != 0) g = madd<kFused>(p, weight_decay, g);
    if (o.momentum != 0) {
      const Vec b = o.fresh_buffers ? g : madd<kFused>(g, keep, Vec::loadu(buf + i, n) * momentum);
      b.store(buf + i, n);
      g = o.nesterov ? madd<kFused>(b, momentum, g) : b;
    }
    madd<kFused>(g, neg_lr, p).store(param + i, n);
  });
}

// torch: grad = -grad (maximize); param.mul_(1 - lr wd) (decoupled) or
// grad = grad.add(param, alpha=wd); exp_avg.lerp_(grad, 1 - beta1);
// exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2);
// torch.maximum(max_exp_avg_sq, exp_avg_sq, out=max_exp_avg_sq) (amsgrad);
// denom = (sqrt(v) / bias_correction2_sqrt).add_(eps);
// param.addcdiv_(exp_avg, denom, value=-step_size).
// lerp is ATen's vector form: fmadd(w, end - self, self) for |w| < 0.5,
// else fmadd(w - 1, end - self, end); addcmul is self + value * a * b and
// addcdiv self + value * a / b, as written. The sqrt must be torch's (MKL's,
// see optimizer.h), a call over an array: so each block of the tensors is
// done in two passes around it, the block small enough to stay in L1. The
// call also keeps the compiler from fusing the decayed parameter's
// rounding into the last update.
template <bool kFused, typename T>
void adam_span(T* param, const T* grad, T* exp_avg, T* exp_avg_sq, T* max_exp_avg_sq, int64_t begin, int64_t end,
               const AdamOptions& o, const optimizer::AdamScalars& s) {
  using Vec = Vectorized<T>;
  constexpr int64_t kBlock = 256;
  alignas(64) T root[kBlock];
  const T weight1 = T(1 - o.beta1);
  const bool small_weight = std::abs(weight1) < T(0.5);
  const Vec lerp_coeff = small_weight ? Vec(weight1) : Vec(weight1) - Vec(T(1));
  const Vec weight_decay(T(o.weight_decay)), decay(T(s.decoupled_decay)), beta2(T(o.beta2)),
      weight2(T(1 - o.beta2)), bias_correction2_sqrt(T(s.bias_correction2_sqrt)), eps(T(o.eps)),
      neg_step_size(T(-s.step_size));
  for (int64_t block = begin; block < end; block += kBlock) {
    const int64_t block_end = std::min(end, block + kBlock);
    for_each_vector<T>(block, block_end, [&](int64_t i, int64_t n) {
      Vec g = Vec::loadu(grad + i, n);
      if (o.maximize) g = g.neg();
      if (o.weight_decay != 0) {
        const Vec p = Vec::loadu(param + i, n);
        if (o.decoupled_weight_decay) {
          (p * decay).store(param + i, n);
        } else {
          g = madd<kFused>(p, weight_decay, g);
        }
      }
      const Vec m_old = Vec::loadu(exp_avg + i, n);
      madd<kFused>(lerp_coeff, g - m_old, small_weight ? m_old : g).store(exp_avg + i, n);
      Vec v = madd<kFused>(weight2 * g, g, Vec::loadu(exp_avg_sq + i, n) * beta2);
      v.store(exp_avg_sq + i, n);
      if (o.amsgrad) {
        v = at::vec::maximum(Vec::loadu(max_exp_avg_sq + i, n), v);
        v.store(max_exp_avg_sq + i, n);
      }
      v.store(root + (i - block), n);
    });
    optimizer::sqrt_as_torch(root, root, block_end - block);
    for_each_vector<T>(block, block_end, [&](int64_t i, int64_t n) {
      const Vec denom = Vec::loadu(root + (i - block), n) / bias_correction2_sqrt + eps;
      const Vec p = Vec::loadu(param + i, n);
      (p + neg_step_size * Vec::loadu(exp_avg + i, n) / denom).store(param + i, n);
    });
  }
}

void sgd_step(at::TensorList params, at::TensorList grads, at::TensorList momentum_buffers, double lr,
              double weight_decay, double momentum, double dampening, bool nesterov, bool maximize,
              bool fresh_buffers) {
  const SgdOptions o{lr, weight_decay, momentum, dampening, nesterov, maximize, fresh_buffers};
  optimizer::check_sgd_lists(params, grads, momentum_buffers, o);
  const bool fused = optimizer::torch_fuses_multiply_add();
  for (size_t i = 0; i < params.size(); ++i) {
    const at::Tensor& param = params[i];
    const at::Tensor& grad = grads[i];
    const at::Tensor buf = momentum != 0 ? momentum_buffers[i] : at::Tensor();
    if (!loop_takes(param, {&grad, &buf})) {
      optimizer::sgd_param(param, grad, buf, o);
      continue;
    }
    AT_DISPATCH_FLOATING_TYPES(param.scalar_type(), "fastact::_sgd_step_", [&] {
      scalar_t* p = param.mutable_data_ptr<scalar_t>();
      const scalar_t* g = grad.const_data_ptr<scalar_t>();
      scalar_t* b = buf.defined() ? buf.mutable_data_ptr<scalar_t>() : nullptr;
      for_each_span(param.numel(), [&](int64_t begin, int64_t end) {
        fused ? sgd_span<true>(p, g, b, begin, end, o) : sgd_span<false>(p, g, b, begin, end, o);
      });
    });
  }
}

void adam_step(at::TensorList params, at::TensorList grads, at::TensorList exp_avgs, at::TensorList exp_avg_sqs,
               at::TensorList max_exp_avg_sqs, at::TensorList state_steps, double lr, double beta1, double beta2,
               double weight_decay, double eps, bool amsgrad, bool maximize, bool decoupled_weight_decay) {
  const AdamOptions o{lr, beta1, beta2, weight_decay, eps, amsgrad, maximize, decoupled_weight_decay};
  optimizer::check_adam_lists(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs, state_steps, o);
  const bool fused = optimizer::torch_fuses_multiply_add();
  for (size_t i = 0; i < params.size(); ++i) {
    const at::Tensor& param = params[i];
    const at::Tensor& grad = grads[i];
    const at::Tensor max_sq = amsgrad ? max_exp_avg_sqs[i] : at::Tensor();
    if (!loop_takes(param, {&grad, &exp_avgs[i], &exp_avg_sqs[i], &max_sq})) {
      optimizer::adam_param(param, grad, exp_avgs[i], exp_avg_sqs[i], max_sq, state_steps[i], o);
      continue;
    }
    const optimizer::AdamScalars s = optimizer::adam_scalars(o, optimizer::increment_step(state_steps[i]));
    AT_DISPATCH_FLOATING_TYPES(param.scalar_type(), "fastact::_adam_step_", [&] {
      scalar_t* p = param.mutable_data_ptr<scalar_t>();
      const scalar_t* g = grad.const_data_ptr<scalar_t>();
      scalar_t* m = exp_avgs[i].mutable_data_ptr<scalar_t>();
      scalar_t* v = exp_avg_sqs[i].mutable_data_ptr<scalar_t>();
      scalar_t* vmax = amsgrad ? max_sq.mutable_data_ptr<scalar_t>() : nullptr;
      for_each_span(param.numel(), [&](int64_t begin, int64_t end) {
        fused ? adam_span<true>(p, g, m, v, vmax, begin, end, o, s)
              : adam_span<false>(p, g, m, v, vmax, begin, end, o, s);
      });
    });
  }
}

}  // namespace

void register_optimizer(CpuKernels& kernels) {
  kernels._sgd_step_ = &sgd_step;
  kernels._adam_step_ = &adam_step;
}

}  // namespace fastact::cpu::CPU_CAPABILITY
