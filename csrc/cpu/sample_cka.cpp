// CPU linear CKA through n x n sample Gram matrices (the route when n^2 M < D^2).
#include <vector>

#include "common/lapack.h"
#include "common/parallel_for.h"
#include "common/similarity_math.h"
#include "gram.h"
#include "similarity.h"

namespace mmkern {

void sample_space_cka(const MatrixView* views, int m, const double* mean, const int64_t* first,
                      const int64_t* second, int64_t npairs, double* cka, double* cka_debiased,
                      double* traces) {
  const int64_t n = m > 0 ? views[0].rows : 0;
  const size_t nn = static_cast<size_t>(n) * n;
  std::vector<double> grams(nn * m, 0.0), buf;
  std::vector<double> self(m, 0.0), self_diag(m, 0.0);  // <K_i, K_i>_F, sum_s K_i[s, s]^2
  int64_t off = 0;
  for (int i = 0; i < m; ++i) {
    const int64_t d = views[i].cols;
    buf.resize(static_cast<size_t>(n) * d);
    pack_rows(&views[i], 1, 0, n, mean + off, buf.data(), n);
    lapack::syrk_upper_n(static_cast<int>(n), static_cast<int>(d), 1.0, buf.data(),
                         static_cast<int>(n), 0.0, grams.data() + nn * i, static_cast<int>(n));
    off += d;
  }
  // <K_i, K_j>_F from the upper triangles (off-diagonal counted twice), and the product of the
  // diagonals sum_s K_i[s, s] K_j[s, s] = sum_s |x_s|^2 |y_s|^2 that the debiased estimator needs.
  auto inner = [&](int i, int j, double* diag_products) {
    const double* a = grams.data() + nn * i;
    const double* b = grams.data() + nn * j;
    double offdiag = 0.0, diag = 0.0;
    for (int64_t c = 0; c < n; ++c) {
      for (int64_t r = 0; r < c; ++r) offdiag += a[c * n + r] * b[c * n + r];
      diag += a[c * n + c] * b[c * n + c];
    }
    *diag_products = diag;
    return diag + 2.0 * offdiag;
  };
  parallel_problems(m, [&](int64_t i) {
    self[i] = inner(static_cast<int>(i), static_cast<int>(i), &self_diag[i]);
    double tr = 0.0;
    for (int64_t c = 0; c < n; ++c) tr += grams[nn * i + c * n + c];
    traces[i] = tr;
  });
  const double dn = static_cast<double>(n);
  parallel_problems(npairs, [&](int64_t p) {
    const int i = static_cast<int>(first[p]), j = static_cast<int>(second[p]);
    double diag_products = 0.0;
    const double cross = inner(i, j, &diag_products);
    if (cka) cka[p] = cka_ratio(cross, self[i], self[j]);
    if (cka_debiased) {
      const double hxy = debiased_hsic(cross, diag_products, traces[i], traces[j], dn);
      const double hxx = debiased_hsic(self[i], self_diag[i], traces[i], traces[i], dn);
      const double hyy = debiased_hsic(self[j], self_diag[j], traces[j], traces[j], dn);
      cka_debiased[p] = cka_ratio(hxy, hxx, hyy);
    }
  });
}

}  // namespace mmkern
