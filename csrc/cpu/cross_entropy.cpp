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
#include "cpu/output_allocator.h"
#include "cpu/rows.h"

#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/fill.h>
#include <torch/library.h>

#include <cmath>
#include <limits>
#include <optional>

namespace fastact::cpu {
namespace {

enum Reduction : int64_t { kNone = 0, kMean = 1, kSum = 2 };

// Checks every class index before anything is written, and returns the sum
// of w_y over targets not ignored: mean's denominator.
template <typename T>
double check_targets(const int64_t* target, int64_t R, int64_t C, const T* weight, int64_t ignore_index) {
  double total = 0;
  for (int64_t r = 0; r < R; ++r) {
    const int64_t y = target[r];
    if (y == ignore_index) continue;
    TORCH_CHECK_INDEX(y >= 0 && y < C, "Target ", y, " is out of bounds.");
    total += weight ? static_cast<double>(weight[y]) : 1.0;
  }
  return total;
}

template <typename T>
struct Problem {
  using Acc = acc_t<T>;
  const T* x;
  const int64_t* index_target;  // or
  const T* prob_target;
  const T* weight;  // nullptr: all ones
  int64_t C, ignore_index;
  Acc smoothing, weight_total;  // weight_total: W = sum_c w_c
  Acc grad_scale;               // the reduction's factor, folded into the gradient
  T* grad;                      // nullptr: no gradient
  bool stream;
};

// Returns row r's loss and writes its gradient.
template <typename T>
acc_t<T> cross_entropy_row(const Problem<T>& P, const LastDimRow<T>& row, int64_t r) {
  using IO = VecIO<T>;
  using Vec = typename IO::Vec;
  using Acc = acc_t<T>;
  const T* x = P.x + r * P.C;
  T* grad = P.grad ? P.grad + r * P.C : nullptr;
  const Acc e = P.smoothing, e_per_class = P.smoothing / Acc(P.C);
  auto weight_at = [&](int64_t o, int64_t n) { return P.weight ? IO::load(P.weight + o, n) : Vec(1); };

  const int64_t y = P.index_target ? P.index_target[r] : -1;
  if (P.index_target && y == P.ignore_index) {
    if (grad) row.map(grad, [](int64_t, int64_t) { return Vec(0); });
    return 0;
  }
  const Vec max = row.reduce(-std::numeric_limits<Acc>::infinity(), vec_max<Vec>,
                             [&](int64_t o, int64_t n) { return IO::load(x + o, n); });
  const Acc log_sum = std::log(row.reduce_to_scalar(0, vec_add<Vec>, [&](int64_t o, int64_t n) {
    return vec_exp(IO::load(x + o, n) - max);
  }));
  const Vec log_sum_v(log_sum);
  // -log p for a vector of the row
  auto neg_log_p = [&](int64_t o, int64_t n) { return (max - IO::load(x + o, n)) + log_sum_v; };

  if (P.index_target) {
    const Acc w_y = P.weight ? Acc(P.weight[y]) : Acc(1);
    const Acc max_s = at::vec::vec_reduce_all<Acc>(vec_max<Vec>, max);
    Acc loss = (1 - e) * w_y * ((max_s - Acc(x[y])) + log_sum);
    if (e > 0) {
      loss += e_per_class * row.reduce_to_scalar(0, vec_add<Vec>, [&](int64_t o, int64_t n) {
        return weight_at(o, n) * neg_log_p(o, n);
      });
    }
    if (grad) {
      const Vec a((1 - e) * w_y * P.grad_scale + e_per_class * P.weight_total * P.grad_scale);
      const Acc b_y = (1 - e) * w_y * P.grad_scale;
      const Vec b_w(e_per_class * P.grad_scale);
      const Vec lanes = Vec::arange(0, 1);
      row.map(grad, [&](int64_t o, int64_t n) {
        Vec g = vec_exp(Vec(0) - neg_log_p(o, n)) * a;
        if (e > 0) g = g - weight_at(o, n) * b_w;
        if (y >= o && y < o + n) g = Vec::blendv(g, g - Vec(b_y), lanes == Vec(Acc(y - o)));
        return g;
      });
    }
    return loss;
  }

  const T* t = P.prob_target + r * P.C;
  // w_c t'_c, with t' the smoothed probabilities
  auto weighted_target = [&](int64_t o, int64_t n) {
    return weight_at(o, n) * (IO::load(t + o, n) * Vec(1 - e) + Vec(e_per_class));
  };
  const Acc loss = row.reduce_to_scalar(0, vec_add<Vec>, [&](int64_t o, int64_t n) {
    return weighted_target(o, n) * neg_log_p(o, n);
  });
  if (grad) {
    const Vec s(row.reduce_to_scalar(0, vec_add<Vec>, weighted_target) * P.grad_scale);
    const Vec scale(P.grad_scale);
    row.map(grad, [&](int64_t o, int64_t n) {
      return vec_exp(Vec(0) - neg_log_p(o, n)) * s - weighted_target(o, n) * scale;
    });
  }
  return loss;
}

std::tuple<at::Tensor, at::Tensor> cross_entropy(const at::Tensor& input, const at::Tensor& target,
                                                 const std::optional<at::Tensor>& weight_opt,
                                                 int64_t reduction, int64_t ignore_index,
                                                 double label_smoothing, bool compute_grad) {
  TORCH_CHECK(input.dim() == 2, "fastact::cross_entropy: expected input of shape [rows, classes], got ",
              input.sizes());
  TORCH_CHECK(reduction >= kNone && reduction <= kSum, "fastact::cross_entropy: bad reduction ", reduction);
  TORCH_CHECK(label_smoothing >= 0 && label_smoothing <= 1,
              "label_smoothing must be between 0.0 and 1.0. Got: ", label_smoothing);
  const int64_t R = input.size(0), C = input.size(1);
  const bool probs = target.is_floating_point();
  if (probs) {
    TORCH_CHECK(target.sizes() == input.sizes(), "fastact::cross_entropy: probability target of shape ",
                target.sizes(), " does not match input ", input.sizes());
    TORCH_CHECK(target.scalar_type() == input.scalar_type(), "fastact::cross_entropy: target dtype ",
                target.scalar_type(), " differs from input dtype ", input.scalar_type());
  } else {
    TORCH_CHECK(target.scalar_type() == at::kLong, "fastact::cross_entropy: expected int64 class indices, got ",
                target.scalar_type());
    TORCH_CHECK(target.dim() == 1 && target.size(0) == R, "fastact::cross_entropy: expected ", R,
                " targets, got shape ", target.sizes());
  }
  at::Tensor weight;
  if (weight_opt.has_value() && weight_opt->defined()) {
    weight = weight_opt->contiguous();
    TORCH_CHECK(weight.dim() == 1 && weight.numel() == C,
                "weight tensor should be defined either for all ", C,
                " classes or no classes but got weight tensor of shape: ", weight.sizes());
    TORCH_CHECK(weight.scalar_type() == input.scalar_type(), "expected scalar type ",
                input.scalar_type(), " but found ", weight.scalar_type());
  }
  const at::Tensor x = input.contiguous();
  const at::Tensor t = target.contiguous();
  at::Tensor grad = compute_grad ? empty_output({R, C}, input.options()) : at::empty({0}, input.options());
  at::Tensor loss = reduction == kNone ? at::empty({R}, input.options()) : at::empty({}, input.options());

  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "cross_entropy", [&] {
    using Acc = acc_t<scalar_t>;
    const scalar_t* w = weight.defined() ? weight.const_data_ptr<scalar_t>() : nullptr;
    const int64_t* index = probs ? nullptr : t.const_data_ptr<int64_t>();
    // Validates the indices before anything is written.
    const double denominator = probs ? double(R) : check_targets(index, R, C, w, ignore_index);
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
                        Acc(label_smoothing),
                        Acc(weight_total),
                        // with nothing counted every row's gradient is zero anyway
                        Acc(reduction == kMean && denominator > 0 ? 1.0 / denominator : 1.0),
                        compute_grad ? grad.mutable_data_ptr<scalar_t>() : nullptr,
                        compute_grad && use_streaming_stores(grad.nbytes())};
    const LastDimRow<scalar_t> row{C, P.stream};
    scalar_t* loss_rows = reduction == kNone ? loss.mutable_data_ptr<scalar_t>() : nullptr;
    // Sum of row losses in double; per-chunk partial sums combined in a
    // fixed order, so the result does not depend on scheduling.
    auto run_rows = [&](int64_t begin, int64_t end) {
      double total = 0;
      for (int64_t r = begin; r < end; ++r) {
        const Acc l = cross_entropy_row(P, row, r);
        if (loss_rows) loss_rows[r] = scalar_t(l);
        total += l;
      }
      if (P.stream) streaming_store_fence();
      return total;
    };
    double total = 0;
    if (R * C <= kSerialGrain || at::get_num_threads() == 1 || at::in_parallel_region()) {
      total = run_rows(0, R);
    } else {
      const int64_t grain = std::max<int64_t>(1, kSerialGrain / std::max<int64_t>(C, 1));
      total = at::parallel_reduce(0, R, grain, 0.0, [&](int64_t b, int64_t e, double) { return run_rows(b, e); },
                                  std::plus<double>());
    }
    if (reduction == kMean) loss.fill_(total / denominator);  // 0 / 0: nan, as torch
    if (reduction == kSum) loss.fill_(total);
  });
  return {loss, grad};
}

}  // namespace

TORCH_LIBRARY_IMPL(fastact, CPU, m) {
  m.impl("cross_entropy", &cross_entropy);
}

}  // namespace fastact::cpu
