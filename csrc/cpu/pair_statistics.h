// Per-pair statistics from a whitened cross product, shared by the Gram and projection routes.
#pragma once

#include <cstdint>

#include "similarity.h"

namespace mmkern {

// W (ci x cj, column-major, leading dimension ci; destroyed) is Q_i^T Q_j for orthonormal bases
// whose columns are ordered by decreasing variance. Writes entry p of the requested outputs:
// SVCCA from the leading ki x kj block, CCA mean / r2 and PWCCA from all of W. PWCCA needs
// `loadings` = X_i^T Q_i (di x ci, column-major). Uses thread-local scratch; thread-safe.
void whitened_pair_statistics(int64_t p, int ci, int cj, int ki, int kj, double* w,
                              const double* loadings, int di, const PairOutputs& out);

// A model against itself: every canonical correlation is exactly 1.
// (Self pairs only occur in matrices, which never ask for the correlation vectors.)
inline void self_pair_statistics(int64_t p, const PairOutputs& out) {
  for (double* o : {out.svcca, out.cca_mean, out.cca_r2, out.pwcca})
    if (o) o[p] = 1.0;
}

}  // namespace mmkern
