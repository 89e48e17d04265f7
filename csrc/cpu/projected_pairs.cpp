// CPU projection route: CholeskyQR2 re-whitening of each model, then per-pair statistics.
#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/lapack.h"
#include "common/parallel_for.h"
#include "cpu/pair_statistics.h"
#include "gram.h"
#include "similarity.h"

namespace mmkern {

void projected_pairs(Projection& pr, const int64_t* first, const int64_t* second, int64_t npairs,
                     const PairOutputs& out) {
  const int m = static_cast<int>(pr.koffsets.size()) - 1;
  const int64_t K = pr.koffsets[m];
  auto cols = [&](int i) { return static_cast<int>(pr.koffsets[i + 1] - pr.koffsets[i]); };
  // Element (a, b) of P from its upper triangle.
  auto at = [&](int64_t a, int64_t b) { return a <= b ? pr.gram[b * K + a] : pr.gram[a * K + b]; };

  std::vector<std::vector<double>> chol(m);
  parallel_problems(m, [&](int64_t ii) {
    const int i = static_cast<int>(ii), c = cols(i);
    const int64_t o = pr.koffsets[i];
    std::vector<double>& r = chol[i];
    r.assign(static_cast<size_t>(c) * c, 0.0);
    for (int b = 0; b < c; ++b)
      for (int a = 0; a <= b; ++a) r[static_cast<size_t>(b) * c + a] = at(o + a, o + b);
    if (!lapack::potrf_upper(c, r.data(), std::max(1, c)))
      throw std::runtime_error("model " + std::to_string(i) +
                               ": projected directions are not numerically independent");
    if (!pr.loadings.empty())  // loadings X^T Q' = (X^T U) R^{-1}
      lapack::trsm_upper('R', 'N', pr.widths[i], c, 1.0, r.data(), std::max(1, c),
                         pr.loadings[i], std::max(1, pr.widths[i]));
  });

  parallel_problems(npairs, [&](int64_t p) {
    thread_local std::vector<double> w;
    const int i = static_cast<int>(first[p]), j = static_cast<int>(second[p]);
    if (i == j) return self_pair_statistics(p, out);
    const int ci = cols(i), cj = cols(j);
    w.resize(static_cast<size_t>(ci) * cj);
    for (int b = 0; b < cj; ++b)
      for (int a = 0; a < ci; ++a)
        w[static_cast<size_t>(b) * ci + a] = at(pr.koffsets[i] + a, pr.koffsets[j] + b);
    const int ldw = std::max(1, ci);
    lapack::trsm_upper('L', 'T', ci, cj, 1.0, chol[i].data(), std::max(1, ci), w.data(), ldw);
    lapack::trsm_upper('R', 'N', ci, cj, 1.0, chol[j].data(), std::max(1, cj), w.data(), ldw);
    whitened_pair_statistics(p, ci, cj, pr.keep[i], pr.keep[j], w.data(),
                             pr.loadings.empty() ? nullptr : pr.loadings[i], pr.widths[i], out);
  });
}

void projection_route(const GramFactors& factors, const MatrixView* views, const int64_t* offsets,
                      const double* mean, const int64_t* first, const int64_t* second,
                      int64_t npairs, const PairOutputs& out, int64_t chunk_rows) {
  const int m = factors.models();
  // All numerically non-zero directions for CCA / PWCCA, only the SVCCA ones otherwise.
  const bool full = out.cca_mean || out.cca_r2 || out.pwcca || out.correlations;
  Projection pr;
  pr.koffsets.assign(m + 1, 0);
  std::vector<const double*> bases(m);
  for (int i = 0; i < m; ++i) {
    pr.koffsets[i + 1] = pr.koffsets[i] + (full ? factors.rank(i) : factors.svcca_dim(i));
    pr.keep.push_back(factors.svcca_dim(i));
    pr.widths.push_back(static_cast<int>(offsets[i + 1] - offsets[i]));
    bases[i] = factors.basis(i);
  }
  const int64_t K = pr.koffsets[m];
  std::vector<double> gram(static_cast<size_t>(K) * K, 0.0);
  std::vector<std::vector<double>> loadings(out.pwcca ? m : 0);
  for (int i = 0; i < static_cast<int>(loadings.size()); ++i) {
    loadings[i].assign(static_cast<size_t>(pr.widths[i]) * (pr.koffsets[i + 1] - pr.koffsets[i]), 0.0);
    pr.loadings.push_back(loadings[i].data());
  }
  pr.gram = gram.data();
  projected_gram_update(views, m, offsets, mean, bases.data(), pr.koffsets.data(), gram.data(),
                        pr.loadings.empty() ? nullptr : pr.loadings.data(), chunk_rows);
  projected_pairs(pr, first, second, npairs, out);
}

}  // namespace mmkern
