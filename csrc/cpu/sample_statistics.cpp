// CPU per-sample statistics of a prediction population, and hard labels from probabilities.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "multiplicity.h"

namespace mmkern {

template <typename T, typename Code>
void argmax_codes(const T* probs, int M, int64_t n, int C, Code* codes) {
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < static_cast<int64_t>(M) * n; ++r) {
    const T* p = probs + r * C;
    int best = 0;
    for (int c = 1; c < C; ++c)
      if (p[c] > p[best]) best = c;  // strict: the lowest index wins ties, as numpy.argmax
    codes[r] = static_cast<Code>(best);
  }
}

template <typename T, typename Code>
void sample_statistics(const T* probs, const Code* codes, int M, int64_t n, int C,
                       const int64_t* target, double* vote_disagreement, int64_t* majority,
                       double* variance, double* range, uint8_t* all_agree) {
#pragma omp parallel
  {
    std::vector<int64_t> votes(C);
#pragma omp for schedule(static)
    for (int64_t x = 0; x < n; ++x) {
      std::fill(votes.begin(), votes.end(), 0);
      for (int m = 0; m < M; ++m) ++votes[codes[m * n + x]];
      const int top = static_cast<int>(std::max_element(votes.begin(), votes.end()) - votes.begin());
      if (vote_disagreement) vote_disagreement[x] = 1.0 - static_cast<double>(votes[top]) / M;
      if (majority) majority[x] = top;
      if (all_agree) all_agree[x] = votes[top] == M;
      if (variance) {  // two passes per class: mean, then squared deviations
        double total = 0.0;
        for (int c = 0; c < C; ++c) {
          double mean = 0.0, ss = 0.0;
          for (int m = 0; m < M; ++m) mean += static_cast<double>(probs[(m * n + x) * C + c]);
          mean /= M;
          for (int m = 0; m < M; ++m) {
            const double dev = static_cast<double>(probs[(m * n + x) * C + c]) - mean;
            ss += dev * dev;
          }
          total += ss / M;
        }
        variance[x] = total / C;
      }
      if (range) {
        const int64_t t = target ? target[x] : top;
        double lo = static_cast<double>(probs[x * C + t]), hi = lo;
        for (int m = 1; m < M; ++m) {
          const double p = static_cast<double>(probs[(m * n + x) * C + t]);
          lo = std::min(lo, p);
          hi = std::max(hi, p);
        }
        range[x] = hi - lo;
      }
    }
  }
}

template <typename T>
ProbabilityCheck check_probabilities(const T* probs, int64_t rows, int C) {
  int64_t nonfinite = 0, negative = 0;
  double lo = std::numeric_limits<double>::infinity(), hi = -lo;
#pragma omp parallel for schedule(static) reduction(+ : nonfinite, negative) reduction(min : lo) reduction(max : hi)
  for (int64_t r = 0; r < rows; ++r) {
    double s = 0.0;
    for (int c = 0; c < C; ++c) {
      const double p = static_cast<double>(probs[r * C + c]);
      nonfinite += !std::isfinite(p);
      negative += p < 0.0;
      s += p;
    }
    lo = std::min(lo, s);
    hi = std::max(hi, s);
  }
  return ProbabilityCheck{nonfinite, negative, lo, hi};
}

template ProbabilityCheck check_probabilities<float>(const float*, int64_t, int);
template ProbabilityCheck check_probabilities<double>(const double*, int64_t, int);

#define MMKERN_INSTANTIATE(T, Code)                                                              \
  template void argmax_codes<T, Code>(const T*, int, int64_t, int, Code*);                      \
  template void sample_statistics<T, Code>(const T*, const Code*, int, int64_t, int,            \
                                           const int64_t*, double*, int64_t*, double*, double*, \
                                           uint8_t*);
MMKERN_INSTANTIATE(float, uint8_t)
MMKERN_INSTANTIATE(float, uint16_t)
MMKERN_INSTANTIATE(double, uint8_t)
MMKERN_INSTANTIATE(double, uint16_t)
MMKERN_INSTANTIATE(float, uint32_t)
MMKERN_INSTANTIATE(double, uint32_t)
#undef MMKERN_INSTANTIATE

}  // namespace mmkern
