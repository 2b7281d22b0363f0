// Vector loads and stores shared by the CPU kernels: every dtype is read into
// vectors of its accumulation type (fp32 for half/bfloat16) and written back,
// so each kernel's math is written once for all dtypes.
#pragma once

// at::vec picks its specialisation from CPU_CAPABILITY_*, and puts each in its
// own inline namespace (at::vec::CPU_CAPABILITY), as do these kernels
// (fastact::cpu::CPU_CAPABILITY): setup.py compiles every file in cpu/ once
// per capability with that capability's flags and macros. Must precede any
// ATen vec header.
#if !defined(CPU_CAPABILITY)
#error "csrc/cpu/ is compiled once per CPU capability: setup.py defines CPU_CAPABILITY"
#endif
#if (defined(CPU_CAPABILITY_AVX512) && !(defined(__AVX512F__) && defined(__AVX512BW__) && \
                                         defined(__AVX512VL__) && defined(__AVX512DQ__) && defined(__FMA__))) || \
    (defined(CPU_CAPABILITY_AVX2) && !(defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)))
#error "CPU_CAPABILITY names an instruction set the compiler flags do not enable"
#endif

#include <ATen/Parallel.h>
#include <ATen/OpMathType.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>

#include "constants.h"
#include "vec_tables.h"

#include <algorithm>
#include <functional>
#include <limits>
#include <cstdint>
#include <type_traits>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

namespace fastact::cpu::CPU_CAPABILITY {

using at::vec::Vectorized;

// What the arithmetic runs in: fp32 for half and bfloat16, the type itself
// otherwise (torch's opmath_type).
template <typename T>
using acc_t = at::opmath_type<T>;

// Below this many elements a kernel runs on the calling thread: waking the
// OpenMP pool costs more than the work (ATen's grain size for the same reason).
constexpr int64_t kSerialGrain = 32768;

inline bool use_streaming_stores(int64_t bytes) {
  return bytes >= kStreamingStoreBytes;
}

template <typename T>
struct VecIO {
  using Acc = acc_t<T>;
  using Vec = Vectorized<Acc>;
  static constexpr int64_t kStep = Vec::size();
  static constexpr bool kReduced = !std::is_same_v<Acc, T>;

  static Vec load(const T* p) {
    if constexpr (kReduced) {
      Vec out;
      at::vec::load_to_float<T>(p, out);
      return out;
    } else {
      return Vec::loadu(p);
    }
  }
  // Lanes at and past `count` are zero.
  static Vec load(const T* p, int64_t count) {
    if (count == kStep) return load(p);
    if constexpr (kReduced) {
      auto [lo, hi] = at::vec::convert_to_float<T>(Vectorized<T>::loadu(p, count));
      (void)hi;
      return lo;
    } else {
      return Vec::loadu(p, count);
    }
  }
  static void store(T* p, const Vec& v, int64_t count = kStep) {
    if constexpr (kReduced) {
      at::vec::convert_from_float<T>(v, v).store(p, count);
    } else {
      v.store(p, count);
    }
  }
  // Non-temporal store of a full vector; `p` must be aligned to its width.
  static void stream(T* p, const Vec& v) {
#if defined(CPU_CAPABILITY_AVX512)
    if constexpr (kReduced) {
      // The low half of the packed vector holds the kStep converted values.
      __m512i packed = at::vec::convert_from_float<T>(v, v);
      _mm256_stream_si256(reinterpret_cast<__m256i*>(p), _mm512_castsi512_si256(packed));
    } else if constexpr (std::is_same_v<T, float>) {
      _mm512_stream_ps(p, v);
    } else if constexpr (std::is_same_v<T, double>) {
      _mm512_stream_pd(p, v);
    } else {
      _mm512_stream_si512(reinterpret_cast<__m512i*>(p), v);
    }
#elif defined(CPU_CAPABILITY_AVX2)
    if constexpr (kReduced) {
      __m256i packed = at::vec::convert_from_float<T>(v, v);
      _mm_stream_si128(reinterpret_cast<__m128i*>(p), _mm256_castsi256_si128(packed));
    } else if constexpr (std::is_same_v<T, float>) {
      _mm256_stream_ps(p, v);
    } else if constexpr (std::is_same_v<T, double>) {
      _mm256_stream_pd(p, v);
    } else {
      _mm256_stream_si256(reinterpret_cast<__m256i*>(p), v);
    }
#else
    store(p, v);
#endif
  }
  static bool stream_aligned(const T* p) {
    return reinterpret_cast<uintptr_t>(p) % (kStep * sizeof(T)) == 0;
  }
};

#if defined(CPU_CAPABILITY_AVX512) || defined(CPU_CAPABILITY_AVX2)
#define FASTACT_OWN_EXP 1
// fastact's float exp and expm1 (below) on AVX-512 and AVX2; the ISAs differ
// only in how 2^n is applied (pow2, scale_by_pow2).

// x clamped to [lowest, highest] with NaN kept: x86's max and min return
// their second operand where either is NaN, and x is the inner one's.
C10_ALWAYS_INLINE Vectorized<float> clamp_keeping_nan(const Vectorized<float>& x, float lowest, float highest) {
#if defined(CPU_CAPABILITY_AVX512)
  return _mm512_min_ps(_mm512_set1_ps(highest), _mm512_max_ps(_mm512_set1_ps(lowest), x));
#else
  return _mm256_min_ps(_mm256_set1_ps(highest), _mm256_max_ps(_mm256_set1_ps(lowest), x));
#endif
}

#if !defined(CPU_CAPABILITY_AVX512)
// 2^k for integral k in [-126, 128] (128 gives inf), from its exponent bits.
C10_ALWAYS_INLINE __m256 pow2_of_int(const __m256i& k) {
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(k, _mm256_set1_epi32(127)), 23));
}
#endif

// 2^n for integral n in [-126, 128] (128 gives inf).
C10_ALWAYS_INLINE Vectorized<float> pow2(const Vectorized<float>& n) {
#if defined(CPU_CAPABILITY_AVX512)
  return _mm512_scalef_ps(_mm512_set1_ps(1.f), n);
#else
  return pow2_of_int(_mm256_cvtps_epi32(n));
#endif
}

// p * 2^n for integral n in [-150, 128], rounded once: AVX-512's scalef;
// AVX2 in two factors 2^(n/2) and 2^(n - n/2), both normal, the first
// product exact, so a subnormal result underflows gradually as with scalef.
C10_ALWAYS_INLINE Vectorized<float> scale_by_pow2(const Vectorized<float>& p, const Vectorized<float>& n) {
#if defined(CPU_CAPABILITY_AVX512)
  return _mm512_scalef_ps(p, n);
#else
  const __m256i whole = _mm256_cvtps_epi32(n), half = _mm256_srai_epi32(whole, 1);
  return _mm256_mul_ps(_mm256_mul_ps(p, pow2_of_int(half)), pow2_of_int(_mm256_sub_epi32(whole, half)));
#endif
}

// x = n ln2 + r for exp and expm1: x clamped into [lowest, 89] (the clamp's
// constants first, so NaN stays NaN), n = round(x / ln 2), and r = x - n ln2
// in two parts (Cody-Waite), so r is exact and |r| <= ln2 / 2.
struct ExpReduction {
  Vectorized<float> n, r;
};

C10_ALWAYS_INLINE ExpReduction exp_reduction(const Vectorized<float>& x, float lowest) {
  using Vec = Vectorized<float>;
  const Vec clamped = clamp_keeping_nan(x, lowest, 89.f);
  const Vec n = (clamped * Vec(1.44269504088896341f)).round();
  const Vec r = at::vec::fnmadd(n, Vec(0.693359375f), clamped);
  return {n, at::vec::fnmadd(n, Vec(-2.12194440e-4f), r)};
}

// sum of r^k / k! for k from `lowest` to kHighest, by Horner's rule.
template <int kHighest>
C10_ALWAYS_INLINE Vectorized<float> exp_taylor(const Vectorized<float>& r, int lowest) {
  float coefficient[kHighest + 1];
  double factorial = 1;
  for (int k = 0; k <= kHighest; ++k) {
    factorial *= k > 0 ? k : 1;
    coefficient[k] = float(1 / factorial);  // 1 / k! correctly rounded: exact factorials
  }
  Vectorized<float> p(coefficient[kHighest]);
  for (int k = kHighest - 1; k >= lowest; --k) p = at::vec::fmadd(p, r, Vectorized<float>(coefficient[k]));
  return p;
}
#endif

// exp in float32 vectors, within 1 ulp of the exact value (tests/test_vec_exp.py
// sweeps it), inlined and cheaper than Sleef's 1-ulp expf (a call per
// vector): exp(x) = 2^n * exp(r) (exp_reduction), exp(r) by its degree-7
// Taylor polynomial (truncation below 1e-8), and 2^n applied last
// (scale_by_pow2), which also overflows to inf and underflows gradually to 0.
// Elsewhere (the baseline build, double): Sleef.
template <typename Acc>
C10_ALWAYS_INLINE Vectorized<Acc> vec_exp(const Vectorized<Acc>& x) {
#if defined(FASTACT_OWN_EXP)
  if constexpr (std::is_same_v<Acc, float>) {
    const ExpReduction e = exp_reduction(x, -104.f);
    return scale_by_pow2(exp_taylor<7>(e.r, 0), e.n);
  }
#endif
  return x.exp();
}

// expm1 in float32 vectors, within 1 ulp (tests/test_vec_exp.py sweeps it
// through SELU), about vec_exp's cost where Sleef's expm1 costs several
// times more: expm1(x) = 2^n expm1(r) + (2^n - 1), with expm1(r) = r + r^2
// P(r) (Taylor to degree 8) and the sum rounded once (fma). 2^n - 1 is exact
// down to n = -24 and -1 below. x = +-0 returns x (the sum would give +0
// for -0). Elsewhere: Sleef.
template <typename Acc>
C10_ALWAYS_INLINE Vectorized<Acc> vec_expm1(const Vectorized<Acc>& x) {
#if defined(FASTACT_OWN_EXP)
  if constexpr (std::is_same_v<Acc, float>) {
    using Vec = Vectorized<float>;
    const ExpReduction e = exp_reduction(x, -30.f);
    const Vec expm1_r = at::vec::fmadd(e.r * e.r, exp_taylor<8>(e.r, 2), e.r);
    const Vec two_n = pow2(e.n);
    return Vec::blendv(at::vec::fmadd(expm1_r, two_n, two_n - Vec(1.f)), x, x == Vec(0.f));
  }
#endif
  return x.expm1();
}

// log1p(e) for e in [0, 1] (softplus's log1p(exp(-|x|))) in float32
// vectors: e + e^2 q(e), q a near-minimax degree-8 fit of
// (log1p(e) / e - 1) / e (relative error weighted, by Lawson's iteration),
// within 1.2 ulp of log1p over [0, 1], NaN for NaN. Sleef's log1p, a call per
// vector with a general argument reduction, was two thirds of binary cross
// entropy's time. Other types: Sleef.
template <typename Acc>
C10_ALWAYS_INLINE Vectorized<Acc> vec_log1p_unit(const Vectorized<Acc>& e) {
  if constexpr (std::is_same_v<Acc, float>) {
    using Vec = Vectorized<float>;
    constexpr float q[] = {-0.4999999701976776f, 0.3333286643028259f, -0.24987024068832397f,
                           0.19857951998710632f, -0.15862256288528442f, 0.11592470854520798f,
                           -0.06711277365684509f, 0.02543901838362217f, -0.004519206006079912f};
    Vec p(q[8]);
    for (int k = 7; k >= 0; --k) p = at::vec::fmadd(p, e, Vec(q[k]));
    return at::vec::fmadd(e, p * e, e);
  }
  return e.log1p();
}

#if defined(CPU_CAPABILITY_AVX512) || defined(CPU_CAPABILITY_AVX2)
// f(|x|) from one of csrc/cpu/vec_tables.h's tables of degree-7 polynomials
// (two or four per binade of |x|; see tools/vec_tables.py): 32 of them on
// AVX-512, 8 on AVX2. The index is the bits of `index_from` (|x|, or |x|
// clamped into the table's range) shifted right by table.shift (22 or 21:
// the exponent and the first one or two mantissa bits), whose low 5 bits
// vpermt2ps reads (low 3: vpermps), so each coefficient for a vector is one
// permute of a register pair (of one register).
// f(s + t) = f(s) + t q(t) around a centre s whose f is a float, so only the
// small term is rounded.
#if defined(CPU_CAPABILITY_AVX512)
using VecTable = PolynomialTable<32>;
using TableIndex = __m512i;
C10_ALWAYS_INLINE TableIndex table_index(const Vectorized<float>& index_from, int shift) {
  return _mm512_srli_epi32(_mm512_castps_si512(index_from), shift);
}
C10_ALWAYS_INLINE Vectorized<float> table_row(const float* row, TableIndex index) {
  return _mm512_permutex2var_ps(_mm512_load_ps(row), index, _mm512_load_ps(row + 16));
}
#else
using VecTable = PolynomialTable<8>;
using TableIndex = __m256i;
C10_ALWAYS_INLINE TableIndex table_index(const Vectorized<float>& index_from, int shift) {
  return _mm256_srli_epi32(_mm256_castps_si256(index_from), shift);
}
C10_ALWAYS_INLINE Vectorized<float> table_row(const float* row, TableIndex index) {
  return _mm256_permutevar8x32_ps(_mm256_load_ps(row), index);
}
#endif

template <int kIntervals>
C10_ALWAYS_INLINE Vectorized<float> table_polynomial(const PolynomialTable<kIntervals>& table,
                                                     const Vectorized<float>& magnitude,
                                                     const Vectorized<float>& index_from) {
  using Vec = Vectorized<float>;
  const TableIndex index = table_index(index_from, table.shift);
  const Vec t = magnitude - table_row(table.rows[0], index);
  Vec q = table_row(table.rows[kTableDegree + 2], index);
  for (int row = kTableDegree + 1; row >= 2; --row) q = at::vec::fmadd(q, t, table_row(table.rows[row], index));
  return at::vec::fmadd(q, t, table_row(table.rows[1], index));
}

// x > 0 ? 1 - f(|x|) : f(|x|), for the tables of [0, limit) whose first
// interval is fitted from 0 (the normal CDF's and GELU slope's tails, limit
// 8): indexed by max(|x|, first); f is taken as 0 from the limit on (it is
// below 1e-13 there), so GELU(-inf) is -inf * 0 = NaN as in torch. NaN fails
// that test, and clamp_keeping_nan keeps it, so it stays NaN through the
// index and t.
C10_ALWAYS_INLINE Vectorized<float> reflected_tail_table(const VecTable& table, const Vectorized<float>& x) {
  using Vec = Vectorized<float>;
  const Vec magnitude = x.abs();
  const Vec index_from = clamp_keeping_nan(magnitude, table.first, std::numeric_limits<float>::infinity());
  const Vec f = Vec::blendv(table_polynomial(table, magnitude, index_from), Vec(0.f), magnitude >= Vec(table.limit));
  return Vec::blendv(f, Vec(1.f) - f, x > Vec(0.f));
}
#endif

// tanh in float32 vectors, within 1 ulp of the correctly rounded value
// (tests/test_vec_exp.py sweeps it), computed on |x| with x's sign bit put
// back last (so -0 stays -0).
// AVX-512: table_polynomial over |x| in [2^-12, 16), a permute per
// coefficient instead of an exp and a division: about 2x cheaper than the
// formula below, which left tanh at 0.6x of torch's (MKL's) at
// cache-resident sizes. Below the table's first (2^-12) tanh(x) rounds to x,
// from its limit (9.1) on to 1 (blended: the index wraps there). NaN goes
// through and stays NaN.
// AVX2 and the baseline: for |x| >= 0.625, 1 - 2 / (exp(2|x|) + 1), which
// cancels nothing there (tanh >= 0.55) and reaches 1 once exp overflows;
// below, Cephes' odd polynomial x + x z P(z), z = x^2.
// Other accumulation types (double) keep Sleef's.
template <typename Acc>
C10_ALWAYS_INLINE Vectorized<Acc> vec_tanh(const Vectorized<Acc>& x) {
  if constexpr (std::is_same_v<Acc, float>) {
    using Vec = Vectorized<float>;
    const Vec magnitude = x.abs();
#if defined(CPU_CAPABILITY_AVX512)
    __m512 result = table_polynomial(kTanhTable, magnitude, magnitude);
    result = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(magnitude, _mm512_set1_ps(kTanhTable.first), _CMP_LT_OQ),
                                  result, magnitude);
    result = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(magnitude, _mm512_set1_ps(kTanhTable.limit), _CMP_GE_OQ),
                                  result, _mm512_set1_ps(1.f));
    return Vec(result) | (x & Vec(-0.f));
#else
    const Vec one(1.f), two(2.f);
    const Vec large = one - two / (vec_exp(two * magnitude) + one);
    const Vec z = magnitude * magnitude;
    Vec p(-5.70498872745e-3f);
    p = at::vec::fmadd(p, z, Vec(2.06390887954e-2f));
    p = at::vec::fmadd(p, z, Vec(-5.37397155531e-2f));
    p = at::vec::fmadd(p, z, Vec(1.33314422036e-1f));
    p = at::vec::fmadd(p, z, Vec(-3.33332819422e-1f));
    const Vec small = at::vec::fmadd(magnitude * z, p, magnitude);
    const Vec result = Vec::blendv(large, small, magnitude < Vec(0.625f));
    return result | (x & Vec(-0.f));
#endif
  } else {
    return x.tanh();
  }
}

// The standard normal CDF Phi(x) = (1 + erf(x / sqrt 2)) / 2 in float32
// vectors, from h = Phi(-|x|) (Phi(x) = 1 - h for x > 0, so the negative
// side's 1 + erf cancels nothing).
// AVX-512 and AVX2: h from reflected_tail_table, with no exp and no
// division (absolute error below 1e-9 from AVX-512's 32 intervals, 3e-8
// from AVX2's 8). GELU's forward at cache-resident sizes went from 0.7-0.9x
// of torch's (oneDNN's JIT GELU, the formula below) to ahead of it on
// AVX-512, and from 0.9-1.2x on AVX2.
// The baseline build: Abramowitz & Stegun 7.1.26, the erf of at::vec's float
// Vectorized::erf and of oneDNN's GELU:
// erf(z) = 1 - t P(t) exp(-z^2), t = 1 / (1 + p|z|), absolute error below
// 1.5e-7, with fastact's vec_exp instead of Sleef's 1-ulp expf. `gauss` is
// exp(-x^2 / 2), which GELU's backward also needs for the density. Other
// accumulation types (double): Sleef's erf.
#if defined(CPU_CAPABILITY_AVX512)
inline constexpr const VecTable& kNormalTail = kNormalTailTable;
inline constexpr const VecTable& kGeluSlope = kGeluSlopeTable;
#elif defined(CPU_CAPABILITY_AVX2)
inline constexpr const VecTable& kNormalTail = kNormalTailTable8;
inline constexpr const VecTable& kGeluSlope = kGeluSlopeTable8;
#endif

template <typename Acc>
C10_ALWAYS_INLINE Vectorized<Acc> vec_normal_cdf(const Vectorized<Acc>& x, const Vectorized<Acc>& gauss) {
  using Vec = Vectorized<Acc>;
  if constexpr (std::is_same_v<Acc, float>) {
    const Vec one(1.f);
    const Vec t = one / at::vec::fmadd(Vec(0.3275911f * float(M_SQRT1_2)), x.abs(), one);
    // A&S's coefficients halved
    Vec p(0.5f * 1.061405429f);
    p = at::vec::fmadd(p, t, Vec(0.5f * -1.453152027f));
    p = at::vec::fmadd(p, t, Vec(0.5f * 1.421413741f));
    p = at::vec::fmadd(p, t, Vec(0.5f * -0.284496736f));
    p = at::vec::fmadd(p, t, Vec(0.5f * 0.254829592f));
    const Vec h = p * t * gauss;
    return Vec::blendv(h, one - h, x > Vec(0.f));
  } else {
    (void)gauss;
    return Vec(0.5) * (Vec(1) + (x * Vec(M_SQRT1_2)).erf());
  }
}
template <typename Acc>
C10_ALWAYS_INLINE Vectorized<Acc> vec_normal_cdf(const Vectorized<Acc>& x) {
  if constexpr (std::is_same_v<Acc, float>) {
#if defined(CPU_CAPABILITY_AVX512) || defined(CPU_CAPABILITY_AVX2)
    // clamped: where Phi(-u) is below the fit's error (u past 4 on AVX2),
    // the polynomial can dip below 0, and GELU(x) would take the wrong sign
    return clamp_keeping_nan(reflected_tail_table(kNormalTail, x), 0.f, 1.f);
#else
    return vec_normal_cdf(x, vec_exp(Vectorized<Acc>(-0.5f) * x * x));
#endif
  }
  return vec_normal_cdf(x, x);  // (double: Sleef's erf)
}

// GELU's derivative d/dx x Phi(x) = Phi(x) + x phi(x). AVX-512 and AVX2
// float32: one table, Phi(-u) - u phi(u) for u = |x| (reflected_tail_table;
// no exp), NaN at +-inf as torch's (inf * phi(inf) = inf * 0).
// Elsewhere from exp(-x^2 / 2), shared by Phi (vec_normal_cdf) and phi.
template <typename Acc>
C10_ALWAYS_INLINE Vectorized<Acc> vec_gelu_slope(const Vectorized<Acc>& x) {
  using Vec = Vectorized<Acc>;
#if defined(CPU_CAPABILITY_AVX512) || defined(CPU_CAPABILITY_AVX2)
  if constexpr (std::is_same_v<Acc, float>) {
    return Vec::blendv(reflected_tail_table(kGeluSlope, x), Vec(std::numeric_limits<float>::quiet_NaN()),
                       x.abs() == Vec(std::numeric_limits<float>::infinity()));
  }
#endif
  const Vec gauss = vec_exp(Vec(Acc(-0.5)) * x * x);
  return vec_normal_cdf(x, gauss) + x * gauss * Vec(Acc(0.3989422804014327));  // 1 / sqrt(2 pi)
}

// Reduction operators, as functions to pass to reductions.
template <typename Vec>
Vec vec_max(const Vec& a, const Vec& b) {
  return at::vec::maximum(a, b);  // propagates NaN, so a NaN row stays NaN
}
template <typename Vec>
Vec vec_add(const Vec& a, const Vec& b) {
  return a + b;
}

inline void streaming_store_fence() {
#if defined(__x86_64__)
  _mm_sfence();
#endif
}

// out[i : i + kStep] = body(i, count) for i = 0, kStep, ... < n, where count
// is kStep except for the tail. Streams when asked and `out` is aligned.
template <typename T, typename Body>
inline void map_vectors(T* out, int64_t n, bool stream, const Body& body) {
  using IO = VecIO<T>;
  int64_t i = 0;
  if (stream && IO::stream_aligned(out)) {
    for (; i + IO::kStep <= n; i += IO::kStep) IO::stream(out + i, body(i, IO::kStep));
  } else {
    for (; i + IO::kStep <= n; i += IO::kStep) IO::store(out + i, body(i, IO::kStep));
  }
  if (i < n) IO::store(out + i, body(i, n - i), n - i);
}

// Runs f(begin, end) over [0, n) in chunks whose bounds are multiples of the
// vector width (so streaming stores into an aligned output stay aligned),
// on the calling thread when n is small.
template <typename T, typename F>
inline void parallel_for_vectors(int64_t n, const F& f) {
  constexpr int64_t kStep = VecIO<T>::kStep;
  if (n <= kSerialGrain || at::get_num_threads() == 1 || at::in_parallel_region()) {
    f(int64_t(0), n);
    return;
  }
  const int64_t blocks = (n + kStep - 1) / kStep;
  at::parallel_for(0, blocks, kSerialGrain / kStep, [&](int64_t b, int64_t e) {
    f(b * kStep, std::min(e * kStep, n));
  });
}

// Runs f(begin, end) over `rows` rows of `row_elems` elements each, serially
// when the whole job is small.
template <typename F>
inline void parallel_for_rows(int64_t rows, int64_t row_elems, const F& f) {
  if (rows * row_elems <= kSerialGrain || rows == 1 || at::get_num_threads() == 1 ||
      at::in_parallel_region()) {
    f(int64_t(0), rows);
    return;
  }
  const int64_t grain = std::max<int64_t>(1, kSerialGrain / std::max<int64_t>(row_elems, 1));
  at::parallel_for(0, rows, grain, f);
}

// Sum of f(begin, end) (a double) over [0, n) in chunks of at least `grain`,
// serially when n is small. Chunk partials are combined in a fixed order, so
// the result does not depend on scheduling.
template <typename F>
inline double parallel_sum(int64_t n, int64_t grain, const F& f) {
  if (n <= grain || at::get_num_threads() == 1 || at::in_parallel_region()) return f(int64_t(0), n);
  return at::parallel_reduce(0, n, grain, 0.0, [&](int64_t b, int64_t e, double) { return f(b, e); },
                             std::plus<double>());
}

}  // namespace fastact::cpu::CPU_CAPABILITY
