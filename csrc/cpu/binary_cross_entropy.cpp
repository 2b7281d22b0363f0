// CPU kernel for the fused binary cross entropy with logits.
//
// Per element, with lw = 1 + (pw - 1) t (pw: pos_weight, 1 without):
//   loss = w ((1 - t) x + lw (log1p(exp(-|x|)) + max(-x, 0)))
//   dloss/dx = w (lw sigmoid(x) - pw t)
// as torch defines it; log1p(exp(-|x|)) + max(-x, 0) is softplus(-x) without
// overflow. The gradient (scaled by 1 / numel for 'mean') is written in the
// same pass, only when asked. Inputs arrive expanded to the input's shape.
#include "checks.h"
#include "cpu_shared/capability.h"
#include "cpu_shared/output_allocator.h"
#include "cpu/vec_io.h"

#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/fill.h>

#include <optional>

namespace fastact::cpu::CPU_CAPABILITY {
namespace {

template <typename T>
double bce_with_logits_span(const T* x, const T* t, const T* w, const T* pw, int64_t begin, int64_t end,
                            acc_t<T> grad_scale, T* loss, T* grad) {
  using IO = VecIO<T>;
  using Vec = typename IO::Vec;
  using Acc = acc_t<T>;
  const Vec zero(0), one(1);
  // Partial sums stay in vectors over blocks, then go to double.
  constexpr int64_t kBlock = 4096;
  double total = 0;
  for (int64_t b = begin; b < end; b += kBlock) {
    const int64_t block_end = std::min(end, b + kBlock);
    Vec acc(0);
    for (int64_t i = b; i < block_end; i += IO::kStep) {
      const int64_t n = std::min<int64_t>(IO::kStep, block_end - i);
      const Vec xv = IO::load(x + i, n), tv = IO::load(t + i, n);
      const Vec pwv = pw ? IO::load(pw + i, n) : one;
      const Vec lw = one + (pwv - one) * tv;
      const Vec e = vec_exp(zero - xv.abs());
      const Vec softplus_neg = vec_log1p_unit(e) + at::vec::clamp_min(zero - xv, zero);
      Vec l = (one - tv) * xv + lw * softplus_neg;
      const Vec wv = w ? IO::load(w + i, n) : one;
      if (w) l = l * wv;
      if (loss) IO::store(loss + i, l, n);
      acc = Vec::set(acc, acc + l, n);
      if (grad) {
        // sigmoid(x) from the same e = exp(-|x|): 1 / (1 + e), or e / (1 + e) for x < 0
        const Vec r = one / (one + e);
        const Vec sig = Vec::blendv(r, e * r, xv < zero);
        IO::store(grad + i, (lw * sig - pwv * tv) * wv * Vec(grad_scale), n);
      }
    }
    total += at::vec::vec_reduce_all<Acc>(vec_add<Vec>, acc);
  }
  return total;
}

std::tuple<at::Tensor, at::Tensor> binary_cross_entropy_with_logits(
    const at::Tensor& input, const at::Tensor& target, const std::optional<at::Tensor>& weight_opt,
    const std::optional<at::Tensor>& pos_weight_opt, int64_t reduction, bool compute_grad) {
  check_binary_cross_entropy(input, target, reduction);
  const at::Tensor w = binary_cross_entropy_extra(input, weight_opt, "weight"),
                   pw = binary_cross_entropy_extra(input, pos_weight_opt, "pos_weight");
  const at::Tensor x = input.contiguous(), t = target.contiguous();
  const int64_t n = x.numel();
  at::Tensor grad = compute_grad ? empty_output(input.sizes(), input.options()) : at::empty({0}, input.options());
  at::Tensor loss = reduction == kNone ? empty_output(input.sizes(), input.options()) : at::empty({}, input.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "binary_cross_entropy_with_logits", [&] {
    using Acc = acc_t<scalar_t>;
    const scalar_t* wp = w.defined() ? w.const_data_ptr<scalar_t>() : nullptr;
    const scalar_t* pwp = pw.defined() ? pw.const_data_ptr<scalar_t>() : nullptr;
    scalar_t* lp = reduction == kNone ? loss.mutable_data_ptr<scalar_t>() : nullptr;
    scalar_t* gp = compute_grad ? grad.mutable_data_ptr<scalar_t>() : nullptr;
    const Acc scale = reduction == kMean && n > 0 ? Acc(1.0 / double(n)) : Acc(1);
    auto span = [&](int64_t b, int64_t e) {
      return bce_with_logits_span(x.const_data_ptr<scalar_t>(), t.const_data_ptr<scalar_t>(), wp, pwp, b, e, scale,
                                  lp, gp);
    };
    const double total = parallel_sum(n, kSerialGrain, span);
    if (reduction == kMean) loss.fill_(total / double(n));  // empty: 0 / 0 = nan, as torch
    if (reduction == kSum) loss.fill_(total);
  });
  return {loss, grad};
}

}  // namespace

void register_binary_cross_entropy(CpuKernels& kernels) {
  kernels.binary_cross_entropy_with_logits = &binary_cross_entropy_with_logits;
}

}  // namespace fastact::cpu::CPU_CAPABILITY
