// Scalar math of the predictive-multiplicity metrics, shared by the CPU and CUDA kernels.
//
// Every function is MMKERN_HOST_DEVICE over plain pointers, so the CPU tests exercise exactly the
// code the CUDA kernels run. Logarithms are natural (nats).
#pragma once

#include <cmath>
#include <cstdint>

#include "common/macros.h"

namespace mmkern {

// Soft disagreement metrics between two distributions over classes (docs/definitions.md). The
// codes are bound into mmkern._C as SOFT_METRICS, the one source of them for the Python routes.
enum class SoftMetric : int { TotalVariation = 0, JensenShannon = 1, Hellinger = 2, KullbackLeibler = 3 };

// x log x with the convention 0 log 0 = 0.
MMKERN_HOST_DEVICE double xlogx(double x) { return x > 0.0 ? x * log(x) : 0.0; }

// One sample's contribution of `metric` between distributions p and q over C classes:
//   TV  1/2 sum |p - q|;   JS  1/2 KL(p||m) + 1/2 KL(q||m), m = (p + q) / 2;
//   Hellinger  sqrt(1/2 sum (sqrt p - sqrt q)^2);   KL  sum p log(p / q) (+inf where q = 0 < p).
// Strides let p and q be read in place from any layout.
template <typename T>
MMKERN_HOST_DEVICE double soft_term(SoftMetric metric, const T* p, const T* q, int C,
                                    long long stride_p = 1, long long stride_q = 1) {
  double acc = 0.0;
  for (int c = 0; c < C; ++c) {
    const double a = static_cast<double>(p[c * stride_p]);
    const double b = static_cast<double>(q[c * stride_q]);
    switch (metric) {
      case SoftMetric::TotalVariation: acc += fabs(a - b); break;
      case SoftMetric::JensenShannon: acc += xlogx(a) + xlogx(b) - 2.0 * xlogx(0.5 * (a + b)); break;
      case SoftMetric::Hellinger: {
        const double d = sqrt(a) - sqrt(b);
        acc += d * d;
        break;
      }
      case SoftMetric::KullbackLeibler:
        if (a > 0.0) acc += b > 0.0 ? a * (log(a) - log(b)) : INFINITY;
        break;
    }
  }
  switch (metric) {
    case SoftMetric::TotalVariation: return 0.5 * acc;
    case SoftMetric::JensenShannon: return acc > 0.0 ? 0.5 * acc : 0.0;  // rounding can dip below 0
    case SoftMetric::Hellinger: return sqrt(0.5 * acc);
    default: return acc;
  }
}

// The scratch of one sample's Blahut-Arimoto is read with an element `stride`: element e of an
// array lives at base[e * stride]. The CPU kernel gives each thread its own contiguous scratch
// (stride 1); the CUDA kernel interleaves the samples of a launch (stride = samples per launch),
// so the threads of a warp touch consecutive addresses.

// sum_c P[m, c] log P[m, c] of each row (the negative entropies Blahut-Arimoto reuses).
MMKERN_HOST_DEVICE void row_neg_entropy(const double* P, int M, int C, double* out,
                                        int64_t stride = 1) {
  for (int m = 0; m < M; ++m) {
    double s = 0.0;
    for (int c = 0; c < C; ++c) s += xlogx(P[(static_cast<int64_t>(m) * C + c) * stride]);
    out[m * stride] = s;
  }
}

// Blahut-Arimoto channel capacity (nats) of the M x C channel whose row m is the distribution
// P[m * C .. m * C + C), with `neg_entropy` from row_neg_entropy. Starts from uniform input
// weights; each iteration computes q = w^T P, D_m = KL(P_m || q), lower = log sum_m w_m e^{D_m},
// upper = max_m D_m (the capacity lies in [lower, upper]) and stops when upper - lower <= tol or
// after max_iter iterations; otherwise w_m <- w_m e^{D_m} / sum. Returns `lower`, clipped at 0;
// `w` (M), `logq` (C) and `d` (M) are scratch. `gap` receives the final upper - lower (> tol only
// when max_iter was reached). The reported Rashomon capacity, min(C, e^lower), is formed from
// this in one place for every route (mmkern/multiplicity/_checks.py, capacity_values).
MMKERN_HOST_DEVICE double blahut_arimoto(const double* P, const double* neg_entropy, int M, int C,
                                         double tol, int max_iter, double* w, double* logq,
                                         double* d, double* gap, int64_t stride = 1) {
  auto p_at = [&](int m, int c) { return P[(static_cast<int64_t>(m) * C + c) * stride]; };
  for (int m = 0; m < M; ++m) w[m * stride] = 1.0 / M;
  double lower = 0.0;
  int it = 0;
  for (;;) {
    for (int c = 0; c < C; ++c) logq[c * stride] = 0.0;
    for (int m = 0; m < M; ++m)
      for (int c = 0; c < C; ++c) logq[c * stride] += w[m * stride] * p_at(m, c);
    for (int c = 0; c < C; ++c) logq[c * stride] = log(logq[c * stride]);  // -inf only where every row is 0
    double dmax = -INFINITY;
    for (int m = 0; m < M; ++m) {
      double cross = 0.0;  // sum_c P log q, skipping P = 0 (0 log 0 = 0)
      for (int c = 0; c < C; ++c) {
        const double p = p_at(m, c);
        if (p > 0.0) cross += p * logq[c * stride];
      }
      d[m * stride] = neg_entropy[m * stride] - cross;
      dmax = d[m * stride] > dmax ? d[m * stride] : dmax;
    }
    // lower = log sum w e^{D}, computed relative to dmax so the exponentials cannot overflow.
    double s = 0.0;
    for (int m = 0; m < M; ++m) s += w[m * stride] * exp(d[m * stride] - dmax);
    lower = dmax + log(s);
    ++it;
    if (dmax - lower <= tol || it >= max_iter) {
      *gap = dmax - lower;
      break;
    }
    for (int m = 0; m < M; ++m) w[m * stride] = w[m * stride] * exp(d[m * stride] - dmax) / s;
  }
  return lower > 0.0 ? lower : 0.0;
}

}  // namespace mmkern
