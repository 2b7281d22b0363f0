// CUDA kernels for the fused softmax cross entropy; the math is that of
// csrc/cpu/cross_entropy.cpp. Per row of input x [R, C], with m = max x,
// s = sum exp(x - m), -log p_c = (m - x_c) + log s:
//   index y, smoothing e, weights w (1 without), W = sum w:
//     loss = (1 - e) w_y (-log p_y) + (e / C) sum_c w_c (-log p_c)
//     dloss/dx_c = p_c ((1 - e) w_y + (e / C) W) - (e / C) w_c - (1 - e) w_y [c = y]
//   probabilities t, t' = (1 - e) t + e / C, S = sum w_c t'_c:
//     loss = sum_c w_c t'_c (-log p_c),   dloss/dx_c = p_c S - w_c t'_c
// 'mean' divides by the sum of w_y over targets not ignored (index targets)
// or by R (probabilities), and the gradient carries that factor.
//
// Launches, all on the caller's stream, none waiting for another on the host:
//  1. (index targets, when 'mean' or weighted smoothing needs them) a small
//     prepass over the targets: per-block partial sums of w_y and of w, and
//     the device-side assert on every class index;
//  2. the row kernel: a warp per row up to 1024 classes, a block per row
//     beyond. Pass one reads the row once for m and s (online softmax) and S;
//     pass two, walking the row backwards, writes the gradient (and the
//     smoothing or probability terms of the loss). With neither a gradient
//     nor those terms, a row is read once. The R x C log-probabilities never
//     exist. Each block leaves one partial sum of its rows' losses;
//  3. (reduced losses) one block adds the partials up in block order.
// Every sum has a fixed order, so results are the same bits on every run.
#include "cuda/device.cuh"

namespace fastact::cuda {
namespace {

template <typename T>
struct Problem {
  const T* x;
  const int64_t* index_target;
  const T* prob_target;
  const T* weight;
  int64_t rows, classes, ignore_index;
  double smoothing;
  Reduction reduction;
  T* loss_rows;            // kNone
  T* grad;                 // or nullptr
  const double* prepass;   // [denominator part, weight-sum part] per prepass block, or nullptr
  int64_t prepass_blocks;
  double* loss_partials;   // one per row-kernel block (mean, sum), or nullptr
};

constexpr int kPrepassThreads = 256;
constexpr int64_t kMaxPrepassBlocks = 32;

// Per block: the sum of w_y over targets not ignored, and of w over a slice
// of the classes. Asserts every class index is in range.
template <typename T>
__global__ void prepass_kernel(const int64_t* __restrict__ target, const T* __restrict__ weight, int64_t rows,
                               int64_t classes, int64_t ignore_index, double* __restrict__ parts) {
  __shared__ ReduceScratch scratch;
  const int64_t first = int64_t(blockIdx.x) * blockDim.x + threadIdx.x, step = int64_t(gridDim.x) * blockDim.x;
  double denominator = 0, weight_sum = 0;
  for (int64_t r = first; r < rows; r += step) {
    const int64_t y = target[r];
    if (y == ignore_index) continue;
    assert(y >= 0 && y < classes && "Target is out of bounds");
    denominator += weight ? double(to_acc(weight[y])) : 1.0;
  }
  if (weight) {
    for (int64_t c = first; c < classes; c += step) weight_sum += double(to_acc(weight[c]));
  }
  denominator = block_reduce(denominator, Sum{}, scratch);
  weight_sum = block_reduce(weight_sum, Sum{}, scratch);
  if (threadIdx.x == 0) {
    parts[2 * blockIdx.x] = denominator;
    parts[2 * blockIdx.x + 1] = weight_sum;
  }
}

// The sign of a zero loss, as torch's (csrc/cpu/cross_entropy.h has the
// why): torch forms -(w_y log p_y) and -(sum w_c t_c log p_c).
template <typename A>
__device__ A torch_signed_product(A w, A neg_log_p) {
  return neg_log_p == A(0) ? w * A(-0.0) : w * neg_log_p;
}

template <typename A>
__device__ A torch_signed_sum(A sum) {
  return sum == A(0) ? A(-0.0) : sum;
}

// The loss of one row that is not ignored, and its gradient when P.grad is
// set; every member of the group returns the same value.
template <typename T, int V, typename Group>
__device__ acc_t<T> cross_entropy_row(const Problem<T>& P, const Group& group, int64_t r, int64_t y, acc_t<T> w_y,
                                      acc_t<T> scale, acc_t<T> weight_total) {
  using A = acc_t<T>;
  const int64_t packs = P.classes / V;
  const RowRef<T, V> x{const_cast<T*>(P.x) + r * P.classes, 1};
  const RowRef<T, V> t{const_cast<T*>(P.prob_target ? P.prob_target + r * P.classes : nullptr), 1};
  const RowRef<T, V> g{P.grad ? P.grad + r * P.classes : nullptr, 1};
  const bool probs = P.prob_target != nullptr;
  const A e = A(P.smoothing), e_per_class = A(P.smoothing) / A(P.classes);
  auto load_weight = [&](int64_t p, A(&w)[V]) {
    if (P.weight) {
      RowRef<T, V>{const_cast<T*>(P.weight), 1}.load(p, w);
    } else {
      for (int k = 0; k < V; ++k) w[k] = A(1);
    }
  };

  MaxSum<A> ms{-math::infinity<A>(), A(0)};
  A S = 0;  // sum w_c t'_c
  for_my_packs(packs, group.rank(), group.size(), false, [&](int64_t p) {
    A xv[V];
    x.load(p, xv);
    ms = online_update(ms, xv);
    if (probs) {
      A tv[V], wv[V];
      t.load(p, tv);
      load_weight(p, wv);
      for (int k = 0; k < V; ++k) S += wv[k] * (tv[k] * (A(1) - e) + e_per_class);
    }
  });
  ms = group.reduce(ms, CombineMaxSum{});
  if (probs) S = group.reduce(S, Sum{});
  const A log_s = math::log(ms.s), inv_s = A(1) / ms.s;

  A loss = probs ? A(0) : (A(1) - e) * torch_signed_product(w_y, (ms.m - to_acc(P.x[r * P.classes + y])) + log_s);
  if (!P.grad && !probs && !(e > A(0))) return loss;

  // the gradient's coefficients, with the reduction's factor folded in
  const A a = ((A(1) - e) * w_y + e_per_class * weight_total) * scale;
  const A b_y = (A(1) - e) * w_y * scale, b_w = e_per_class * scale, s_scaled = S * scale;
  A terms = 0;  // index: sum w_c (-log p_c); probabilities: sum w_c t'_c (-log p_c)
  // Per-class weights enter only the probability and smoothing terms; plain
  // index targets need w_y alone, so the weight row is not re-read per row.
  const bool per_class_weights = probs || e > A(0);
  for_my_packs(packs, group.rank(), group.size(), true, [&](int64_t p) {
    A xv[V], wv[V], tv[V], gv[V];
    x.load(p, xv);
    if (per_class_weights) load_weight(p, wv);
    if (probs) t.load(p, tv);
    for (int k = 0; k < V; ++k) {
      const A neg_log_p = (ms.m - xv[k]) + log_s;
      const A prob = P.grad ? math::exp(xv[k] - ms.m) * inv_s : A(0);
      if (probs) {
        const A wt = wv[k] * (tv[k] * (A(1) - e) + e_per_class);
        terms += wt * neg_log_p;
        gv[k] = prob * s_scaled - wt * scale;
      } else {
        if (e > A(0)) terms += wv[k] * neg_log_p;
        gv[k] = prob * a;
        if (e > A(0)) gv[k] = gv[k] - wv[k] * b_w;
        if (p * V + k == y) gv[k] = gv[k] - b_y;
      }
    }
    if (P.grad) g.store(p, gv);
  });
  if (probs) return torch_signed_sum(group.reduce(terms, Sum{}));
  if (e > A(0)) loss += e_per_class * torch_signed_sum(group.reduce(terms, Sum{}));
  return loss;
}

template <typename T, int V, typename Group>
__global__ void cross_entropy_kernel(Problem<T> P) {
  using A = acc_t<T>;
  __shared__ ReduceScratch scratch;
  const Group group = make_group<Group>(scratch);
  // The prepass parts, added in the same order by every thread (same bits).
  double denominator = double(P.rows), weight_total = double(P.classes);
  if (P.prepass) {
    denominator = 0;
    double weight_sum = 0;
    for (int64_t b = 0; b < P.prepass_blocks; ++b) {
      denominator += P.prepass[2 * b];
      weight_sum += P.prepass[2 * b + 1];
    }
    if (P.weight) weight_total = weight_sum;
  }
  // as mean_grad_scale (csrc/checks.h)
  const A scale = P.reduction != kMean ? A(1)
                  : denominator == 0 && P.index_target && P.smoothing > 0
                      ? A(NAN)
                      : A(1.0 / denominator);

  const int64_t packs = P.classes / V;
  double thread_total = 0;
  for (int64_t r = group.first_row(); r < P.rows; r += group.row_step()) {
    int64_t y = -1;
    bool counted = true;
    A w_y = 1;
    if (P.index_target) {
      y = P.index_target[r];
      counted = y != P.ignore_index;
      if (counted) {
        assert(y >= 0 && y < P.classes && "Target is out of bounds");
        if (P.weight) w_y = to_acc(P.weight[y]);
      }
    }
    A loss = 0;
    if (counted) {
      loss = cross_entropy_row<T, V>(P, group, r, y, w_y, scale, A(weight_total));
    } else if (P.grad) {
      const RowRef<T, V> g{P.grad + r * P.classes, 1};
      for_my_packs(packs, group.rank(), group.size(), false, [&](int64_t p) {
        A zero[V] = {};
        g.store(p, zero);
      });
    }
    if (group.rank() == 0) {
      if (P.loss_rows) P.loss_rows[r] = from_acc<T>(loss);
      thread_total += double(loss);
    }
  }
  if (P.loss_partials) {
    const double total = block_reduce(thread_total, Sum{}, scratch);
    if (threadIdx.x == 0) P.loss_partials[blockIdx.x] = total;
  }
}

int64_t prepass_blocks(int64_t rows) {
  return std::max<int64_t>(1, std::min(kMaxPrepassBlocks, (rows + kPrepassThreads - 1) / kPrepassThreads));
}

// Enough loss partials for any row plan (the most blocks: 128 threads each).
int64_t max_row_blocks() { return int64_t(sm_count()) * (2048 / 128); }

bool needs_prepass(const CrossEntropyArgs& a) {
  return a.index_target && (a.reduction == kMean || (a.weight && a.label_smoothing > 0));
}

}  // namespace

size_t cross_entropy_workspace_bytes(const CrossEntropyArgs& a) {
  return sizeof(double) * size_t(2 * kMaxPrepassBlocks + max_row_blocks());
}

cudaError_t launch_cross_entropy(ScalarType type, const CrossEntropyArgs& a, cudaStream_t stream) {
  return dispatch_floating(type, [&](auto tag) -> cudaError_t {
    using T = decltype(tag);
    double* workspace = static_cast<double*>(a.workspace);
    Problem<T> P{static_cast<const T*>(a.input),
                 a.index_target,
                 static_cast<const T*>(a.prob_target),
                 static_cast<const T*>(a.weight),
                 a.rows,
                 a.classes,
                 a.ignore_index,
                 a.label_smoothing,
                 a.reduction,
                 a.reduction == kNone ? static_cast<T*>(a.loss) : nullptr,
                 static_cast<T*>(a.grad),
                 nullptr,
                 0,
                 a.reduction == kNone ? nullptr : workspace + 2 * kMaxPrepassBlocks};
    if (needs_prepass(a)) {
      P.prepass = workspace;
      P.prepass_blocks = prepass_blocks(a.rows);
      const cudaError_t err = launch(prepass_kernel<T>, P.prepass_blocks, kPrepassThreads, stream, a.index_target,
                                     P.weight, a.rows, a.classes, a.ignore_index, workspace);
      if (err != cudaSuccess) return err;
    }

    const RowPlan plan = plan_rows(a.rows, a.classes, 1, sizeof(T));
    constexpr int V = kPack<T>;
    const bool packed = a.classes % V == 0 && packs_aligned(P.x, P.prob_target, P.weight, P.grad);
    cudaError_t err = cudaSuccess;
    if (plan.mode == RowMode::Block) {
      err = packed ? launch(cross_entropy_kernel<T, V, BlockGroup>, plan.blocks, plan.threads, stream, P)
                   : launch(cross_entropy_kernel<T, 1, BlockGroup>, plan.blocks, plan.threads, stream, P);
    } else {
      err = packed ? launch(cross_entropy_kernel<T, V, WarpGroup>, plan.blocks, plan.threads, stream, P)
                   : launch(cross_entropy_kernel<T, 1, WarpGroup>, plan.blocks, plan.threads, stream, P);
    }
    if (err != cudaSuccess || a.reduction == kNone) return err;

    return launch(finalize_loss_kernel<T>, 1, 256, stream, P.loss_partials, plan.blocks, P.prepass,
                  P.prepass_blocks, double(a.rows), a.reduction == kMean, static_cast<T*>(a.loss),
                  /*negated_sum=*/a.prob_target != nullptr);
  });
}

}  // namespace fastact::cuda
