// Joint Gram accumulation: the one pass over activation data that every similarity metric needs.
//
// M models' activations for the same samples are treated as one stacked matrix
//   Z = [X_0 | X_1 | ... | X_{M-1}]          (rows: samples, D = sum_i d_i columns)
// and the kernels accumulate, over any number of row batches,
//   gram   (D x D, column-major, upper triangle)  += (Z - 1 shift^T)^T (Z - 1 shift^T)
//   colsum (D)                                    += column sums of (Z - shift)
// and, when the debiased CKA statistics are requested, with q_s[i] = |z_s[model i] - shift_i|^2,
//   row_moments (D x M, column-major)             += (Z - shift)^T Q
//   norm_products (M x M, column-major)           += Q^T Q
//   norm_sums (M)                                 += column sums of Q.
// Subtracting a shift close to the column means (the exact means in memory, the first batch's
// means when streaming) keeps the later centering free of cancellation.
#pragma once

#include <cstdint>

#include "common/view.h"

namespace mmkern {

struct GramAccumulator {
  int64_t dim = 0;                 // D
  int models = 0;                  // M
  const int64_t* offsets = nullptr;  // M + 1 column offsets of the models in Z
  const double* shift = nullptr;   // D
  double* gram = nullptr;          // D x D
  double* colsum = nullptr;        // D
  double* row_moments = nullptr;   // D x M, or null (no debiased statistics)
  double* norm_products = nullptr;  // M x M, or null
  double* norm_sums = nullptr;     // M, or null
};

// Column sums of each view, concatenated into `out` (D). Returns the index of the first view
// holding a NaN or infinity, or -1.
int column_sums(const MatrixView* views, int m, double* out);

// Copies rows [row_begin, row_begin + rows) of the stacked views, minus `shift`, as float64 into
// the column-major `out` (rows x D, leading dimension `ld` >= rows). Returns the index of the
// first view holding a NaN or infinity in those rows, or -1. (CUDA twin: pack_rows_cuda.)
int pack_rows(const MatrixView* views, int m, int64_t row_begin, int64_t rows,
              const double* shift, double* out, int64_t ld);

// Adds every row of the views (all with the same number of rows) to the accumulator, in chunks of
// at most `chunk_rows` rows. Returns the index of the first view with a NaN or infinity (the
// accumulator is then left unchanged), or -1.
int gram_update(const MatrixView* views, int m, GramAccumulator& acc, int64_t chunk_rows);

// Turns accumulated (shifted) statistics into centered ones for n samples:
//   norm_products_out (M x M) = sum_s |x_s - mean_i|^2 |y_s - mean_j|^2 (if the debiased
//                                statistics were accumulated; else left untouched)
//   gram_out (D x D, upper)   = gram - colsum colsum^T / n
// `gram_out` may alias `acc.gram` (in-place centering).
void center_gram(const GramAccumulator& acc, int64_t n, double* gram_out, double* norm_products_out);

}  // namespace mmkern
