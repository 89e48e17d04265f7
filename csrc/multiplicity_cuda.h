// CUDA twins of multiplicity.h (same layouts and math), on device buffers, asynchronous on
// `stream`. codes: (M, n) C-contiguous uint8/uint16/uint32 class codes, codes[m * n + x]; probs:
// (M, n, C) C-contiguous float32/float64, probs[(m * n + x) * C + c]. Sums are float64. Invalid
// arguments throw std::invalid_argument before anything is launched; a failed launch throws
// std::runtime_error with the CUDA error string.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "common/multiplicity_math.h"

namespace mmkern {

// Twin of disagreement_counts. counts: M x M int64 (row-major), overwritten: the number of
// samples on which models i and j disagree, diagonal 0. Tiles of 32 x 32 pairs stage packed code
// words in shared memory (4 uint8 / 2 uint16 / 1 uint32 codes per 32-bit compare); the samples
// are split over blocks whose integer counts are combined atomically (exact, order-independent).
template <typename Code>
void disagreement_counts_cuda(const Code* codes, int M, int64_t n, int64_t* counts, cudaStream_t stream);

// Twin of soft_disagreement. out: M x M float64, overwritten: the mean over samples of
// soft_term(metric, p_i(x), p_j(x)); symmetric metrics computed for i < j and mirrored, KL for
// every i != j (out[i][j] = KL(model i || model j)); diagonal 0. One thread per pair of a
// 16 x 16 tile; sample splits are summed with float64 atomicAdd, so the last bits may differ
// between runs.
template <typename T>
void soft_disagreement_cuda(const T* probs, int M, int64_t n, int C, SoftMetric metric, double* out,
                            cudaStream_t stream);

// Doubles of scratch one sample of rashomon_capacity_cuda needs: its channel P (M x C), its rows'
// negative entropies (M), then blahut_arimoto's w (M), logq (C) and d (M).
MMKERN_HOST_DEVICE int64_t rashomon_workspace_per_sample(int M, int C) {
  return static_cast<int64_t>(M) * C + 3 * static_cast<int64_t>(M) + C;
}

// Twin of rashomon_capacity: one thread per sample runs row_neg_entropy and blahut_arimoto
// (tol, max_iter) and stores out[x] = the capacity in nats (its lower bound) and, unless null,
// gap[x] = the final gap between the capacity bounds in nats (n each). workspace:
// workspace_size doubles, at least rashomon_workspace_per_sample(M, C); a launch takes as many
// samples as fit and interleaves their scratch (element e of sample k at e * count + k, so a
// warp's accesses are coalesced); consecutive launches on `stream` reuse it.
template <typename T>
void rashomon_capacity_cuda(const T* probs, int M, int64_t n, int C, double tol, int max_iter,
                            double* out, double* gap, double* workspace, int64_t workspace_size,
                            cudaStream_t stream);

}  // namespace mmkern
