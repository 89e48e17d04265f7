// Scalar math of the representational-similarity metrics, shared by the CPU and CUDA kernels.
//
// Everything here is a small MMKERN_HOST_DEVICE function over plain pointers so the CPU tests
// exercise exactly the code the CUDA kernels run.
#pragma once

#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "common/macros.h"

namespace mmkern {

// How `keep` selects the SVCCA subspace (docs/definitions.md, "SVCCA"). The codes are bound into
// mmkern._C as KEEP_MODES, the one source of them for the Python routes.
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

// ---- per-pair summaries: the scalar tail of every route, one body for the CPU and CUDA twins ----

// Summaries of canonical correlations. `rho` holds npairs rows of kmax values (row-major, row p
// at rho + p * kmax); row p's first count[p] values (clamped to [0, kmax]) are pair p's
// correlations. Null outputs are not computed:
//   correlation_summary(rho_p, count[p], &mean[p], &r2[p])          (SVCCA / CCA mean, CCA r2)
//   weighted[p] = weighted_correlation(rho_p, weights_p, count[p])   (PWCCA; needs weights)
struct PairSummaryArgs {
  int64_t npairs = 0;
  int64_t kmax = 0;
  const double* rho = nullptr;      // npairs x kmax
  const int64_t* count = nullptr;   // npairs
  const double* weights = nullptr;  // npairs x kmax (same layout as rho), or null
  double* mean = nullptr;           // npairs, or null
  double* r2 = nullptr;             // npairs, or null
  double* weighted = nullptr;       // npairs, or null (requires weights)
};

// Linear CKA of pairs from Gram statistics of M models on n centered samples:
//   cross_fro2[p]  ||X_i^T X_j||_F^2 for pair p = (first[p], second[p])
//   self_fro2[i]   ||X_i^T X_i||_F^2                        (M)
//   trace[i]       ||X_i||_F^2                               (M; debiased only)
//   norm_products  M x M, [i * M + j] = sum_s |x_{i,s}|^2 |x_{j,s}|^2 (debiased only)
// Outputs (null = not computed): cka[p] = cka_ratio(cross, self_i, self_j) and
// cka_debiased[p] = cka_ratio of the three debiased_hsic terms.
struct CkaArgs {
  int64_t npairs = 0;
  int64_t models = 0;
  double n = 0.0;
  const int64_t* first = nullptr;         // npairs, values in [0, models)
  const int64_t* second = nullptr;        // npairs, values in [0, models)
  const double* cross_fro2 = nullptr;     // npairs
  const double* self_fro2 = nullptr;      // models
  const double* trace = nullptr;          // models, or null (no debiased output)
  const double* norm_products = nullptr;  // models x models, or null
  double* cka = nullptr;                  // npairs, or null
  double* cka_debiased = nullptr;         // npairs, or null (needs trace, norm_products)
};

MMKERN_HOST_DEVICE void pair_summary_at(const PairSummaryArgs& a, int64_t p) {
  int64_t k = a.count[p];
  k = k < 0 ? 0 : (k > a.kmax ? a.kmax : k);
  const double* rho = a.rho + p * a.kmax;
  if (a.mean || a.r2) {
    double mean = 0.0, r2 = 0.0;
    correlation_summary(rho, static_cast<int>(k), &mean, &r2);
    if (a.mean) a.mean[p] = mean;
    if (a.r2) a.r2[p] = r2;
  }
  if (a.weighted) a.weighted[p] = weighted_correlation(rho, a.weights + p * a.kmax, static_cast<int>(k));
}

MMKERN_HOST_DEVICE void cka_at(const CkaArgs& a, int64_t p) {
  const int64_t i = a.first[p], j = a.second[p];
  if (i < 0 || i >= a.models || j < 0 || j >= a.models) {  // never read out of bounds
    if (a.cka) a.cka[p] = NAN;
    if (a.cka_debiased) a.cka_debiased[p] = NAN;
    return;
  }
  const double cross = a.cross_fro2[p], sxx = a.self_fro2[i], syy = a.self_fro2[j];
  if (a.cka) a.cka[p] = cka_ratio(cross, sxx, syy);
  if (a.cka_debiased) {
    const double* np = a.norm_products;
    const int64_t m = a.models;
    const double ti = a.trace[i], tj = a.trace[j];
    const double hxy = debiased_hsic(cross, np[i * m + j], ti, tj, a.n);
    const double hxx = debiased_hsic(sxx, np[i * m + i], ti, ti, a.n);
    const double hyy = debiased_hsic(syy, np[j * m + j], tj, tj, a.n);
    a.cka_debiased[p] = cka_ratio(hxy, hxx, hyy);
  }
}

// Argument checks shared by the CPU and CUDA twins (host only). Return false when there is
// nothing to compute; throw std::invalid_argument (prefixed by `who`) for invalid arguments.
inline bool check_pair_summary_args(const PairSummaryArgs& a, const std::string& who) {
  if (a.npairs < 0 || a.kmax < 0) throw std::invalid_argument(who + ": negative npairs or kmax");
  if (a.weighted && !a.weights) throw std::invalid_argument(who + ": the weighted summary needs weights");
  if (a.npairs == 0 || (!a.mean && !a.r2 && !a.weighted)) return false;
  if (!a.count || (a.kmax > 0 && !a.rho)) throw std::invalid_argument(who + ": null rho or count");
  return true;
}

inline bool check_cka_args(const CkaArgs& a, const std::string& who) {
  if (a.npairs < 0 || a.models < 0) throw std::invalid_argument(who + ": negative npairs or models");
  if (a.cka_debiased && (!a.trace || !a.norm_products))
    throw std::invalid_argument(who + ": debiased CKA needs trace and norm_products");
  if (a.cka_debiased && !(a.n >= 4.0)) throw std::invalid_argument(who + ": debiased CKA needs n >= 4 samples");
  if (a.npairs == 0 || (!a.cka && !a.cka_debiased)) return false;
  if (!a.first || !a.second || !a.cross_fro2 || !a.self_fro2)
    throw std::invalid_argument(who + ": null pair or norm pointer");
  return true;
}

}  // namespace mmkern
