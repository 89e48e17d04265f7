// CPU soft disagreement matrices: tiled over model pairs and samples like the hard matrix.
#include <algorithm>
#include <cmath>
#include <vector>

#include "common/macros.h"
#include "multiplicity.h"

namespace mmkern {
namespace {

constexpr int kTile = 4;          // models per tile side
constexpr int64_t kChunk = 1024;  // samples per chunk: 2 * kTile rows of C values stay in cache

// sum_k |a_k - b_k| in float64: total variation is elementwise, so it runs over the flat
// (samples x classes) row. Eight independent partial sums let the compiler vectorise without
// reassociating floating-point additions (which strict IEEE semantics forbid).
template <typename T>
MMKERN_TARGET_CLONES double sum_abs_difference(const T* a, const T* b, int64_t len) {
  constexpr int kLanes = 8;
  double lanes[kLanes] = {};
  int64_t k = 0;
  for (; k + kLanes <= len; k += kLanes)
    for (int l = 0; l < kLanes; ++l)
      lanes[l] += std::fabs(static_cast<double>(a[k + l]) - static_cast<double>(b[k + l]));
  double acc = 0.0;
  for (; k < len; ++k) acc += std::fabs(static_cast<double>(a[k]) - static_cast<double>(b[k]));
  for (int l = 0; l < kLanes; ++l) acc += lanes[l];
  return acc;
}

// Sum over samples [x0, x0 + len) of soft_term(metric, p_i(x), p_j(x)).
template <typename T>
double chunk_sum(SoftMetric metric, const T* pi, const T* pj, int64_t len, int C) {
  if (metric == SoftMetric::TotalVariation) return 0.5 * sum_abs_difference(pi, pj, len * C);
  double acc = 0.0;
  for (int64_t x = 0; x < len; ++x) acc += soft_term(metric, pi + x * C, pj + x * C, C);
  return acc;
}

}  // namespace

template <typename T>
void soft_disagreement(const T* probs, int M, int64_t n, int C, SoftMetric metric, double* out) {
  const bool symmetric = metric != SoftMetric::KullbackLeibler;
  const int blocks = (M + kTile - 1) / kTile;
  std::vector<std::pair<int, int>> tiles;
  for (int bi = 0; bi < blocks; ++bi)
    for (int bj = symmetric ? bi : 0; bj < blocks; ++bj) tiles.emplace_back(bi, bj);
  std::fill(out, out + static_cast<int64_t>(M) * M, 0.0);
  const int64_t row = n * C;

#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t t = 0; t < static_cast<int64_t>(tiles.size()); ++t) {
    const int i0 = tiles[t].first * kTile, j0 = tiles[t].second * kTile;
    const int i1 = std::min(M, i0 + kTile), j1 = std::min(M, j0 + kTile);
    double local[kTile][kTile] = {};
    for (int64_t x0 = 0; x0 < n; x0 += kChunk) {
      const int64_t len = std::min(kChunk, n - x0);
      for (int i = i0; i < i1; ++i)
        for (int j = symmetric ? std::max(j0, i + 1) : j0; j < j1; ++j)
          if (i != j)
            local[i - i0][j - j0] += chunk_sum(metric, probs + i * row + x0 * C, probs + j * row + x0 * C, len, C);
    }
    for (int i = i0; i < i1; ++i)
      for (int j = symmetric ? std::max(j0, i + 1) : j0; j < j1; ++j) {
        if (i == j) continue;
        const double v = local[i - i0][j - j0] / static_cast<double>(n);
        out[static_cast<int64_t>(i) * M + j] = v;
        if (symmetric) out[static_cast<int64_t>(j) * M + i] = v;
      }
  }
}

template void soft_disagreement<float>(const float*, int, int64_t, int, SoftMetric, double*);
template void soft_disagreement<double>(const double*, int, int64_t, int, SoftMetric, double*);

}  // namespace mmkern
