// CPU pairwise similarity from a centered joint Gram: per-model eigendecompositions once, then
// small BLAS products and singular values per pair, pairs in parallel.
#include "similarity.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "common/lapack.h"
#include "common/parallel_for.h"
#include "cpu/pair_statistics.h"
#include "gram.h"

namespace mmkern {
namespace {

// Element (a, b) of a symmetric matrix stored in its upper triangle.
inline double sym_at(const double* g, int64_t ld, int64_t a, int64_t b) {
  return a <= b ? g[b * ld + a] : g[a * ld + b];
}

}  // namespace

GramFactors::GramFactors(const double* gram, std::vector<int64_t> offsets, bool blocks_only,
                         int64_t n, const SimilarityOptions& options)
    : gram_(gram),
      blocks_only_(blocks_only),
      dim_(offsets.back()),
      offsets_(std::move(offsets)),
      n_(n),
      opt_(options) {
  const int m = models();
  rank_.assign(m, 0);
  keep_.assign(m, 0);
  evals_.resize(m);
  basis_.resize(m);
  loadings_.resize(m);
  fro_.assign(m, 0.0);
  trace_.assign(m, 0.0);

  parallel_problems(m, [&](int64_t ii) {
    const int i = static_cast<int>(ii);
    const int d = width(i);
    int64_t ld = 0;
    const double* g = diagonal_block(i, &ld);
    double fro2 = 0.0, tr = 0.0;
    for (int b = 0; b < d; ++b) {
      for (int a = 0; a < b; ++a) fro2 += 2.0 * g[b * ld + a] * g[b * ld + a];
      fro2 += g[b * ld + b] * g[b * ld + b];
      tr += g[b * ld + b];
    }
    fro_[i] = std::sqrt(fro2);
    trace_[i] = tr;
    if (!opt_.factor) return;

    std::vector<double> v(static_cast<size_t>(d) * d), w(d);
    for (int b = 0; b < d; ++b)
      for (int a = 0; a <= b; ++a) v[b * d + a] = g[b * ld + a];
    lapack::syevd(true, d, v.data(), d, w.data());
    std::reverse(w.begin(), w.end());  // descending; eigenvalue w[l] pairs with column d - 1 - l
    const int r = numerical_rank(w.data(), d, opt_.rtol);
    rank_[i] = r;
    keep_[i] = svcca_keep_count(w.data(), r, opt_.keep, opt_.keep_mode);
    evals_[i].assign(w.begin(), w.begin() + r);
    basis_[i].resize(static_cast<size_t>(d) * r);
    if (opt_.loadings) loadings_[i].resize(static_cast<size_t>(d) * r);
    for (int l = 0; l < r; ++l) {
      const double* col = v.data() + static_cast<size_t>(d - 1 - l) * d;
      const double s = std::sqrt(w[l]);
      for (int a = 0; a < d; ++a) basis_[i][static_cast<size_t>(l) * d + a] = col[a] / s;
      if (opt_.loadings)
        for (int a = 0; a < d; ++a) loadings_[i][static_cast<size_t>(l) * d + a] = col[a] * s;
    }
  });
}

const double* GramFactors::diagonal_block(int i, int64_t* ld) const {
  if (blocks_only_) {
    *ld = width(i);
    return gram_ + diagonal_block_offset(offsets_.data(), i);
  }
  *ld = dim_;
  return gram_ + offsets_[i] * dim_ + offsets_[i];
}

void GramFactors::whitened_cross(int i, int j, int ci, int cj, std::vector<double>& t,
                                 std::vector<double>& w) const {
  if (blocks_only_)
    throw std::invalid_argument("cross-model products need the full Gram, not only its diagonal blocks");
  const int di = width(i), dj = width(j);
  t.resize(static_cast<size_t>(di) * cj);
  w.resize(static_cast<size_t>(ci) * cj);
  if (ci == 0 || cj == 0) return;
  const int ld = static_cast<int>(dim_);
  // T = G_ij B_j. G_ij is stored directly when i's columns come first; otherwise use G_ji^T.
  if (offsets_[i] < offsets_[j]) {
    const double* gij = gram_ + offsets_[j] * dim_ + offsets_[i];
    lapack::gemm('N', 'N', di, cj, dj, 1.0, gij, ld, basis_[j].data(), dj, 0.0, t.data(), di);
  } else {
    const double* gji = gram_ + offsets_[i] * dim_ + offsets_[j];
    lapack::gemm('T', 'N', di, cj, dj, 1.0, gji, ld, basis_[j].data(), dj, 0.0, t.data(), di);
  }
  lapack::gemm('T', 'N', ci, cj, di, 1.0, basis_[i].data(), di, t.data(), di, 0.0, w.data(), ci);
}

void GramFactors::pairs(const int64_t* first, const int64_t* second, int64_t npairs,
                        const PairOutputs& out) const {
  if (blocks_only_)
    throw std::invalid_argument("pair metrics need the full Gram, not only its diagonal blocks");
  const bool want_full = out.cca_mean || out.cca_r2 || out.pwcca;
  const int m = models();
  const double n = static_cast<double>(n_);
  parallel_problems(npairs, [&](int64_t p) {
    thread_local std::vector<double> t, w;
    const int i = static_cast<int>(first[p]), j = static_cast<int>(second[p]);
    if (out.cka || out.cka_debiased) {
      double cross2 = 0.0;
      const int di = width(i), dj = width(j);
      for (int b = 0; b < dj; ++b)
        for (int a = 0; a < di; ++a) {
          const double g = sym_at(gram_, dim_, offsets_[i] + a, offsets_[j] + b);
          cross2 += g * g;
        }
      if (out.cka) out.cka[p] = cka_ratio(cross2, fro_[i] * fro_[i], fro_[j] * fro_[j]);
      if (out.cka_debiased) {
        const double* np = out.norm_products;
        const double hxy = debiased_hsic(cross2, np[j * m + i], trace_[i], trace_[j], n);
        const double hxx = debiased_hsic(fro_[i] * fro_[i], np[i * m + i], trace_[i], trace_[i], n);
        const double hyy = debiased_hsic(fro_[j] * fro_[j], np[j * m + j], trace_[j], trace_[j], n);
        out.cka_debiased[p] = cka_ratio(hxy, hxx, hyy);
      }
    }
    if (!out.svcca && !want_full) return;
    if (i == j) return self_pair_statistics(p, out);
    const int ci = want_full ? rank_[i] : keep_[i];
    const int cj = want_full ? rank_[j] : keep_[j];
    whitened_cross(i, j, ci, cj, t, w);
    whitened_pair_statistics(p, ci, cj, keep_[i], keep_[j], w.data(), loadings_[i].data(),
                             width(i), out);
  });
}

void factor_counts(const double* evals, const int64_t* offsets, int m, double rtol, double keep,
                   KeepMode mode, int* rank, int* kept) {
  for (int i = 0; i < m; ++i) {
    const double* e = evals + offsets[i];
    const int d = static_cast<int>(offsets[i + 1] - offsets[i]);
    rank[i] = numerical_rank(e, d, rtol);
    kept[i] = svcca_keep_count(e, rank[i], keep, mode);
  }
}

}  // namespace mmkern
