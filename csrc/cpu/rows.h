// Row-wise kernels' building blocks: a tensor seen as [outer, C, inner]
// around one dim, and two ways of walking its rows with vectors:
//  - LastDimRow (inner == 1): a row is C contiguous elements; reductions run
//    across vector lanes and end with a horizontal reduce;
//  - StridedRows (inner > 1): up to one vector of neighbouring rows at once,
//    lane k holding row k; element c of the rows sits at offset c * inner, so
//    reductions are lane-wise and every load is contiguous.
// A kernel's math is written once against either policy (see softmax.cpp).
#pragma once
#include "checks.h"
#include "cpu/vec_io.h"

#include <ATen/core/Tensor.h>

#include <array>
#include <bit>
#include <cmath>
#include <vector>

namespace fastact::cpu::CPU_CAPABILITY {

template <typename T>
struct LastDimRow {
  using IO = VecIO<T>;
  using Vec = typename IO::Vec;
  using Acc = acc_t<T>;
  int64_t C;
  bool stream;  // write the row's output with non-temporal stores

  // Folds body(offset, count) over the row with `op`, then across lanes; the
  // result is broadcast to every lane. Lanes past a row's end never enter it.
  template <typename Body, typename Op>
  Acc reduce_to_scalar(Acc init, const Op& op, const Body& body) const {
    Vec acc(init);
    int64_t i = 0;
    for (; i + IO::kStep <= C; i += IO::kStep) acc = op(acc, body(i, IO::kStep));
    if (i < C) acc = Vec::set(acc, op(acc, body(i, C - i)), C - i);
    return at::vec::vec_reduce_all<Acc>(op, acc);
  }
  template <typename Body, typename Op>
  Vec reduce(Acc init, const Op& op, const Body& body) const {
    return Vec(reduce_to_scalar(init, op, body));
  }
  template <typename Body>
  void map(T* out, const Body& body) const {
    map_vectors(out, C, stream, body);
  }
  // log of a reduction's result (the row's value in every lane): one scalar
  // log, not a vector one (Sleef's, a call costing more than a short row).
  // The store does not happen: inlined, the compiler reads lane 0 in place.
  Vec log(const Vec& reduced) const {
    Acc lanes[IO::kStep];
    reduced.store(lanes);
    return Vec(std::log(lanes[0]));
  }
  // The class (element) index in each lane of the vector at offset o.
  Vec class_index(int64_t o) const { return lane_index() + Vec(Acc(o)); }
  // A per-class array v (C values) as the vector at offset o sees it.
  Vec per_class(const T* v, int64_t o, int64_t n) const { return IO::load(v + o, n); }
  // Element index[0] of the row, in every lane (index: one per lane, as on StridedRows).
  Vec pick(const T* row, const int64_t* index) const { return Vec(Acc(row[index[0]])); }
  // 0, 1, ..., kStep - 1
  static const Vec& lane_index() {
    static const Vec iota = Vec::arange(Acc(0), Acc(1));
    return iota;
  }
  // Scratch of C accumulators (plus a vector of slack for the tail's store),
  // element at offset o in slot o.
  int64_t scratch_size() const { return C + IO::kStep; }
  int64_t scratch_index(int64_t o) const { return o; }
};

template <typename T>
struct StridedRows {
  using IO = VecIO<T>;
  using Vec = typename IO::Vec;
  using Acc = acc_t<T>;
  int64_t C, inner, lanes;  // lanes <= kStep rows, starting at the row pointer

  StridedRows(int64_t C_, int64_t inner_, int64_t lanes_) : C(C_), inner(inner_), lanes(lanes_) {
    // o / inner for the offsets o = c * inner the bodies get, without a
    // division (tens of cycles, per element on short rows): o is a multiple
    // of inner, so o / inner = (o >> tz) times the inverse of inner's odd
    // part mod 2^64 (Newton's iteration doubles the correct bits from 3).
    shift = std::countr_zero(uint64_t(inner));
    const uint64_t odd = uint64_t(inner) >> shift;
    inverse = odd;
    for (int i = 0; i < 5; ++i) inverse *= 2 - odd * inverse;
  }

  template <typename Body, typename Op>
  Vec reduce(Acc init, const Op& op, const Body& body) const {
    Vec acc(init);
    for (int64_t c = 0; c < C; ++c) acc = op(acc, body(c * inner, lanes));
    return acc;
  }
  template <typename Body>
  void map(T* out, const Body& body) const {
    for (int64_t c = 0; c < C; ++c) IO::store(out + c * inner, body(c * inner, lanes), lanes);
  }
  Vec log(const Vec& reduced) const { return reduced.log(); }
  // The class (element) index of the vector at offset o: the same in every lane.
  Vec class_index(int64_t o) const { return Vec(Acc(element(o))); }
  // A per-class array v (C values) as the vector at offset o sees it.
  Vec per_class(const T* v, int64_t o, int64_t) const { return Vec(Acc(v[element(o)])); }
  // Element index[k] of lane k's row (0 where index[k] < 0).
  Vec pick(const T* rows, const int64_t* index) const {
    Acc picked[IO::kStep] = {};
    for (int64_t k = 0; k < lanes; ++k) picked[k] = index[k] >= 0 ? Acc(rows[index[k] * inner + k]) : Acc(0);
    return Vec::loadu(picked);
  }
  // Scratch keeps a full vector per element: element c (offset c * inner)
  // in slots [c * kStep, (c + 1) * kStep).
  int64_t scratch_size() const { return C * IO::kStep; }
  int64_t scratch_index(int64_t o) const { return element(o) * IO::kStep; }

 private:
  int shift;
  uint64_t inverse;
  int64_t element(int64_t o) const { return int64_t((uint64_t(o) >> shift) * inverse); }
};

// Below this many classes, last-dim rows go kStep at a time through tiles
// (measured on cross entropy: 1000 rows of 32 to 127 classes ran 1.2-1.8x
// faster tiled than row by row; softmax at 1000 x 10, 2x).
template <typename T>
constexpr int64_t kShortRowClasses = 8 * VecIO<T>::kStep;

#if defined(CPU_CAPABILITY_AVX2)
// dst[j * dst_stride + i] = src[i * src_stride + j] for i, j < 8: the
// textbook AVX2 8 x 8 float transpose (unpack, shuffle, permute2f128).
inline void transpose_8x8(const float* src, int64_t src_stride, float* dst, int64_t dst_stride) {
  __m256 r[8], t[8], u[8];
  for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(src + i * src_stride);
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 8; i += 4) {
    u[i] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(1, 0, 1, 0));
    u[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], _MM_SHUFFLE(3, 2, 3, 2));
    u[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(1, 0, 1, 0));
    u[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], _MM_SHUFFLE(3, 2, 3, 2));
  }
  for (int i = 0; i < 4; ++i) {
    _mm256_storeu_ps(dst + i * dst_stride, _mm256_permute2f128_ps(u[i], u[i + 4], 0x20));
    _mm256_storeu_ps(dst + (i + 4) * dst_stride, _mm256_permute2f128_ps(u[i], u[i + 4], 0x31));
  }
}
#endif

// `lanes` rows of C contiguous elements into a tile where element c of row k
// sits at c * kStep + k (lane k of vector c: StridedRows{C, kStep, lanes}),
// and back. A tile serves kStep rows per vector instruction, with nothing
// reduced across lanes: a row by row pass over short rows pays two
// horizontal reductions and a partial vector per row, more than its math.
// AVX2 float moves whole 8 x 8 blocks in registers: element by element, the
// copies cost more than the math from 16 classes on (softmax and cross
// entropy at 1000 x 16-32 ran 0.7x torch's).
template <bool kToTile, typename T>
void transpose_rows(const T* src, T* dst, int64_t C, int64_t lanes) {
  constexpr int64_t K = VecIO<T>::kStep;
  // the strides of row k and of element c, in the source and the destination
  const int64_t src_row = kToTile ? C : 1, src_element = kToTile ? 1 : K;
  const int64_t dst_row = kToTile ? 1 : C, dst_element = kToTile ? K : 1;
  int64_t c0 = 0;
#if defined(CPU_CAPABILITY_AVX2)
  if constexpr (std::is_same_v<T, float>) {
    if (lanes == K) {
      for (; c0 + K <= C; c0 += K) {
        transpose_8x8(src + c0 * src_element, kToTile ? C : K, dst + c0 * dst_element, kToTile ? K : C);
      }
    }
  }
#endif
  for (int64_t k = 0; k < lanes; ++k) {
    for (int64_t c = c0; c < C; ++c) dst[k * dst_row + c * dst_element] = src[k * src_row + c * src_element];
  }
}
template <typename T>
void rows_to_tile(const T* rows, int64_t C, int64_t lanes, T* tile) {
  transpose_rows<true>(rows, tile, C, lanes);
}
template <typename T>
void tile_to_rows(const T* tile, int64_t C, int64_t lanes, T* rows) {
  transpose_rows<false>(tile, rows, C, lanes);
}

// Runs row_fn(row_policy, in, out, scratch) over every row of contiguous
// [outer, C, inner] tensors (`inputs`, and `out` of the same shape), in
// parallel when it pays: in and out point at the row (or block of rows) the
// policy describes, scratch holds the policy's scratch_size() accumulators.
// Short last-dim rows are tiled (rows_to_tile), so row_fn sees StridedRows
// over the tiles.
template <typename T, size_t kInputs, typename RowFn>
void for_each_row(const RowShape& s, bool stream, const std::array<const T*, kInputs>& inputs, T* out,
                  const RowFn& row_fn) {
  using IO = VecIO<T>;
  constexpr int64_t K = IO::kStep;
  const int64_t C = s.classes;
  auto at = [&](int64_t start) {
    std::array<const T*, kInputs> in;
    for (size_t i = 0; i < kInputs; ++i) in[i] = inputs[i] + start;
    return in;
  };
  if (s.inner == 1 && C < kShortRowClasses<T>) {
    const int64_t blocks = (s.outer + K - 1) / K;
    parallel_for_rows(blocks, C * K, [&](int64_t begin, int64_t end) {
      // tiles zeroed once: a last block's unused lanes compute on zeros, never on stale bits
      std::vector<T> tiles((kInputs + 1) * C * K, T(0));
      std::vector<acc_t<T>> scratch(C * K);
      std::array<const T*, kInputs> in;
      for (size_t i = 0; i < kInputs; ++i) in[i] = tiles.data() + i * C * K;
      T* out_tile = tiles.data() + kInputs * C * K;
      for (int64_t b = begin; b < end; ++b) {
        const int64_t lanes = std::min<int64_t>(K, s.outer - b * K);
        for (size_t i = 0; i < kInputs; ++i) rows_to_tile(inputs[i] + b * K * C, C, lanes, tiles.data() + i * C * K);
        row_fn(StridedRows<T>{C, K, lanes}, in, out_tile, scratch.data());
        tile_to_rows(out_tile, C, lanes, out + b * K * C);
      }
    });
    return;
  }
  if (s.inner == 1) {
    const LastDimRow<T> row{C, stream};
    parallel_for_rows(s.outer, C, [&](int64_t begin, int64_t end) {
      std::vector<acc_t<T>> scratch(row.scratch_size());
      for (int64_t r = begin; r < end; ++r) row_fn(row, at(r * C), out + r * C, scratch.data());
      if (stream) streaming_store_fence();
    });
    return;
  }
  const int64_t blocks_per_outer = (s.inner + K - 1) / K;
  parallel_for_rows(s.outer * blocks_per_outer, C * K, [&](int64_t begin, int64_t end) {
    std::vector<acc_t<T>> scratch(C * K);
    for (int64_t b = begin; b < end; ++b) {
      const int64_t o = b / blocks_per_outer, first = (b % blocks_per_outer) * K;
      const StridedRows<T> rows{C, s.inner, std::min<int64_t>(K, s.inner - first)};
      const int64_t start = o * C * s.inner + first;
      row_fn(rows, at(start), out + start, scratch.data());
    }
  });
}

}  // namespace fastact::cpu::CPU_CAPABILITY
