// Scalar math of the representational-similarity metrics, shared by the CPU and CUDA kernels.
//
// Everything here is a small MMKERN_HOST_DEVICE function over plain pointers so the CPU tests
// exercise exactly the code the CUDA kernels run.
#pragma once

#include <cmath>

#include "common/macros.h"

namespace mmkern {

// How `keep` selects the SVCCA subspace (DESIGN.md, "SVCCA").
enum class KeepMode : int {
  VarianceFraction = 0,       // smallest k whose eigenvalues s_i^2 reach `keep` of their total
  SingularValueFraction = 1,  // google/svcca tutorial convention: the same with s_i
  Count = 2,                  // exactly k = keep directions (capped at the numerical rank)
};

// Cumulative fractions within this much of `keep` count as reaching it, so that the choice of k
// does not flip on the last bits of rounding (SVD and Gram eigenvalues differ at ~1e-15).
constexpr double kKeepSlack = 1e-10;

MMKERN_HOST_DEVICE double sqrt_nonneg(double v) { return v > 0.0 ? sqrt(v) : 0.0; }

// Number of eigenvalues (variances, sorted descending) above rtol * largest: the numerical rank
// of the centered data. Zero when the largest is not positive.
MMKERN_HOST_DEVICE int numerical_rank(const double* evals_desc, int d, double rtol) {
  if (d <= 0 || !(evals_desc[0] > 0.0)) return 0;
  const double cut = rtol * evals_desc[0];
  int r = 0;
  while (r < d && evals_desc[r] > cut) ++r;
  return r;
}

// Number of leading directions SVCCA keeps, among the `rank` numerically non-zero eigenvalues.
MMKERN_HOST_DEVICE int svcca_keep_count(const double* evals_desc, int rank, double keep,
                                        KeepMode mode) {
  if (rank <= 0) return 0;
  if (mode == KeepMode::Count) {
    const int k = static_cast<int>(keep);
    return k < rank ? k : rank;
  }
  if (keep >= 1.0) return rank;
  const bool by_sv = mode == KeepMode::SingularValueFraction;
  double total = 0.0;
  for (int i = 0; i < rank; ++i) total += by_sv ? sqrt_nonneg(evals_desc[i]) : evals_desc[i];
  const double target = (keep - kKeepSlack) * total;
  double acc = 0.0;
  for (int i = 0; i < rank; ++i) {
    acc += by_sv ? sqrt_nonneg(evals_desc[i]) : evals_desc[i];
    if (acc >= target) return i + 1;
  }
  return rank;
}

// Canonical correlations are singular values of a product of orthonormal bases: mathematically
// in [0, 1]; rounding can push them a few ulps above 1.
MMKERN_HOST_DEVICE double clamp_unit(double v) { return v < 0.0 ? 0.0 : (v > 1.0 ? 1.0 : v); }

// Mean and mean square of k correlations (CCA .mean and .r2; SVCCA is the mean).
MMKERN_HOST_DEVICE void correlation_summary(const double* rho, int k, double* mean, double* r2) {
  double s = 0.0, s2 = 0.0;
  for (int i = 0; i < k; ++i) {
    const double c = clamp_unit(rho[i]);
    s += c;
    s2 += c * c;
  }
  *mean = k > 0 ? s / k : 0.0;
  *r2 = k > 0 ? s2 / k : 0.0;
}

// PWCCA: sum_i w_i rho_i / sum_i w_i. All weights zero cannot happen for data with variance;
// fall back to the plain mean rather than divide by zero.
MMKERN_HOST_DEVICE double weighted_correlation(const double* rho, const double* w, int k) {
  double num = 0.0, den = 0.0, plain = 0.0;
  for (int i = 0; i < k; ++i) {
    num += w[i] * clamp_unit(rho[i]);
    den += w[i];
    plain += clamp_unit(rho[i]);
  }
  if (den > 0.0) return num / den;
  return k > 0 ? plain / k : 0.0;
}

// CKA = hsic_xy / sqrt(hsic_xx * hsic_yy), clamped to [-1, 1] (Cauchy-Schwarz holds exactly,
// rounding can leave it a few ulps outside). When either self-term is not positive (only
// possible for the debiased estimator on degenerate tiny samples) there is no measurable
// similarity and the result is 0, never NaN.
MMKERN_HOST_DEVICE double cka_ratio(double hsic_xy, double hsic_xx, double hsic_yy) {
  if (!(hsic_xx > 0.0) || !(hsic_yy > 0.0)) return 0.0;
  const double v = hsic_xy / (sqrt(hsic_xx) * sqrt(hsic_yy));
  return v < -1.0 ? -1.0 : (v > 1.0 ? 1.0 : v);
}

// Unbiased HSIC numerator (Song et al. 2012) for linear kernels of centered features, up to the
// common factor 1 / (n (n - 3)) that cancels in CKA:
//   ||X^T Y||_F^2 - n/(n-2) * sum_s |x_s|^2 |y_s|^2 + ||X||_F^2 ||Y||_F^2 / ((n-1)(n-2)).
// `cross_fro2` = ||X^T Y||_F^2, `norm_products` = sum_s |x_s|^2 |y_s|^2, `trace_x` = ||X||_F^2.
MMKERN_HOST_DEVICE double debiased_hsic(double cross_fro2, double norm_products, double trace_x,
                                        double trace_y, double n) {
  return cross_fro2 - n / (n - 2.0) * norm_products + trace_x * trace_y / ((n - 1.0) * (n - 2.0));
}

}  // namespace mmkern
