// CPU Rashomon capacity: Blahut-Arimoto per sample, samples in parallel.
#include <algorithm>
#include <cmath>
#include <vector>

#include "multiplicity.h"

namespace mmkern {

template <typename T>
void rashomon_capacity(const T* probs, int M, int64_t n, int C, double tol, int max_iter,
                       double* out, int32_t* iterations) {
#pragma omp parallel
  {
    // Per-thread scratch: the sample's channel (M x C), its log, and the iteration state.
    std::vector<double> P(static_cast<size_t>(M) * C), logp(P.size()), w(M), q(C), d(M);
#pragma omp for schedule(dynamic, 64)
    for (int64_t x = 0; x < n; ++x) {
      for (int m = 0; m < M; ++m)
        for (int c = 0; c < C; ++c) {
          const double p = static_cast<double>(probs[(m * n + x) * C + c]);
          P[m * C + c] = p;
          logp[m * C + c] = std::log(p);  // -inf for p = 0, never read (p > 0 is checked)
        }
      int it = 0;
      const double capacity =
          blahut_arimoto(P.data(), logp.data(), M, C, tol, max_iter, w.data(), q.data(), d.data(), &it);
      out[x] = std::min(static_cast<double>(C), std::exp(capacity));
      if (iterations) iterations[x] = it;
    }
  }
}

template void rashomon_capacity<float>(const float*, int, int64_t, int, double, int, double*, int32_t*);
template void rashomon_capacity<double>(const double*, int, int64_t, int, double, int, double*, int32_t*);

}  // namespace mmkern
