// CUDA twins of the CPU kernels (STYLE.md conventions 1-2): the contract of mmkern._C_cuda.
//
// Everything here takes device pointers, plain shapes and strides, and a cudaStream_t; nothing
// knows about Python. The element math is shared with the CPU kernels through the host/device
// headers common/view.h (load_as_double), common/similarity_math.h (correlation_summary,
// weighted_correlation, cka_ratio, debiased_hsic) and common/multiplicity_math.h (soft_term,
// row_neg_entropy, blahut_arimoto) and common/connectivity_math.h (lerp_value), so the CPU tests
// exercise it too.
//
// Launches are asynchronous on `stream` (no synchronisation). Invalid arguments throw
// std::invalid_argument before anything is launched; a failed launch throws std::runtime_error
// with the CUDA error string.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "common/connectivity_math.h"
#include "common/multiplicity_math.h"
#include "common/view.h"

namespace mmkern {

// Twin of pack_rows (gram.h). Copies rows [row_begin, row_begin + rows) of the m stacked views,
// minus `shift`, as float64 into the column-major `out`:
//   out[c * ld + r] = load_as_double(view_of(c), row_begin + r, c - offset_of(c)) - shift[c]
// for r < rows and c < D = sum of the views' cols (the views' columns stacked left to right).
//   views:  host array of m views whose `data` are device pointers (float32 or float64, any
//           element strides); every view must have at least row_begin + rows rows
//   shift:  device, D doubles
//   out:    device, at least (D - 1) * ld + rows doubles; ld >= rows
void pack_rows_cuda(const MatrixView* views, int m, int64_t row_begin, int64_t rows,
                    const double* shift, double* out, int64_t ld, cudaStream_t stream);

// Per-pair summaries of canonical correlations (the CCA family of similarity.h).
// `rho` holds npairs rows of kmax values (row-major, row p at rho + p * kmax); row p's first
// count[p] values (0 <= count[p] <= kmax) are pair p's correlations, the rest are ignored.
// Null outputs are not computed. For every pair p, with the functors of similarity_math.h:
//   correlation_summary(rho_p, count[p], &mean[p], &r2[p])      (SVCCA / CCA mean, CCA r2)
//   weighted[p] = weighted_correlation(rho_p, weights_p, count[p])   (PWCCA; needs weights)
struct PairSummaryArgs {
  int64_t npairs = 0;
  int64_t kmax = 0;
  const double* rho = nullptr;      // device, npairs x kmax
  const int64_t* count = nullptr;   // device, npairs
  const double* weights = nullptr;  // device, npairs x kmax (same layout as rho), or null
  double* mean = nullptr;           // device, npairs, or null
  double* r2 = nullptr;             // device, npairs, or null
  double* weighted = nullptr;       // device, npairs, or null (requires weights)
};
void pair_summaries_cuda(const PairSummaryArgs& args, cudaStream_t stream);

// Per-pair linear CKA from Gram-block statistics of M models on n centered samples:
//   cross_fro2[p]      ||X_i^T X_j||_F^2 for pair p = (first[p], second[p])
//   self_fro2[i]       ||X_i^T X_i||_F^2                         (M)
//   trace[i]           ||X_i||_F^2 = tr(X_i^T X_i)               (M; debiased only)
//   norm_products      M x M, [i * M + j] = sum_s |x_{i,s}|^2 |x_{j,s}|^2 (symmetric; debiased)
// Outputs (null = not computed), for every pair p:
//   cka[p]          = cka_ratio(cross_fro2[p], self_fro2[i], self_fro2[j])
//   cka_debiased[p] = cka_ratio(debiased_hsic(cross, np_ij, tr_i, tr_j, n),
//                               debiased_hsic(self_i, np_ii, tr_i, tr_i, n),
//                               debiased_hsic(self_j, np_jj, tr_j, tr_j, n))
struct CkaArgs {
  int64_t npairs = 0;
  int64_t models = 0;
  double n = 0.0;
  const int64_t* first = nullptr;          // device, npairs, values in [0, models)
  const int64_t* second = nullptr;         // device, npairs, values in [0, models)
  const double* cross_fro2 = nullptr;      // device, npairs
  const double* self_fro2 = nullptr;       // device, models
  const double* trace = nullptr;           // device, models, or null (no debiased output)
  const double* norm_products = nullptr;   // device, models x models, or null
  double* cka = nullptr;                   // device, npairs, or null
  double* cka_debiased = nullptr;          // device, npairs, or null (needs trace, norm_products)
};
void cka_from_norms_cuda(const CkaArgs& args, cudaStream_t stream);

// ---- Predictive multiplicity: twins of multiplicity.h (same layouts and math) -----------------
// codes: device (M, n) C-contiguous uint8/uint16/uint32 class codes, codes[m * n + x]; probs:
// device (M, n, C) C-contiguous float32/float64, probs[(m * n + x) * C + c]. Sums are float64.

// Twin of disagreement_counts. counts: device, M x M int64 (row-major), overwritten: the number
// of samples on which models i and j disagree, diagonal 0. Tiles of 32 x 32 pairs stage packed
// code words in shared memory (4 uint8 / 2 uint16 / 1 uint32 codes per 32-bit compare); the
// samples are split over blocks whose integer counts are combined atomically (exact,
// order-independent).
template <typename Code>
void disagreement_counts_cuda(const Code* codes, int M, int64_t n, int64_t* counts, cudaStream_t stream);

// Twin of soft_disagreement. out: device, M x M float64, overwritten: the mean over samples of
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
// (tol, max_iter) and stores out[x] = min(C, exp(capacity)) and, unless null, gap[x] = the final
// gap between the capacity bounds in nats (device, n each).
// workspace: device, workspace_size doubles, at least rashomon_workspace_per_sample(M, C); when it
// holds fewer than n samples' scratch, consecutive launches on `stream` reuse it.
template <typename T>
void rashomon_capacity_cuda(const T* probs, int M, int64_t n, int C, double tol, int max_iter,
                            double* out, double* gap, double* workspace, int64_t workspace_size,
                            cudaStream_t stream);

// ---- Linear mode connectivity: twin of connectivity.h ------------------------------------------

// Twin of lerp_many. a, b: device, p contiguous float32/float64 values each; alphas: device, k
// float64; out: device, k x p contiguous values of the same T, overwritten (no overlap with a or
// b): out[j * p + i] = T(lerp_value(double(a[i]), double(b[i]), alphas[j])), the same bits as the
// CPU kernel. Grid-stride over elements, blockIdx.y over alphas.
template <typename T>
void lerp_many_cuda(const T* a, const T* b, int64_t p, const double* alphas, int64_t k, T* out,
                    cudaStream_t stream);

}  // namespace mmkern
