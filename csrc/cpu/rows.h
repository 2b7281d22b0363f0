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
  // The class (element) index of the vector at offset o: the same in every lane.
  Vec class_index(int64_t o) const { return Vec(Acc(o / inner)); }
  // A per-class array v (C values) as the vector at offset o sees it.
  Vec per_class(const T* v, int64_t o, int64_t) const { return Vec(Acc(v[o / inner])); }
  // Element index[k] of lane k's row (0 where index[k] < 0).
  Vec pick(const T* rows, const int64_t* index) const {
    Acc picked[IO::kStep] = {};
    for (int64_t k = 0; k < lanes; ++k) picked[k] = index[k] >= 0 ? Acc(rows[index[k] * inner + k]) : Acc(0);
    return Vec::loadu(picked);
  }
  // Scratch keeps a full vector per element: element c (offset c * inner)
  // in slots [c * kStep, (c + 1) * kStep).
  int64_t scratch_size() const { return C * IO::kStep; }
  int64_t scratch_index(int64_t o) const { return o / inner * IO::kStep; }
};

// Runs row_fn(row_policy, offset_of_row_start, scratch) over every row of a
// contiguous [outer, C, inner] tensor, in parallel when it pays.
template <typename T, typename RowFn>
void for_each_row(const RowShape& s, bool stream, const RowFn& row_fn) {
  using IO = VecIO<T>;
  if (s.inner == 1) {
    const LastDimRow<T> row{s.classes, stream};
    parallel_for_rows(s.outer, s.classes, [&](int64_t begin, int64_t end) {
      std::vector<acc_t<T>> scratch(row.scratch_size());
      for (int64_t r = begin; r < end; ++r) row_fn(row, r * s.classes, scratch.data());
      if (stream) streaming_store_fence();
    });
    return;
  }
  const int64_t blocks_per_outer = (s.inner + IO::kStep - 1) / IO::kStep;
  parallel_for_rows(s.outer * blocks_per_outer, s.classes * IO::kStep, [&](int64_t begin, int64_t end) {
    std::vector<acc_t<T>> scratch(s.classes * IO::kStep);
    for (int64_t b = begin; b < end; ++b) {
      const int64_t o = b / blocks_per_outer, first = (b % blocks_per_outer) * IO::kStep;
      const StridedRows<T> rows{s.classes, s.inner, std::min<int64_t>(IO::kStep, s.inner - first)};
      row_fn(rows, o * s.classes * s.inner + first, scratch.data());
    }
  });
}

}  // namespace fastact::cpu::CPU_CAPABILITY
