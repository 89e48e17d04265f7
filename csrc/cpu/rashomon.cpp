// CPU Rashomon capacity: Blahut-Arimoto per sample, samples in parallel.
#include <vector>

#include "multiplicity.h"

namespace mmkern {

template <typename T>
void rashomon_capacity(const T* probs, int M, int64_t n, int C, double tol, int max_iter,
                       double* out, double* gap) {
#pragma omp parallel
  {
    // Per-thread scratch: the sample's channel (M x C), its rows' negative entropies, and the
    // iteration state.
    std::vector<double> P(static_cast<size_t>(M) * C), neg_entropy(M), w(M), logq(C), d(M);
#pragma omp for schedule(dynamic, 64)
    for (int64_t x = 0; x < n; ++x) {
      for (int m = 0; m < M; ++m)
        for (int c = 0; c < C; ++c) P[m * C + c] = static_cast<double>(probs[(m * n + x) * C + c]);
      row_neg_entropy(P.data(), M, C, neg_entropy.data());
      double g = 0.0;
      out[x] = blahut_arimoto(P.data(), neg_entropy.data(), M, C, tol, max_iter, w.data(),
                              logq.data(), d.data(), &g);
      if (gap) gap[x] = g;
    }
  }
}

template void rashomon_capacity<float>(const float*, int, int64_t, int, double, int, double*, double*);
template void rashomon_capacity<double>(const double*, int, int64_t, int, double, int, double*, double*);

}  // namespace mmkern
