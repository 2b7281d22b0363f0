// CPU kernel for the fused softmax cross entropy.
//
// Input x is [R, C] (the Python layer moves the class dim last), targets are
// class indices [R] or class probabilities [R, C]. Per row, with
// m = max x, s = sum exp(x - m), log p_c = (x_c - m) - log s:
//   index y, smoothing e, weights w (1 without), W = sum w:
//     loss = (1 - e) w_y (-log p_y) + (e / C) sum_c w_c (-log p_c)
//     dloss/dx_c = p_c ((1 - e) w_y + (e / C) W) - (1 - e) w_y [c = y] - (e / C) w_c
//   probabilities t, t' = (1 - e) t + e / C, S = sum w_c t'_c:
//     loss = sum_c w_c t'_c (-log p_c),   dloss/dx_c = p_c S - w_c t'_c
// Reductions as torch: mean divides by the sum of w_y over targets not
// ignored (index targets) or by R (probabilities). The gradient, already
// scaled for the reduction, is written in the same pass that reads the row
// for the last time, so no R x C log-probabilities ever exist; it is written
// only when asked (compute_grad), i.e. when the input needs a gradient.
// Terms are formed as (m - x) + log s rather than lse - x so that logits of
// +-1e4 lose nothing to cancellation in float32.
#include "checks.h"
#include "cpu_shared/capability.h"
#include "cpu_shared/output_allocator.h"
#include "cpu/cross_entropy.h"
#include "cpu/rows.h"

#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/fill.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>

namespace fastact::cpu::CPU_CAPABILITY {
namespace {

// Rows of C contiguous classes, one at a time: for longer rows, where a row
// fills vectors and streams its gradient out.
template <typename T>
double cross_entropy_long_rows(const Problem<T>& P, int64_t begin, int64_t end, T* loss_rows) {
  using IO = VecIO<T>;
  using Vec = typename IO::Vec;
  const LastDimRow<T> row{P.C, P.stream};
  std::vector<acc_t<T>> scratch(P.grad ? row.scratch_size() : 0);
  double total = 0;
  for (int64_t r = begin; r < end; ++r) {
    T* grad = P.grad ? P.grad + r * P.C : nullptr;
    acc_t<T> loss = 0;
    if (P.index_target && P.index_target[r] == P.ignore_index) {
      if (grad) row.map(grad, [](int64_t, int64_t) { return Vec(0); });
    } else {
      const int64_t y = P.index_target ? P.index_target[r] : -1;
      TargetLanes<Vec> target{Vec(acc_t<T>(y)), Vec(P.weight && y >= 0 ? acc_t<T>(P.weight[y]) : 1),
                              Vec(0) == Vec(0), {y}};
      const Vec l = cross_entropy_rows(P, row, P.x + r * P.C, P.prob_target ? P.prob_target + r * P.C : nullptr,
                                       grad, target, scratch.data());
      acc_t<T> lanes[Vec::size()];
      l.store(lanes);
      loss = lanes[0];
    }
    if (loss_rows) loss_rows[r] = T(loss);
    total += loss;
  }
  if (P.stream) streaming_store_fence();
  return total;
}
// Rows of few classes, kStep at a time, through tiles (rows.h: rows_to_tile).
template <typename T>
double cross_entropy_short_rows(const Problem<T>& P, int64_t begin, int64_t end, T* loss_rows) {
  using IO = VecIO<T>;
  using Vec = typename IO::Vec;
  constexpr int64_t K = IO::kStep;
  const int64_t C = P.C;
  std::vector<T> x_tile(C * K), t_tile(P.prob_target ? C * K : 0), g_tile(P.grad ? C * K : 0);
  std::vector<acc_t<T>> scratch(P.grad ? C * K : 0);
  double total = 0;
  for (int64_t r0 = begin; r0 < end; r0 += K) {
    const int64_t lanes = std::min(K, end - r0);
    rows_to_tile(P.x + r0 * C, C, lanes, x_tile.data());
    if (P.prob_target) rows_to_tile(P.prob_target + r0 * C, C, lanes, t_tile.data());
    const StridedRows<T> tile{C, K, lanes};
    const TargetLanes<Vec> target = P.index_target ? target_lanes<Vec>(P, P.index_target + r0, lanes)
                                                   : TargetLanes<Vec>{Vec(-1), Vec(1), Vec(0) == Vec(0), {-1}};
    const Vec l = cross_entropy_rows(P, tile, x_tile.data(), P.prob_target ? t_tile.data() : nullptr,
                                     P.grad ? g_tile.data() : nullptr, target, scratch.data());
    acc_t<T> losses[K];
    l.store(losses);
    for (int64_t k = 0; k < lanes; ++k) {
      if (loss_rows) loss_rows[r0 + k] = T(losses[k]);
      total += losses[k];
    }
    if (P.grad) tile_to_rows(g_tile.data(), C, lanes, P.grad + r0 * C);
  }
  return total;
}

std::tuple<at::Tensor, at::Tensor> cross_entropy(const at::Tensor& input, const at::Tensor& target,
                                                 const std::optional<at::Tensor>& weight_opt,
                                                 int64_t reduction, int64_t ignore_index,
                                                 double label_smoothing, bool compute_grad) {
  const at::Tensor weight = check_cross_entropy(input, target, weight_opt, reduction, label_smoothing);
  const int64_t R = input.size(0), C = input.size(1);
  const bool probs = target.is_floating_point();
  const at::Tensor x = input.contiguous();
  const at::Tensor t = target.contiguous();
  at::Tensor grad = compute_grad ? empty_output({R, C}, input.options()) : at::empty({0}, input.options());
  at::Tensor loss = reduction == kNone ? at::empty({R}, input.options()) : at::empty({}, input.options());

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "cross_entropy", [&] {
    using Acc = acc_t<scalar_t>;
    const scalar_t* w = weight.defined() ? weight.const_data_ptr<scalar_t>() : nullptr;
    const int64_t* index = probs ? nullptr : t.const_data_ptr<int64_t>();
    // Validates the indices before anything is written. Probabilities: torch
    // divides by numel / C, which is nan for zero classes.
    const double denominator = probs ? (C > 0 ? double(R) : 0.0) : check_targets(index, R, C, w, ignore_index);
    double weight_total = C;
    if (w) {
      weight_total = 0;
      for (int64_t c = 0; c < C; ++c) weight_total += double(w[c]);
    }
    Problem<scalar_t> P{x.const_data_ptr<scalar_t>(),
                        index,
                        probs ? t.const_data_ptr<scalar_t>() : nullptr,
                        w,
                        C,
                        ignore_index,
                        Acc(label_smoothing > 0 ? label_smoothing : 0),  // torch: smoothing <= 0 (or NaN) is none
                        Acc(weight_total),
                        Acc(mean_grad_scale(reduction == kMean, denominator, !probs && label_smoothing > 0)),
                        compute_grad ? grad.mutable_data_ptr<scalar_t>() : nullptr,
                        compute_grad && use_streaming_stores(grad.nbytes())};
    scalar_t* loss_rows = reduction == kNone ? loss.mutable_data_ptr<scalar_t>() : nullptr;
    auto total_over_rows = [&](const Problem<scalar_t>& problem, scalar_t* rows_out) {
      // Row losses summed in double, per chunk then in a fixed order.
      return parallel_sum(R, std::max<int64_t>(1, kSerialGrain / std::max<int64_t>(C, 1)),
                          [&](int64_t begin, int64_t end) {
                            return C < kShortRowClasses<scalar_t>
                                       ? cross_entropy_short_rows(problem, begin, end, rows_out)
                                       : cross_entropy_long_rows(problem, begin, end, rows_out);
                          });
    };
    // zero classes: every row's loss is 0 (index targets: all ignored), an
    // empty sum, -0 as torch's -(sum) for probabilities (torch_signed_sum)
    if (C == 0 && loss_rows) std::fill(loss_rows, loss_rows + R, scalar_t(probs ? -0.0 : 0.0));
    double total = C == 0 ? 0.0 : total_over_rows(P, loss_rows);
    if (probs && total == 0) total = -0.0;  // torch's -(sum over every row and class)
    if (reduction == kMean) {
      double mean = total / denominator;  // 0 / 0: nan, as torch
      if (denominator == 0 && !probs && P.smoothing > 0) {
        // torch divides the target term and the smoothing term by the
        // denominator separately: their signs decide between inf and nan.
        Problem<scalar_t> unsmoothed = P;
        unsmoothed.smoothing = 0;
        unsmoothed.grad = nullptr;
        const double target_term = (1 - label_smoothing) * total_over_rows(unsmoothed, nullptr);
        mean = target_term / denominator + (total - target_term) / denominator;
      }
      loss.fill_(mean);
    }
    if (reduction == kSum) loss.fill_(total);
  });
  return {loss, grad};
}

}  // namespace

void register_cross_entropy(CpuKernels& kernels) {
  kernels.cross_entropy = &cross_entropy;
}

}  // namespace fastact::cpu::CPU_CAPABILITY
