// CPU kernels of the layer chain: fastact's own matmul for the small layers
// of tutorial models (both feature sizes up to kSmallFeatures), where MKL's
// per-call cost is most of the time (a 1000x2 @ 2x10 addmm costs 15-20 us
// for 20k multiply-adds); larger layers keep torch's (linear_chain.h).
//
// Forward, per row: y = act(x W^T + b), the outputs in vectors (W^T is
// packed once, padded to whole vectors), the activation applied before the
// store. Backward, per row: the activation's derivative applied to the
// incoming gradient as it is read, then in the same pass the bias gradient
// (summed), the weight gradient (x^T g, summed in per-thread partials) and
// the input gradient (g W). Not bit-identical to MKL's summation order: each
// value is a dot product of at most 64 terms (forward, input gradient) or a
// sum over the batch (weight and bias gradients), in the dtype.
#include "checks.h"
#include "cpu/cross_entropy.h"
#include "cpu/vec_io.h"
#include "cpu_shared/capability.h"
#include "linear_chain.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/scalar_tensor.h>
#include <ATen/ops/zeros.h>

#include <algorithm>
#include <array>
#include <memory>
#include <type_traits>
#include <vector>

namespace fastact::cpu::CPU_CAPABILITY {
namespace {

using linear_act::Activation;
using linear_chain::Layer;

// Rows per task: enough multiply-adds that a thread's wake-up is worth it.
int64_t row_grain(int64_t in, int64_t out) { return std::max<int64_t>(1, (int64_t(1) << 18) / (in * out)); }

template <typename T>
C10_ALWAYS_INLINE Vectorized<T> activate(const Vectorized<T>& v, Activation act, const Vectorized<T>& slope) {
  using Vec = Vectorized<T>;
  switch (act) {
    case Activation::None: return v;
    case Activation::Relu: return at::vec::clamp_min(v, Vec(0));
    case Activation::LeakyRelu: return Vec::blendv(v * slope, v, v > Vec(0));
    case Activation::Sigmoid: return Vec(1) / (Vec(1) + vec_exp(Vec(0) - v));
    case Activation::Tanh: return vec_tanh(v);
    default: return v;  // the others are torch's layers (linear_chain::keeps_output)
  }
}

// The derivative from the output y, as fastact's *_backward kernels.
template <typename T>
C10_ALWAYS_INLINE Vectorized<T> activation_grad(const Vectorized<T>& g, const Vectorized<T>& y, Activation act,
                                                const Vectorized<T>& slope) {
  using Vec = Vectorized<T>;
  switch (act) {
    case Activation::None: return g;
    case Activation::Relu: return Vec::blendv(g, Vec(0), y <= Vec(0));
    case Activation::LeakyRelu: return Vec::blendv(g * slope, g, y > Vec(0));
    case Activation::Sigmoid: return g * (Vec(1) - y) * y;
    case Activation::Tanh: return g * (Vec(1) - y * y);
    default: return g;
  }
}

// f(std::integral_constant<Activation, act>): a loop compiled per activation,
// with no switch inside it.
template <typename F>
void with_activation(Activation act, const F& f) {
  switch (act) {
    case Activation::None: return f(std::integral_constant<Activation, Activation::None>());
    case Activation::Relu: return f(std::integral_constant<Activation, Activation::Relu>());
    case Activation::LeakyRelu: return f(std::integral_constant<Activation, Activation::LeakyRelu>());
    case Activation::Sigmoid: return f(std::integral_constant<Activation, Activation::Sigmoid>());
    case Activation::Tanh: return f(std::integral_constant<Activation, Activation::Tanh>());
    default: TORCH_INTERNAL_ASSERT(false, "fastact: the chain's own kernels take no ", linear_act::activation_name(act));
  }
}

template <typename T>
int64_t padded(int64_t n) {
  constexpr int64_t kSize = Vectorized<T>::size();
  return (n + kSize - 1) / kSize * kSize;
}

template <typename T>
bool takes(const at::Tensor& x, const at::Tensor& weight) {
  return weight.size(0) <= linear_chain::kSmallFeatures && weight.size(1) <= linear_chain::kSmallFeatures &&
         x.device().is_cpu() && weight.device().is_cpu();
}

// Vectors of outputs per row a loop is compiled for: 1, 2, 4, 8 or 16 (a
// few counts: each is compiled per dtype, activation and CPU capability).
template <typename T>
int64_t compiled_blocks(int64_t out) {
  const int64_t needed = padded<T>(out) / Vectorized<T>::size();
  return needed <= 2 ? needed : needed <= 4 ? 4 : needed <= 8 ? 8 : 16;
}

// f(std::integral_constant<int, N>) for the first N of Ns with n <= N: a
// loop compiled for a few constant counts, chosen at run time.
template <int... Ns, typename F>
void with_constant(int64_t n, const F& f) {
  bool done = false;
  ((done = done || (n <= Ns && (f(std::integral_constant<int, Ns>()), true))), ...);
}

// y[rows, out] = act(x[rows, in] W^T + b), kBlocks vectors of outputs per row
// (W^T and b packed to that width, zero past `out`). Several rows at once
// where the vectors are few: each output is a chain of dependent
// multiply-adds, and independent rows keep the FMA units busy.
template <typename T, int kBlocks>
void forward_rows(const T* x, const T* packed_wt, const T* packed_bias, int64_t in, int64_t out, int64_t begin,
                  int64_t end, Activation act, T slope, T* y) {
  using Vec = Vectorized<T>;
  constexpr int64_t kSize = Vec::size();
  constexpr int kRows = kBlocks <= 4 ? 4 : 1;
  const int64_t width = kBlocks * kSize;
  const Vec slope_vec(slope);
  with_activation(act, [&](auto act_tag) {
  constexpr Activation kAct = decltype(act_tag)::value;
  auto rows_at = [&](int64_t r, auto rows_tag) {
    constexpr int kR = decltype(rows_tag)::value;
    std::array<std::array<Vec, kBlocks>, kR> acc;
    for (int i = 0; i < kR; ++i) {
      for (int j = 0; j < kBlocks; ++j) acc[i][j] = Vec::loadu(packed_bias + j * kSize);
    }
    for (int64_t k = 0; k < in; ++k) {
      for (int j = 0; j < kBlocks; ++j) {
        const Vec wk = Vec::loadu(packed_wt + k * width + j * kSize);
        for (int i = 0; i < kR; ++i) acc[i][j] = at::vec::fmadd(Vec(x[(r + i) * in + k]), wk, acc[i][j]);
      }
    }
    for (int i = 0; i < kR; ++i) {
      for (int j = 0; j < kBlocks && j * kSize < out; ++j) {
        const int64_t count = std::min<int64_t>(kSize, out - j * kSize);
        activate(acc[i][j], kAct, slope_vec).store(y + (r + i) * out + j * kSize, count);
      }
    }
  };
  int64_t r = begin;
  for (; r + kRows <= end; r += kRows) rows_at(r, std::integral_constant<int, kRows>());
  for (; r < end; ++r) rows_at(r, std::integral_constant<int, 1>());
  });
}

// The same with rows in the lanes, for layers with few outputs (a
// classifier's last layer), where vectors over the outputs would leave most
// lanes empty: a block of rows is transposed into [in][lanes], each output
// is then a sum of `in` vector multiply-adds, and the block's outputs are
// transposed back as they are stored.
constexpr int64_t kFewOutputs = 8;

// A dot product per output, vectors over the inputs, then summed across the
// vector: for few outputs of many inputs, where the lanes form would spend
// its time transposing.
template <typename T>
void forward_rows_dot(const T* x, const T* w, const T* bias, int64_t in, int64_t out, int64_t begin, int64_t end,
                      Activation act, T slope, T* y) {
  using Vec = Vectorized<T>;
  constexpr int64_t kSize = Vec::size();
  const int64_t in_blocks = padded<T>(in) / kSize;
  const Vec slope_vec(slope);
  alignas(64) T row[kFewOutputs * 8];
  for (int64_t r = begin; r < end; ++r) {
    const T* xr = x + r * in;
    std::array<Vec, kFewOutputs> acc;
    for (int64_t o = 0; o < out; ++o) acc[o] = Vec(0);
    for (int64_t i = 0; i < in_blocks; ++i) {
      const Vec xv = Vec::loadu(xr + i * kSize, std::min<int64_t>(kSize, in - i * kSize));
      for (int64_t o = 0; o < out; ++o) {
        acc[o] = at::vec::fmadd(xv, Vec::loadu(w + o * in + i * kSize, std::min<int64_t>(kSize, in - i * kSize)), acc[o]);
      }
    }
    for (int64_t o = 0; o < out; ++o) {
      row[o] = at::vec::vec_reduce_all<T>([](Vec& a, Vec& b) { return a + b; }, acc[o]) + bias[o];
    }
    activate(Vec::loadu(row, out), act, slope_vec).store(y + r * out, out);
  }
}

template <typename T>
void forward_rows_lanes(const T* x, const T* w, const T* bias, int64_t in, int64_t out, int64_t begin, int64_t end,
                        Activation act, T slope, T* y) {
  using Vec = Vectorized<T>;
  constexpr int64_t kSize = Vec::size();
  const Vec slope_vec(slope);
  alignas(64) T xt[linear_chain::kSmallFeatures * kSize] = {};
  alignas(64) T yt[linear_chain::kSmallFeatures * kSize];
  for (int64_t r0 = begin; r0 < end; r0 += kSize) {
    const int64_t n = std::min<int64_t>(kSize, end - r0);
    for (int64_t lane = 0; lane < n; ++lane) {
      for (int64_t k = 0; k < in; ++k) xt[k * kSize + lane] = x[(r0 + lane) * in + k];
    }
    // independent sums (each output, even and odd inputs) hide the FMA latency
    std::array<std::array<Vec, kFewOutputs>, 2> acc;
    for (int64_t o = 0; o < out; ++o) acc[0][o] = Vec(bias[o]), acc[1][o] = Vec(0);
    for (int64_t k = 0; k < in; ++k) {
      const Vec xk = Vec::loadu(xt + k * kSize);
      for (int64_t o = 0; o < out; ++o) acc[k & 1][o] = at::vec::fmadd(xk, Vec(w[o * in + k]), acc[k & 1][o]);
    }
    for (int64_t o = 0; o < out; ++o) activate(acc[0][o] + acc[1][o], act, slope_vec).store(yt + o * kSize);
    for (int64_t lane = 0; lane < n; ++lane) {
      for (int64_t o = 0; o < out; ++o) y[(r0 + lane) * out + o] = yt[o * kSize + lane];
    }
  }
}

// Whether a layer's products are better vectorized over its inputs than
// over its outputs (counting a dot product's final sum as one more vector op).
template <typename T>
bool vectors_over_inputs(int64_t in, int64_t out) {
  constexpr int64_t kSize = Vectorized<T>::size();
  return out * (padded<T>(in) / kSize) * 2 < in * (padded<T>(out) / kSize);
}

template <typename T>
at::Tensor small_forward(const at::Tensor& x_in, const at::Tensor& weight_in, const at::Tensor& bias_in,
                         const Layer& layer) {
  const at::Tensor x = x_in.contiguous(), weight = weight_in.contiguous();
  const int64_t rows = x.size(0), in = weight.size(1), out = weight.size(0);
  const int64_t blocks = compiled_blocks<T>(out), width = blocks * Vectorized<T>::size();
  // W^T packed [in, width], and the bias [width], zero-padded.
  std::vector<T> wt(in * width, T(0)), bias(width, T(0));
  const T* w = weight.const_data_ptr<T>();
  for (int64_t o = 0; o < out; ++o) {
    for (int64_t k = 0; k < in; ++k) wt[k * width + o] = w[o * in + k];
  }
  if (bias_in.defined()) {
    const at::Tensor b = bias_in.contiguous();
    std::copy(b.const_data_ptr<T>(), b.const_data_ptr<T>() + out, bias.begin());
  }
  at::Tensor y = at::empty({rows, out}, x.options());
  const T* xp = x.const_data_ptr<T>();
  T* yp = y.mutable_data_ptr<T>();
  const T slope = T(layer.slope);
  const bool lanes = 2 * out <= Vectorized<T>::size() && out <= kFewOutputs;
  at::parallel_for(0, rows, row_grain(in, out), [&](int64_t begin, int64_t end) {
    if (lanes && in > 16) return forward_rows_dot<T>(xp, w, bias.data(), in, out, begin, end, layer.act, slope, yp);
    if (lanes) return forward_rows_lanes<T>(xp, w, bias.data(), in, out, begin, end, layer.act, slope, yp);
    with_constant<1, 2, 4, 8, 16>(blocks, [&](auto blocks_tag) {
      forward_rows<T, decltype(blocks_tag)::value>(xp, wt.data(), bias.data(), in, out, begin, end, layer.act, slope,
                                                   yp);
    });
  });
  return y;
}

// The backward of rows [begin, end) of one layer, into this task's partial
// weight (transposed, [in, width]) and bias ([width]) gradients and its
// rows of gx, in three passes over the rows, each keeping its running sums
// in registers: gp = act'(g, y) (kept, padded to whole vectors, in `gp`)
// with the bias sum; then wt_acc[k] += x[k] gp for tiles of kTile inputs;
// then gx = gp W for groups of four rows.
template <typename T, int kBlocks>
void backward_rows(const T* g, const T* y, const T* x, const T* w, int64_t in, int64_t out, int64_t begin,
                   int64_t end, const Layer& layer, linear_chain::LayerNeeds needs, bool wt_by_output, T* gp,
                   T* wt_acc, T* bias_acc, T* gx) {
  using Vec = Vectorized<T>;
  constexpr int64_t kSize = Vec::size();
  constexpr int64_t width = kBlocks * kSize;
  const Vec slope(T(layer.slope));
  with_activation(layer.act, [&](auto act_tag) {
    constexpr Activation kAct = decltype(act_tag)::value;
    std::array<Vec, kBlocks> bias_sum;
    for (int j = 0; j < kBlocks; ++j) bias_sum[j] = Vec::loadu(bias_acc + j * kSize);
    for (int64_t r = begin; r < end; ++r) {
      for (int j = 0; j < kBlocks; ++j) {
        const int64_t count = std::max<int64_t>(0, std::min<int64_t>(kSize, out - j * kSize));
        const Vec d = count == 0 ? Vec(0)
                                 : activation_grad(Vec::loadu(g + r * out + j * kSize, count),
                                                   Vec::loadu(y + r * out + j * kSize, count), kAct, slope);
        d.store(gp + (r - begin) * width + j * kSize);
        bias_sum[j] = bias_sum[j] + d;
      }
    }
    for (int j = 0; j < kBlocks; ++j) bias_sum[j].store(bias_acc + j * kSize);
  });
  const int64_t in_blocks = padded<T>(in) / kSize;
  if constexpr (kBlocks > 2) {
    // few outputs (<= kFewOutputs, vectors of at least 4) never take more than two vectors
    TORCH_INTERNAL_ASSERT(!wt_by_output);
  }
  if (needs.weight && wt_by_output) {
    // one vector of inputs (in <= kSize), few outputs: wt_acc is [out][kSize],
    // its sums in registers (the output count a constant)
    if constexpr (kBlocks <= 2) with_constant<1, 2, 3, 4, 5, 6, 7, 8>(out, [&](auto out_tag) {
      constexpr int kOut = decltype(out_tag)::value;
      std::array<Vec, kOut> acc;
      for (int o = 0; o < kOut; ++o) acc[o] = Vec::loadu(wt_acc + o * kSize);
      for (int64_t r = begin; r < end; ++r) {
        const Vec xv = Vec::loadu(x + r * in, in);
        const T* gr = gp + (r - begin) * width;
        for (int o = 0; o < kOut; ++o) acc[o] = at::vec::fmadd(Vec(gr[o]), xv, acc[o]);
      }
      for (int o = 0; o < kOut; ++o) acc[o].store(wt_acc + o * kSize);
    });
  } else if (needs.weight) {
    // tiles of inputs whose sums stay in registers (the tile size a constant)
    constexpr int kTile = kBlocks <= 2 ? 8 : kBlocks <= 4 ? 4 : 1;
    auto tile_at = [&](int64_t k0, auto tile_tag) {
      constexpr int kT = decltype(tile_tag)::value;
      std::array<std::array<Vec, kBlocks>, kT> acc;
      for (int t = 0; t < kT; ++t) {
        for (int j = 0; j < kBlocks; ++j) acc[t][j] = Vec::loadu(wt_acc + (k0 + t) * width + j * kSize);
      }
      for (int64_t r = begin; r < end; ++r) {
        const T* xr = x + r * in + k0;
        for (int j = 0; j < kBlocks; ++j) {
          const Vec d = Vec::loadu(gp + (r - begin) * width + j * kSize);
          for (int t = 0; t < kT; ++t) acc[t][j] = at::vec::fmadd(Vec(xr[t]), d, acc[t][j]);
        }
      }
      for (int t = 0; t < kT; ++t) {
        for (int j = 0; j < kBlocks; ++j) acc[t][j].store(wt_acc + (k0 + t) * width + j * kSize);
      }
    };
    int64_t k0 = 0;
    for (; k0 + kTile <= in; k0 += kTile) tile_at(k0, std::integral_constant<int, kTile>());
    for (; k0 + 2 <= in; k0 += 2) tile_at(k0, std::integral_constant<int, 2>());
    for (; k0 < in; ++k0) tile_at(k0, std::integral_constant<int, 1>());
  }
  if (needs.input) {
    // groups of rows (a constant count), each a chain of multiply-adds over the outputs
    auto rows_at = [&](int64_t r, auto rows_tag) {
      constexpr int kR = decltype(rows_tag)::value;
      for (int64_t i = 0; i < in_blocks; ++i) {
        const int64_t count = std::min<int64_t>(kSize, in - i * kSize);
        std::array<Vec, kR> acc;
        acc.fill(Vec(0));
        for (int64_t o = 0; o < out; ++o) {
          const Vec wo = Vec::loadu(w + o * in + i * kSize, count);
          for (int q = 0; q < kR; ++q) acc[q] = at::vec::fmadd(Vec(gp[(r + q - begin) * width + o]), wo, acc[q]);
        }
        for (int q = 0; q < kR; ++q) acc[q].store(gx + (r + q) * in + i * kSize, count);
      }
    };
    int64_t r = begin;
    for (; r + 4 <= end; r += 4) rows_at(r, std::integral_constant<int, 4>());
    for (; r < end; ++r) rows_at(r, std::integral_constant<int, 1>());
  }
}

template <typename T>
void small_backward(const at::Tensor& g_in, const at::Tensor& x_in, const at::Tensor& y_in,
                    const at::Tensor& weight_in, const Layer& layer, linear_chain::LayerNeeds needs,
                    linear_chain::LayerGrads& result) {
  const at::Tensor g = g_in.contiguous(), x = x_in.contiguous(), y = y_in.contiguous(),
                   weight = weight_in.contiguous();
  const int64_t rows = g.size(0), in = weight.size(1), out = weight.size(0);
  const int64_t blocks = compiled_blocks<T>(out), width = blocks * Vectorized<T>::size();
  const int64_t in_width = padded<T>(in);
  // the weight gradient's partial sums: [out, in_width] (vectors over the
  // inputs, for few outputs that fit in registers) or [in, width]
  const bool by_output = vectors_over_inputs<T>(in, out) && in <= Vectorized<T>::size() && out <= kFewOutputs;
  const int64_t weight_slot = by_output ? out * in_width : in * width;
  const int64_t slot = weight_slot + width;  // one task's partial weight and bias gradients
  const int64_t grain = row_grain(in, out);
  const int64_t tasks = rows > grain ? at::get_num_threads() : 1;
  std::vector<T> partials(tasks * slot, T(0));
  std::unique_ptr<T[]> gp(new T[rows * width]);  // every element written before it is read
  at::Tensor gx = needs.input ? at::empty({rows, in}, g.options()) : at::Tensor();
  const T *gptr = g.const_data_ptr<T>(), *yp = y.const_data_ptr<T>(), *xp = x.const_data_ptr<T>(),
          *wp = weight.const_data_ptr<T>();
  T* gxp = needs.input ? gx.mutable_data_ptr<T>() : nullptr;
  auto run = [&](int64_t begin, int64_t end, int64_t task) {
    T* mine = partials.data() + task * slot;
    with_constant<1, 2, 4, 8, 16>(blocks, [&](auto blocks_tag) {
      backward_rows<T, decltype(blocks_tag)::value>(gptr, yp, xp, wp, in, out, begin, end, layer, needs, by_output,
                                                    gp.get() + begin * width, mine, mine + weight_slot, gxp);
    });
  };
  if (tasks == 1) {
    run(0, rows, 0);
  } else {
    at::parallel_for(0, rows, grain, [&](int64_t begin, int64_t end) { run(begin, end, at::get_thread_num()); });
  }
  for (int64_t t = 1; t < tasks; ++t) {
    for (int64_t i = 0; i < slot; ++i) partials[i] += partials[t * slot + i];
  }
  if (needs.weight) {
    result.weight = at::empty({out, in}, g.options());
    T* gw = result.weight.mutable_data_ptr<T>();
    for (int64_t o = 0; o < out; ++o) {
      for (int64_t k = 0; k < in; ++k) gw[o * in + k] = by_output ? partials[o * in_width + k] : partials[k * width + o];
    }
  }
  if (needs.bias) {
    result.bias = at::empty({out}, g.options());
    std::copy(partials.begin() + weight_slot, partials.begin() + weight_slot + out, result.bias.mutable_data_ptr<T>());
  }
  result.input = gx;
}

bool is_float_or_double(const at::Tensor& t) {
  return t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble;
}

at::Tensor forward_layer(const at::Tensor& x, const at::Tensor& weight, const at::Tensor& bias, const Layer& layer) {
  if (!is_float_or_double(x) || !takes<float>(x, weight)) return at::Tensor();
  at::Tensor y;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "fastact::_linear_chain", [&] {
    y = small_forward<scalar_t>(x, weight, bias, layer);
  });
  return y;
}

bool backward_layer(const at::Tensor& g, const at::Tensor& x, const at::Tensor& y, const at::Tensor& weight,
                    const Layer& layer, linear_chain::LayerNeeds needs, linear_chain::LayerGrads& out) {
  if (!is_float_or_double(x) || g.scalar_type() != x.scalar_type() || !takes<float>(x, weight)) return false;
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "fastact::_linear_chain_backward", [&] {
    small_backward<scalar_t>(g, x, y, weight, layer, needs, out);
  });
  return true;
}

std::vector<at::Tensor> linear_chain(const at::Tensor& input, at::TensorList weights,
                                     const c10::List<std::optional<at::Tensor>>& biases,
                                     at::IntArrayRef activations, at::ArrayRef<double> negative_slopes) {
  return linear_chain::chain_forward(input, weights, biases, activations, negative_slopes, &forward_layer);
}

std::vector<at::Tensor> linear_chain_backward(const at::Tensor& grad_output, const at::Tensor& input,
                                              at::TensorList outputs, at::TensorList weights,
                                              at::IntArrayRef activations, at::ArrayRef<double> negative_slopes,
                                              at::IntArrayRef needs) {
  return linear_chain::chain_backward(grad_output, input, outputs, weights, activations, negative_slopes, needs,
                                      &backward_layer);
}

// ---- _linear_chain_loss_grad: the whole step on feature-major blocks -------
//
// With every layer small, the step runs on blocks of rows held transposed,
// [features][rows of the block]: a block's row n sits in lane n % kStep of
// its vector n / kStep. Every product is then a vector multiply-add over
// rows with a broadcast weight, all lanes busy whatever the feature counts:
//   forward  y[o] = act(b[o] + sum_k w[o][k] x[k])  (k in order, as the
//            row-major kernel sums it)
//   backward g'[o] = act'(g[o], y[o]); gb[o] += sum of g'[o] over rows;
//            gw[o][k] += sum of g'[o] x[k] over rows (lane by lane, then
//            across the lanes); g_in[k] = sum_o w[o][k] g'[o]
// and the loss is the cross entropy kernel's own row math over the block's
// classes, one row per lane (StridedRows, as its short rows). Nothing is
// transposed back: the step's outputs are the loss and the gradients. Sums
// over rows run in another order than the row-major backward's, so the
// gradients equal the op-by-op step's within float rounding.

// Outputs per register block of block_products, and of the weight gradient.
constexpr int kOutputBlock = Vectorized<float>::size() >= 16 ? 8 : 4;

// dst[o][n] = act(bias[o] + sum_k w[o * so + k * sk] src[k][n]) for o in
// [o0, o0 + kO) and the kV vectors of rows from n0; rows of src and dst are
// `ld` apart. bias may be null (0).
template <typename T, int kO, int kV>
C10_ALWAYS_INLINE void product_block(const T* w, int64_t so, int64_t sk, const T* bias, int64_t o0, int64_t ks,
                                     const T* src, T* dst, int64_t ld, int64_t n0, Activation act,
                                     const Vectorized<T>& slope) {
  using Vec = Vectorized<T>;
  constexpr int64_t kSize = Vec::size();
  std::array<std::array<Vec, kV>, kO> acc;
  for (int j = 0; j < kO; ++j) {
    const Vec b(bias ? bias[o0 + j] : T(0));
    for (int v = 0; v < kV; ++v) acc[j][v] = b;
  }
  for (int64_t k = 0; k < ks; ++k) {
    std::array<Vec, kV> x;
    for (int v = 0; v < kV; ++v) x[v] = Vec::loadu(src + k * ld + n0 + v * kSize);
    for (int j = 0; j < kO; ++j) {
      const Vec wv(w[(o0 + j) * so + k * sk]);
      for (int v = 0; v < kV; ++v) acc[j][v] = at::vec::fmadd(wv, x[v], acc[j][v]);
    }
  }
  for (int j = 0; j < kO; ++j) {
    for (int v = 0; v < kV; ++v) activate(acc[j][v], act, slope).store(dst + (o0 + j) * ld + n0 + v * kSize);
  }
}

// block_products over `outs` outputs and `vectors` vectors of rows.
template <typename T>
void block_products(const T* w, int64_t so, int64_t sk, const T* bias, int64_t outs, int64_t ks, const T* src,
                    T* dst, int64_t ld, int64_t vectors, Activation act, T slope) {
  constexpr int64_t kSize = Vectorized<T>::size();
  const Vectorized<T> slope_vec(slope);
  for (int64_t o0 = 0; o0 < outs;) {
    const int64_t left = outs - o0;
    const int64_t count = left >= kOutputBlock ? kOutputBlock : left >= 4 ? 4 : left >= 2 ? 2 : 1;
    with_constant<1, 2, 4, kOutputBlock>(count, [&](auto o_tag) {
      constexpr int kO = decltype(o_tag)::value;
      int64_t v = 0;
      for (; v + 2 <= vectors; v += 2) {
        product_block<T, kO, 2>(w, so, sk, bias, o0, ks, src, dst, ld, v * kSize, act, slope_vec);
      }
      if (v < vectors) product_block<T, kO, 1>(w, so, sk, bias, o0, ks, src, dst, ld, v * kSize, act, slope_vec);
    });
    o0 += count;
  }
}

// gw[o * in + k] += sum over rows of g[o][n] x[k][n], for kO outputs from o0
// and kK inputs from k0.
template <typename T, int kO, int kK>
C10_ALWAYS_INLINE void weight_grad_block(const T* g, const T* x, int64_t ld, int64_t vectors, int64_t o0, int64_t k0,
                                         int64_t in, T* gw) {
  using Vec = Vectorized<T>;
  constexpr int64_t kSize = Vec::size();
  std::array<std::array<Vec, kK>, kO> acc;
  for (auto& row : acc) row.fill(Vec(0));
  for (int64_t v = 0; v < vectors; ++v) {
    std::array<Vec, kK> xs;
    for (int t = 0; t < kK; ++t) xs[t] = Vec::loadu(x + (k0 + t) * ld + v * kSize);
    for (int j = 0; j < kO; ++j) {
      const Vec gv = Vec::loadu(g + (o0 + j) * ld + v * kSize);
      for (int t = 0; t < kK; ++t) acc[j][t] = at::vec::fmadd(gv, xs[t], acc[j][t]);
    }
  }
  for (int j = 0; j < kO; ++j) {
    for (int t = 0; t < kK; ++t) {
      gw[(o0 + j) * in + k0 + t] += at::vec::vec_reduce_all<T>([](Vec& a, Vec& b) { return a + b; }, acc[j][t]);
    }
  }
}

template <typename T>
void weight_grad(const T* g, const T* x, int64_t ld, int64_t vectors, int64_t out, int64_t in, T* gw) {
  constexpr int kTile = 4;
  auto columns = [&](int64_t o0, auto o_tag) {
    constexpr int kO = decltype(o_tag)::value;
    int64_t k0 = 0;
    for (; k0 + kTile <= in; k0 += kTile) weight_grad_block<T, kO, kTile>(g, x, ld, vectors, o0, k0, in, gw);
    for (; k0 < in; ++k0) weight_grad_block<T, kO, 1>(g, x, ld, vectors, o0, k0, in, gw);
  };
  int64_t o0 = 0;
  for (; o0 + kTile <= out; o0 += kTile) columns(o0, std::integral_constant<int, kTile>());
  for (; o0 < out; ++o0) columns(o0, std::integral_constant<int, 1>());
}

template <typename T>
struct StepLayer {
  const T* weight;  // [out, in], contiguous
  const T* bias;    // [out] or null
  int64_t in, out;
  Layer layer;
  bool need_weight, need_bias;
  int64_t grad_offset;  // of this layer's weight gradient (then its bias's) in a task's partial sums
};

template <typename T>
struct StepProblem {
  std::vector<StepLayer<T>> layers;
  const T* input;
  int64_t input_row_stride, input_col_stride;
  bool cross_entropy;
  Problem<T> loss;          // cross entropy: x, grad and prob_target are set per vector
  const T* dense_target;    // [rows, classes]: probabilities, or the MSE target; else null
  T mse_scale;              // MSE: the gradient's 2 / numel (mean) or 2
  int64_t partial_size;     // every layer's weight and bias gradient sums
  int64_t features, widest;  // the input's and every layer's features, summed; the most of one
  int64_t last_needed;       // the first layer whose gradients are asked for: backward stops there
};

// One task's buffers, kept between calls (per thread): a block's input, each
// layer's output, two gradients and the dense target, all [features][block].
template <typename T>
std::vector<T>& step_workspace(int64_t size) {
  thread_local std::vector<T> buffer;
  if (int64_t(buffer.size()) < size) buffer.resize(size);
  return buffer;
}

// Rows [row0, row0 + rows) of the step, block by block of `block` rows,
// into `partial` (weight and bias gradient sums) and the returned loss sum.
template <typename T>
double step_rows(const StepProblem<T>& P, int64_t row0, int64_t rows, int64_t block, T* partial) {
  using Vec = Vectorized<T>;
  constexpr int64_t kSize = Vec::size();
  const auto& layers = P.layers;
  const int64_t classes = layers.back().out;
  const int64_t features = P.features, widest = P.widest;
  std::vector<T>& work = step_workspace<T>((features + 2 * widest + classes) * block + classes * kSize);
  T* const x_t = work.data();
  T* const grads[2] = {x_t + features * block, x_t + (features + widest) * block};
  T* const target_t = grads[1] + widest * block;
  acc_t<T>* const scratch = target_t + classes * block;
  std::vector<T*> outputs(layers.size());
  outputs[0] = x_t + layers.front().in * block;
  for (size_t l = 1; l < layers.size(); ++l) outputs[l] = outputs[l - 1] + layers[l - 1].out * block;
  double total = 0;
  for (int64_t b0 = row0; b0 < row0 + rows; b0 += block) {
    const int64_t n = std::min(block, row0 + rows - b0), vectors = (n + kSize - 1) / kSize;
    // the block transposed, lanes past its rows zero
    auto transpose_in = [&](const T* src, int64_t rs, int64_t cs, int64_t cols, T* dst) {
      for (int64_t c = 0; c < cols; ++c) {
        T* d = dst + c * block;
        for (int64_t r = 0; r < n; ++r) d[r] = src[(b0 + r) * rs + c * cs];
        std::fill(d + n, d + vectors * kSize, T(0));
      }
    };
    // Lanes past the block's rows hold exact zeros in every buffer, so that
    // they add nothing to a sum over rows (an inf weight times a zero lane
    // would put a NaN there).
    auto zero_tail = [&](T* rows_of, int64_t count) {
      if (n == vectors * kSize) return;
      for (int64_t c = 0; c < count; ++c) std::fill(rows_of + c * block + n, rows_of + c * block + vectors * kSize, T(0));
    };
    transpose_in(P.input, P.input_row_stride, P.input_col_stride, layers.front().in, x_t);
    if (P.dense_target) transpose_in(P.dense_target, classes, 1, classes, target_t);
    const T* source = x_t;
    for (size_t l = 0; l < layers.size(); ++l) {
      const auto& L = layers[l];
      block_products<T>(L.weight, L.in, 1, L.bias, L.out, L.in, source, outputs[l], block, vectors, L.layer.act,
                        T(L.layer.slope));
      zero_tail(outputs[l], L.out);
      source = outputs[l];
    }
    // the loss and its gradient, into grads[0]
    T* g = grads[0];
    const T* y = outputs.back();
    for (int64_t v = 0; v < vectors; ++v) {
      const int64_t lanes = std::min(kSize, n - v * kSize), at = v * kSize;
      if (P.cross_entropy) {
        // a partial vector's store leaves the lanes past its rows: zero them first
        if (lanes < kSize) {
          for (int64_t c = 0; c < classes; ++c) Vec(0).store(g + c * block + at);
        }
        const StridedRows<T> tile{classes, block, lanes};
        const auto target = P.loss.index_target
                                ? target_lanes<Vec>(P.loss, P.loss.index_target + b0 + at, lanes)
                                : TargetLanes<Vec>{Vec(-1), Vec(1), Vec(0) == Vec(0), {-1}};
        const Vec l = cross_entropy_rows(P.loss, tile, y + at, P.dense_target ? target_t + at : nullptr, g + at,
                                         target, scratch);
        T losses[kSize];
        l.store(losses);
        for (int64_t k = 0; k < lanes; ++k) total += losses[k];
      } else {
        const Vec valid = LastDimRow<T>::lane_index() < Vec(T(lanes));
        Vec sum(0);
        for (int64_t c = 0; c < classes; ++c) {
          const Vec d = Vec::blendv(Vec(0), Vec::loadu(y + c * block + at) - Vec::loadu(target_t + c * block + at),
                                    valid);
          (Vec(P.mse_scale) * d).store(g + c * block + at);
          sum = at::vec::fmadd(d, d, sum);
        }
        T squares[kSize];
        sum.store(squares);
        for (int64_t k = 0; k < lanes; ++k) total += squares[k];
      }
    }
    // backward, last layer first
    for (size_t l = layers.size(); l-- > 0;) {
      const auto& L = layers[l];
      const T* y_l = outputs[l];
      const T* x_l = l == 0 ? x_t : outputs[l - 1];
      if (L.layer.act != Activation::None) {
        const Vec slope(T(L.layer.slope));
        with_activation(L.layer.act, [&](auto act_tag) {
          for (int64_t o = 0; o < L.out; ++o) {
            for (int64_t v = 0; v < vectors; ++v) {
              T* gp = g + o * block + v * kSize;
              activation_grad(Vec::loadu(gp), Vec::loadu(y_l + o * block + v * kSize), decltype(act_tag)::value,
                              slope)
                  .store(gp);
            }
          }
        });
      }
      T* gw = partial + L.grad_offset;
      if (L.need_weight) weight_grad(g, x_l, block, vectors, L.out, L.in, gw);
      if (L.need_bias) {
        T* gb = gw + L.out * L.in;
        for (int64_t o = 0; o < L.out; ++o) {
          Vec sum(0);
          for (int64_t v = 0; v < vectors; ++v) sum = sum + Vec::loadu(g + o * block + v * kSize);
          gb[o] += at::vec::vec_reduce_all<T>([](Vec& a, Vec& b) { return a + b; }, sum);
        }
      }
      if (int64_t(l) <= P.last_needed) break;
      T* g_in = g == grads[0] ? grads[1] : grads[0];
      block_products<T>(L.weight, 1, L.in, nullptr, L.in, L.out, g, g_in, block, vectors, Activation::None, T(0));
      zero_tail(g_in, L.in);
      g = g_in;
    }
  }
  return total;
}

// Whether the step takes the call: CPU float or double, every layer small,
// no input gradient asked, rows to step, and a target and class weight the
// loss kernel reads as they are (others go to the composite, whose ops
// raise the errors for what is wrong with them).
bool step_takes(const at::Tensor& input, const at::Tensor& target, at::TensorList weights, at::IntArrayRef needs,
                bool cross_entropy, const std::optional<at::Tensor>& class_weight) {
  if (!input.device().is_cpu() || !is_float_or_double(input) || needs[0] != 0 || input.dim() < 1 ||
      input.numel() == 0) {
    return false;
  }
  for (const auto& w : weights) {
    if (w.size(0) > linear_chain::kSmallFeatures || w.size(1) > linear_chain::kSmallFeatures) return false;
  }
  const int64_t rows = input.numel() / input.size(-1), classes = weights.back().size(0);
  if (cross_entropy) {
    if (input.dim() != 2) return false;
    if (class_weight.has_value() &&
        (class_weight->scalar_type() != input.scalar_type() || class_weight->dim() != 1 ||
         class_weight->size(0) != classes || !class_weight->device().is_cpu())) {
      return false;
    }
    if (target.scalar_type() == at::kLong) return target.dim() == 1 && target.size(0) == rows;
  } else if (class_weight.has_value()) {
    return false;
  }
  return target.scalar_type() == input.scalar_type() && target.device().is_cpu() &&
         target.numel() == rows * classes && target.size(-1) == classes &&
         (cross_entropy ? target.dim() == 2 : target.sizes().slice(0, target.dim() - 1) ==
                                                  input.sizes().slice(0, input.dim() - 1));
}

template <typename T>
TensorAndList chain_step(const at::Tensor& input, const at::Tensor& target, at::TensorList weights,
                         const c10::List<std::optional<at::Tensor>>& biases, const std::vector<Layer>& parsed,
                         at::IntArrayRef needs, bool cross_entropy, const std::optional<at::Tensor>& class_weight,
                         int64_t reduction, int64_t ignore_index, double label_smoothing) {
  const int64_t in = input.size(-1), rows = input.numel() / in;
  const at::Tensor x = input.reshape({rows, in});
  std::vector<at::Tensor> held;  // contiguous copies, alive for the call
  StepProblem<T> P{};
  int64_t offset = 0, macs = 0;
  for (size_t l = 0; l < weights.size(); ++l) {
    held.push_back(weights[l].contiguous());
    const std::optional<at::Tensor> b = biases.get(l);
    const at::Tensor bias = b.has_value() && b->defined() ? b->contiguous() : at::Tensor();
    held.push_back(bias);
    const int64_t out = weights[l].size(0), fan_in = weights[l].size(1);
    P.layers.push_back({held[2 * l].const_data_ptr<T>(), bias.defined() ? bias.const_data_ptr<T>() : nullptr, fan_in,
                        out, parsed[l], needs[2 * l + 1] != 0, needs[2 * l + 2] != 0 && bias.defined(), offset});
    offset += out * fan_in + out;
    macs += out * fan_in;
  }
  P.partial_size = offset;
  P.input = x.const_data_ptr<T>();
  P.input_row_stride = x.stride(0);
  P.input_col_stride = x.stride(1);
  P.cross_entropy = cross_entropy;
  const int64_t classes = weights.back().size(0);
  const at::Tensor t = target.contiguous();
  const at::Tensor weight = class_weight.has_value() ? class_weight->contiguous() : at::Tensor();
  double denominator = double(rows * classes);
  if (cross_entropy) {
    const bool probs = t.scalar_type() != at::kLong;
    const T* w = weight.defined() ? weight.const_data_ptr<T>() : nullptr;
    const int64_t* index = probs ? nullptr : t.const_data_ptr<int64_t>();
    denominator = probs ? double(rows) : check_targets(index, rows, classes, w, ignore_index);
    if (denominator == 0) return {};  // all ignored: the composite's nan and inf, as torch
    double weight_total = double(classes);
    if (w) {
      weight_total = 0;
      for (int64_t c = 0; c < classes; ++c) weight_total += double(w[c]);
    }
    P.loss = Problem<T>{nullptr, index, nullptr, w, classes, ignore_index, T(label_smoothing > 0 ? label_smoothing : 0),
                        T(weight_total),
                        T(mean_grad_scale(reduction == kMean, denominator, !probs && label_smoothing > 0)), nullptr,
                        false};
    P.dense_target = probs ? t.const_data_ptr<T>() : nullptr;
  } else {
    P.dense_target = t.const_data_ptr<T>();
    P.mse_scale = T(reduction == kMean ? 2. / double(rows * classes) : 2.);
  }
  // Blocks of rows whose buffers stay in L2; several tasks only when the
  // step has the work for them.
  constexpr int64_t kSize = Vectorized<T>::size();
  P.features = P.widest = in;
  P.last_needed = int64_t(P.layers.size());
  for (size_t l = 0; l < P.layers.size(); ++l) {
    const auto& L = P.layers[l];
    P.features += L.out, P.widest = std::max(P.widest, L.out);
    if (L.need_weight || L.need_bias) P.last_needed = std::min<int64_t>(P.last_needed, l);
  }
  const int64_t per_row = P.features + 2 * P.widest + classes;
  const bool parallel = 3 * macs * rows >= (int64_t(1) << 21) && at::get_num_threads() > 1 && !at::in_parallel_region();
  const int64_t tasks = parallel ? at::get_num_threads() : 1;
  const int64_t share = (rows + tasks - 1) / tasks;
  int64_t block = std::max<int64_t>(kSize, (int64_t(48) * 1024 / per_row) / kSize * kSize);
  block = std::min(block, (share + kSize - 1) / kSize * kSize);
  std::vector<T> partials(tasks * P.partial_size, T(0));
  std::vector<double> totals(tasks, 0.0);
  auto task = [&](int64_t id) {
    const int64_t first = id * share, count = std::min(rows, first + share) - first;
    if (count > 0) totals[id] = step_rows(P, first, count, block, partials.data() + id * P.partial_size);
  };
  if (tasks == 1) {
    task(0);
  } else {
    at::parallel_for(0, tasks, 1, [&](int64_t b, int64_t e) {
      for (int64_t id = b; id < e; ++id) task(id);
    });
  }
  double total = 0;
  for (int64_t id = 0; id < tasks; ++id) {
    total += totals[id];
    if (id > 0) {
      for (int64_t i = 0; i < P.partial_size; ++i) partials[i] += partials[id * P.partial_size + i];
    }
  }
  const at::TensorOptions options = input.options();
  std::vector<at::Tensor> grads(1 + 2 * P.layers.size());
  grads[0] = at::empty({0}, options);
  for (size_t l = 0; l < P.layers.size(); ++l) {
    const auto& L = P.layers[l];
    const T* sums = partials.data() + L.grad_offset;
    grads[2 * l + 1] = L.need_weight ? at::empty({L.out, L.in}, options) : at::empty({0}, options);
    if (L.need_weight) std::copy(sums, sums + L.out * L.in, grads[2 * l + 1].mutable_data_ptr<T>());
    grads[2 * l + 2] = L.need_bias ? at::empty({L.out}, options) : at::empty({0}, options);
    if (L.need_bias) std::copy(sums + L.out * L.in, sums + L.out * L.in + L.out, grads[2 * l + 2].mutable_data_ptr<T>());
  }
  const double value = reduction == kMean ? total / denominator : total;
  return {at::scalar_tensor(value, options), grads};
}

TensorAndList linear_chain_loss_grad(const at::Tensor& input, const at::Tensor& target, at::TensorList weights,
                                     const c10::List<std::optional<at::Tensor>>& biases,
                                     at::IntArrayRef activations, at::ArrayRef<double> negative_slopes,
                                     at::IntArrayRef needs, int64_t loss, const std::optional<at::Tensor>& class_weight,
                                     int64_t reduction, int64_t ignore_index, double label_smoothing) {
  linear_chain::check_chain_loss(loss, reduction);
  const std::vector<Layer> layers = linear_chain::check_chain(input, weights, biases, activations, negative_slopes);
  TORCH_CHECK(needs.size() == 1 + 2 * weights.size(), "fastact._linear_chain_loss_grad: expected 1 + 2 x ",
              weights.size(), " needs, got ", needs.size());
  const bool cross_entropy = loss == int64_t(linear_chain::ChainLoss::CrossEntropy);
  TensorAndList result;
  // binary cross entropy: the composite (the chain's kernels and BCE's, no graph)
  const bool own_loss = loss != int64_t(linear_chain::ChainLoss::BceWithLogits);
  // the activations its block kernel differentiates from their outputs
  const bool own_activations = std::all_of(layers.begin(), layers.end(), linear_chain::keeps_output);
  if (own_loss && own_activations && step_takes(input, target, weights, needs, cross_entropy, class_weight)) {
    AT_DISPATCH_FLOATING_TYPES(input.scalar_type(), "fastact::_linear_chain_loss_grad", [&] {
      result = chain_step<scalar_t>(input, target, weights, biases, layers, needs, cross_entropy, class_weight,
                                    reduction, ignore_index, label_smoothing);
    });
  }
  if (std::get<0>(result).defined()) return result;
  return linear_chain::chain_loss_grad(input, target, weights, biases, activations, negative_slopes, needs, loss,
                                       class_weight, reduction, ignore_index, label_smoothing);
}

}  // namespace

void register_linear_chain(CpuKernels& kernels) {
  kernels._linear_chain = &linear_chain;
  kernels._linear_chain_backward = &linear_chain_backward;
  kernels._linear_chain_loss_grad = &linear_chain_loss_grad;
}

}  // namespace fastact::cpu::CPU_CAPABILITY
