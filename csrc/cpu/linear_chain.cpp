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
#include "cpu/vec_io.h"
#include "cpu_shared/capability.h"
#include "linear_chain.h"

#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>

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
  }
  return v;
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
  }
  return g;
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

}  // namespace

void register_linear_chain(CpuKernels& kernels) {
  kernels._linear_chain = &linear_chain;
  kernels._linear_chain_backward = &linear_chain_backward;
}

}  // namespace fastact::cpu::CPU_CAPABILITY
