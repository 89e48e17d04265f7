#include "cpu/pair_statistics.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "common/lapack.h"
#include "common/similarity_math.h"

namespace mmkern {

void whitened_pair_statistics(int64_t p, int ci, int cj, int ki, int kj, double* w,
                              const double* loadings, int di, const PairOutputs& out) {
  thread_local std::vector<double> sub, s, u, h, weight;
  double mean = 0.0, r2 = 0.0;
  if (out.svcca) {
    // The SVCCA directions lead the variance-ordered basis: the top-left ki x kj block of W.
    sub.resize(static_cast<size_t>(ki) * kj);
    for (int b = 0; b < kj; ++b)
      std::copy_n(w + static_cast<size_t>(b) * ci, ki, sub.data() + static_cast<size_t>(b) * ki);
    s.resize(std::min(ki, kj));
    lapack::gesdd(ki, kj, sub.data(), std::max(1, ki), s.data(), nullptr);
    correlation_summary(s.data(), static_cast<int>(s.size()), &mean, &r2);
    out.svcca[p] = mean;
  }
  if (!out.cca_mean && !out.cca_r2 && !out.pwcca && !out.correlations) return;
  const int k = std::min(ci, cj);
  s.resize(k);
  if (out.pwcca) {
    u.resize(static_cast<size_t>(ci) * k);
    lapack::gesvd_left(ci, cj, w, std::max(1, ci), s.data(), u.data());
  } else {
    lapack::gesdd(ci, cj, w, std::max(1, ci), s.data(), nullptr);
  }
  correlation_summary(s.data(), k, &mean, &r2);
  if (out.correlations) {
    auto& c = (*out.correlations)[p];
    c.resize(k);
    for (int l = 0; l < k; ++l) c[l] = clamp_unit(s[l]);
  }
  if (out.cca_mean) out.cca_mean[p] = mean;
  if (out.cca_r2) out.cca_r2[p] = r2;
  if (out.pwcca) {
    // <h_l, x_a> = (L U)[a, l] for canonical variate h_l = Q_i u_l; weight_l = sum_a |.|
    // (Morcos et al. 2018).
    h.resize(static_cast<size_t>(di) * k);
    lapack::gemm('N', 'N', di, k, ci, 1.0, loadings, di, u.data(), ci, 0.0, h.data(), di);
    weight.assign(k, 0.0);
    for (int l = 0; l < k; ++l)
      for (int a = 0; a < di; ++a) weight[l] += std::abs(h[static_cast<size_t>(l) * di + a]);
    out.pwcca[p] = weighted_correlation(s.data(), weight.data(), k);
  }
}

}  // namespace mmkern
