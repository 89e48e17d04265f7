// Predictive-multiplicity kernels: how differently a population of M models predicts.
//
// Hard predictions are compact class codes, model-major: codes[m * n + x] is model m's label for
// sample x (uint8 when C <= 256, else uint16; disagreement_counts also takes uint32 codes). Probabilities are model-major too:
// probs[(m * n + x) * C + c] (a C-contiguous (M, n, C) array, float32 or float64); every sum is
// accumulated in float64.
#pragma once

#include <cstdint>

#include "common/multiplicity_math.h"

namespace mmkern {

// counts (M x M, row-major, int64) = number of samples on which models i and j disagree, for all
// pairs; the diagonal is 0. Tiled over pairs and samples so the work is compute-bound; parallel
// over tiles. No (M, M, n) intermediate.
template <typename Code>
void disagreement_counts(const Code* codes, int M, int64_t n, int64_t* counts);

// out (M x M, row-major) = mean over samples of the per-sample `metric` between models i and j
// (soft_term in multiplicity_math.h). Symmetric metrics fill both triangles from one pass; KL fills
// out[i][j] = KL(model i || model j).
template <typename T>
void soft_disagreement(const T* probs, int M, int64_t n, int C, SoftMetric metric, double* out);

// out (n) = the Blahut-Arimoto capacity of each sample's channel in nats (its lower bound,
// clipped at 0; the reported Rashomon capacity is min(C, e^out), formed in Python for every
// route); gap (n, may be null) = the final gap between the capacity bounds, in nats (> tol only
// where max_iter was reached: there `out` is a lower bound). Parallel over samples.
template <typename T>
void rashomon_capacity(const T* probs, int M, int64_t n, int C, double tol, int max_iter,
                       double* out, double* gap);

// Hard labels: codes[m * n + x] = argmax_c probs[(m * n + x) * C + c] (lowest index on ties).
template <typename T, typename Code>
void argmax_codes(const T* probs, int M, int64_t n, int C, Code* codes);

// Per-sample statistics of a population (any output may be null):
//   vote_disagreement[x] = 1 - max_c (fraction of models predicting c)
//   majority[x]          = the most voted class (lowest index on ties)
//   variance[x]          = mean over classes of the across-model variance (ddof = 0) of p_m(x)_c
//   range[x]             = max_m p_m(x)_t - min_m p_m(x)_t, t = target[x] (or majority[x] when
//                          target is null)
//   all_agree[x]         = 1 when every model predicts the same class
template <typename T, typename Code>
void sample_statistics(const T* probs, const Code* codes, int M, int64_t n, int C,
                       const int64_t* target, double* vote_disagreement, int64_t* majority,
                       double* variance, double* range, uint8_t* all_agree);

// One pass over integer labels (rows x cols, element strides rs and cs, any integer type): their
// smallest and largest value, and uint8 codes in `out` (rows x cols, C-contiguous) that are
// valid when every label lies in [0, 256) (the caller checks the range).
struct LabelRange {
  int64_t min = 0;
  int64_t max = 0;
};
template <typename L>
LabelRange pack_labels(const L* labels, int64_t rows, int64_t cols, int64_t rs, int64_t cs,
                       uint8_t* out);

// Validation pass over a probability array (`rows` distributions of C values each): counts of
// non-finite and of negative entries, and the smallest and largest row sums (float64).
struct ProbabilityCheck {
  int64_t nonfinite = 0;
  int64_t negative = 0;
  double min_sum = 0.0;
  double max_sum = 0.0;
};
template <typename T>
ProbabilityCheck check_probabilities(const T* probs, int64_t rows, int C);

}  // namespace mmkern
