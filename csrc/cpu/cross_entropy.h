// The fused softmax cross entropy's per-row math (cross_entropy.cpp has the
// formulas), shared with the layer chain's training step (linear_chain.cpp),
// which runs it over its own feature-major blocks of rows.
#pragma once
#include "cpu/rows.h"

#include <cstdint>
#include <limits>

namespace fastact::cpu::CPU_CAPABILITY {

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

// The sign of a zero loss, as torch's. torch forms these losses negated:
// -(w_y log p_y), and -(sum of w_c t_c log p_c) for the smoothing term and
// probability targets, where fastact sums w (-log p) directly. The two agree
// wherever they are not zero; at zero torch's is -(w_y * +0) = w_y * -0, and
// -(+0) = -0 for a sum (which starts at +0).
template <typename Vec>
Vec torch_signed_product(const Vec& w, const Vec& neg_log_p) {
  return Vec::blendv(w * neg_log_p, w * Vec(-0.0), neg_log_p == Vec(0));
}

template <typename Vec>
Vec torch_signed_sum(const Vec& sum) {
  return Vec::blendv(sum, Vec(-0.0), sum == Vec(0));
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

// What a row's (or, lane by lane, a block of rows') index target says: its
// class y (as a number, and as an index: -1 where ignored), the weight w_y,
// and whether it counts (all bits set) or is ignored.
template <typename Vec>
struct TargetLanes {
  Vec y, w_y, valid;
  int64_t index[Vec::size()];
};

// The math, once for both row policies: every per-row quantity is a vector
// (broadcast on a LastDimRow, one row per lane on StridedRows). x, t and grad
// point at the row (block) start; with a gradient to write, scratch (the
// policy's scratch_size()) keeps exp(x - max) from the sum pass, so the
// gradient pass needs no second exp. Returns the loss of each lane's row.
template <typename T, typename Row>
typename VecIO<T>::Vec cross_entropy_rows(const Problem<T>& P, const Row& row, const T* x, const T* t, T* grad,
                                          const TargetLanes<typename VecIO<T>::Vec>& target, acc_t<T>* scratch) {
  using IO = VecIO<T>;
  using Vec = typename IO::Vec;
  using Acc = acc_t<T>;
  const Acc e = P.smoothing, e_per_class = P.smoothing / Acc(P.C);
  auto weight_at = [&](int64_t o, int64_t n) {
    return P.weight ? row.per_class(P.weight, o, n) : Vec(1);
  };
  const Vec max = row.reduce(-std::numeric_limits<Acc>::infinity(), vec_max<Vec>,
                             [&](int64_t o, int64_t n) { return IO::load(x + o, n); });
  const Vec sum = row.reduce(0, vec_add<Vec>, [&](int64_t o, int64_t n) {
    const Vec e = vec_exp(IO::load(x + o, n) - max);
    if (grad) e.store(scratch + row.scratch_index(o));
    return e;
  });
  const Vec log_sum = row.log(sum), inv_sum = Vec(1) / sum;
  // -log p, formed as (max - x) + log_sum; p itself from the kept exps
  auto neg_log_p = [&](int64_t o, int64_t n) { return (max - IO::load(x + o, n)) + log_sum; };
  auto p = [&](int64_t o) { return Vec::loadu(scratch + row.scratch_index(o)) * inv_sum; };
  const Vec zero(0);

  if (!t) {
    const Vec target_nlp = (max - row.pick(x, target.index)) + log_sum;
    Vec loss = Vec(1 - e) * torch_signed_product(target.w_y, target_nlp);
    if (e > 0) {
      loss = loss + Vec(e_per_class) * torch_signed_sum(row.reduce(0, vec_add<Vec>, [&](int64_t o, int64_t n) {
        return weight_at(o, n) * neg_log_p(o, n);
      }));
    }
    if (grad) {
      const Vec a = (Vec(1 - e) * target.w_y + Vec(e_per_class * P.weight_total)) * Vec(P.grad_scale);
      const Vec b_y = Vec(1 - e) * target.w_y * Vec(P.grad_scale);
      const Vec b_w(e_per_class * P.grad_scale);
      row.map(grad, [&](int64_t o, int64_t n) {
        Vec g = p(o) * a;
        if (e > 0) g = g - weight_at(o, n) * b_w;
        g = g - Vec::blendv(zero, b_y, row.class_index(o) == target.y);
        return Vec::blendv(zero, g, target.valid);  // ignored rows: exactly 0
      });
    }
    return Vec::blendv(zero, loss, target.valid);
  }

  // w_c t'_c, with t' the smoothed probabilities
  auto weighted_target = [&](int64_t o, int64_t n) {
    return weight_at(o, n) * (IO::load(t + o, n) * Vec(1 - e) + Vec(e_per_class));
  };
  const Vec loss = torch_signed_sum(row.reduce(0, vec_add<Vec>, [&](int64_t o, int64_t n) {
    return weighted_target(o, n) * neg_log_p(o, n);
  }));
  if (grad) {
    const Vec s = row.reduce(0, vec_add<Vec>, weighted_target) * Vec(P.grad_scale);
    const Vec scale(P.grad_scale);
    row.map(grad, [&](int64_t o, int64_t n) {
      return p(o) * s - weighted_target(o, n) * scale;
    });
  }
  return loss;
}

// The targets of `lanes` consecutive rows, one per lane.
template <typename Vec, typename T>
TargetLanes<Vec> target_lanes(const Problem<T>& P, const int64_t* y, int64_t lanes) {
  using Acc = acc_t<T>;
  Acc cls[Vec::size()] = {}, w[Vec::size()] = {}, ok[Vec::size()] = {};
  TargetLanes<Vec> target;
  for (int64_t k = 0; k < Vec::size(); ++k) {
    const bool counted = k < lanes && y[k] != P.ignore_index;
    target.index[k] = counted ? y[k] : -1;
    cls[k] = counted ? Acc(y[k]) : Acc(-1);
    w[k] = counted ? (P.weight ? Acc(P.weight[y[k]]) : Acc(1)) : Acc(0);
    ok[k] = counted ? Acc(1) : Acc(0);
  }
  target.y = Vec::loadu(cls);
  target.w_y = Vec::loadu(w);
  target.valid = Vec::loadu(ok) != Vec(0);
  return target;
}

}  // namespace fastact::cpu::CPU_CAPABILITY
