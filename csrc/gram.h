// Joint Gram accumulation: the passes over activation data that every similarity metric needs.
//
// M models' activations for the same samples are treated as one stacked matrix
//   Z = [X_0 | X_1 | ... | X_{M-1}]          (rows: samples, D = sum_i d_i columns)
// and the kernels accumulate, over any number of row batches, with Zs = Z - 1 shift^T,
//   gram   += Zs^T Zs   either the full D x D matrix (column-major, upper triangle), or only its
//                       diagonal blocks X_i^T X_i stored one after another (d_i x d_i each)
//   colsum += column sums of Zs                                  (D)
// and, when the debiased-CKA statistics are requested (full layout only), with
// q_s[i] = |zs_s[model i]|^2 the squared norm of sample s's shifted activations in model i,
//   row_moments   += Zs^T Q   (D x M, column-major)
//   norm_products += Q^T Q    (M x M)
//   norm_sums     += 1^T Q    (M).
// Subtracting a shift close to the column means (the exact means in memory, the first batch's
// means when streaming) keeps the later centering free of cancellation.
//
// A second, optional pass projects the centered data onto per-model bases B_i (d_i x c_i) and
// accumulates the K x K Gram of U = [Xc_0 B_0 | ... | Xc_{M-1} B_{M-1}] (K = sum_i c_i): with
// whitening bases this is every pair's Q_i^T Q_j at once (similarity.h, projected_pairs).
#pragma once

#include <cstdint>

#include "common/view.h"

namespace mmkern {

struct GramAccumulator {
  int64_t dim = 0;                   // D
  int models = 0;                    // M
  const int64_t* offsets = nullptr;  // M + 1 column offsets of the models in Z
  bool blocks_only = false;          // diagonal blocks only (sum_i d_i^2 doubles)
  const double* shift = nullptr;     // D
  double* gram = nullptr;            // D x D, or the diagonal blocks
  double* colsum = nullptr;          // D
  double* row_moments = nullptr;     // D x M, or null (no debiased statistics)
  double* norm_products = nullptr;   // M x M, or null
  double* norm_sums = nullptr;       // M, or null
};

// Offset of model i's d_i x d_i block in the blocks-only layout.
int64_t diagonal_block_offset(const int64_t* offsets, int i);

// Column sums of each view, concatenated into `out` (D), and (when `max_abs` is not null) each
// view's largest magnitude into max_abs[i] (M). Returns the index of the first view holding a
// NaN or infinity, or -1 (finite values whose sum overflows are not reported: the caller rescales
// them, see mmkern/similarity/_checks.py, magnitude_exponent).
int column_sums(const MatrixView* views, int m, double* out, double* max_abs = nullptr);

// Copies rows [row_begin, row_begin + rows) of the stacked views, minus `shift`, as float64 into
// the column-major `out` (rows x D, leading dimension `ld` >= rows). (CUDA twin: pack_rows_cuda.)
void pack_rows(const MatrixView* views, int m, int64_t row_begin, int64_t rows,
               const double* shift, double* out, int64_t ld);

// Adds every row of the views (all with the same number of rows) to the accumulator, in chunks of
// at most `chunk_rows` rows. With `validate`, first checks every value: returns the index of the
// first view with a NaN or infinity (the accumulator is then left unchanged), or -1. Callers that
// already ran column_sums on the same views pass validate = false.
int gram_update(const MatrixView* views, int m, GramAccumulator& acc, int64_t chunk_rows,
                bool validate = true);

// Turns accumulated (shifted) statistics into centered ones for n samples:
//   gram_out          = gram - colsum colsum^T / n   (same layout as acc.gram; may alias it)
//   norm_products_out = sum_s |x_s - mean_i|^2 |y_s - mean_j|^2  (M x M; only when the debiased
//                       statistics were accumulated and norm_products_out is not null)
void center_gram(const GramAccumulator& acc, int64_t n, double* gram_out, double* norm_products_out);

// The second pass: out (K x K, column-major, upper triangle) += U^T U with
// U = [(X_0 - 1 mean_0^T) B_0 | ...]; bases[i] is d_i x c_i column-major (leading dimension d_i),
// koffsets the M + 1 column offsets of the c_i. `mean` (D) are the exact column means. With
// `loadings` non-null, also loadings[i] (d_i x c_i) += Xc_i^T U_i (the PWCCA loadings).
void projected_gram_update(const MatrixView* views, int m, const int64_t* offsets,
                           const double* mean, const double* const* bases,
                           const int64_t* koffsets, double* out, double* const* loadings,
                           int64_t chunk_rows);

}  // namespace mmkern
