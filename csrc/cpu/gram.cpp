// CPU joint Gram accumulation: strided pack to float64 row chunks + BLAS SYRK.
#include "gram.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <vector>

#include "common/lapack.h"
#include "common/parallel.h"
#include "common/parallel_for.h"

namespace mmkern {
namespace {

template <typename T>
const T* typed(const MatrixView& v) {
  return static_cast<const T*>(v.data);
}

// Whether a view holds a NaN or infinity (the rare path: only asked when a column sum is not
// finite, which finite values can also give by overflowing).
template <typename T>
bool has_non_finite(const MatrixView& v) {
  const T* p = typed<T>(v);
  bool bad = false;
#pragma omp parallel for schedule(static) reduction(|| : bad)
  for (int64_t r = 0; r < v.rows; ++r)
    for (int64_t c = 0; c < v.cols; ++c) bad = bad || !std::isfinite(p[r * v.row_stride + c * v.col_stride]);
  return bad;
}

// Column sums of one view in float64, its largest magnitude (NaN ignored) and whether it holds a
// NaN or infinity. Walks the array in memory order: by rows (per-thread partial sums) when rows
// are contiguous, else by columns.
template <typename T>
bool column_sums_view(const MatrixView& v, double* out, double* max_abs) {
  const T* p = typed<T>(v);
  bool overflow = false;
  double mx = 0.0;
  if (std::llabs(v.col_stride) > std::llabs(v.row_stride)) {
#pragma omp parallel for schedule(static) reduction(|| : overflow) reduction(max : mx)
    for (int64_t c = 0; c < v.cols; ++c) {
      double s = 0.0;
      for (int64_t r = 0; r < v.rows; ++r) {
        const double x = static_cast<double>(p[r * v.row_stride + c * v.col_stride]);
        s += x;
        mx = std::max(mx, std::fabs(x));
      }
      out[c] = s;
      overflow = overflow || !std::isfinite(s);
    }
  } else {
    // Per thread and column: partial sums and largest magnitudes (element-wise, so both loops
    // vectorise; the magnitudes are reduced over columns once at the end).
    const int nt = max_threads();
    std::vector<double> partial(static_cast<size_t>(nt) * v.cols, 0.0);
    std::vector<double> largest(static_cast<size_t>(nt) * v.cols, 0.0);
#pragma omp parallel
    {
      const size_t at = static_cast<size_t>(thread_id()) * v.cols;
      double* acc = partial.data() + at;
      double* big = largest.data() + at;
#pragma omp for schedule(static)
      for (int64_t r = 0; r < v.rows; ++r) {
        const T* row = p + r * v.row_stride;
        if (v.col_stride == 1) {  // contiguous rows (C order)
          for (int64_t c = 0; c < v.cols; ++c) {
            const double x = static_cast<double>(row[c]);
            acc[c] += x;
            big[c] = std::max(big[c], std::fabs(x));
          }
        } else {
          for (int64_t c = 0; c < v.cols; ++c) {
            const double x = static_cast<double>(row[c * v.col_stride]);
            acc[c] += x;
            big[c] = std::max(big[c], std::fabs(x));
          }
        }
      }
    }
    for (int64_t c = 0; c < v.cols; ++c) {
      double s = 0.0;
      for (int t = 0; t < nt; ++t) {
        s += partial[static_cast<size_t>(t) * v.cols + c];
        mx = std::max(mx, largest[static_cast<size_t>(t) * v.cols + c]);
      }
      out[c] = s;
      overflow = overflow || !std::isfinite(s);
    }
  }
  if (max_abs != nullptr) *max_abs = mx;
  return overflow && has_non_finite<T>(v);
}

// Rows [r0, r0 + rows) of one view minus shift, into column-major `out` (ld). Tiles of columns
// keep each read row segment in cache whatever the input order.
template <typename T>
void pack_view(const MatrixView& v, int64_t r0, int64_t rows, const double* shift, double* out,
               int64_t ld) {
  constexpr int64_t kTile = 16;
  const T* p = typed<T>(v);
  const int64_t tiles = (v.cols + kTile - 1) / kTile;
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < tiles; ++t) {
    const int64_t c0 = t * kTile, c1 = std::min(v.cols, c0 + kTile);
    for (int64_t r = 0; r < rows; ++r) {
      const T* row = p + (r0 + r) * v.row_stride;
      for (int64_t c = c0; c < c1; ++c)
        out[c * ld + r] = static_cast<double>(row[c * v.col_stride]) - shift[c];
    }
  }
}

}  // namespace

int64_t diagonal_block_offset(const int64_t* offsets, int i) {
  int64_t off = 0;
  for (int l = 0; l < i; ++l) off += (offsets[l + 1] - offsets[l]) * (offsets[l + 1] - offsets[l]);
  return off;
}

int column_sums(const MatrixView* views, int m, double* out, double* max_abs) {
  int64_t off = 0;
  for (int i = 0; i < m; ++i) {
    double* mx = max_abs != nullptr ? max_abs + i : nullptr;
    const bool bad = views[i].dtype == DType::Float32 ? column_sums_view<float>(views[i], out + off, mx)
                                                      : column_sums_view<double>(views[i], out + off, mx);
    if (bad) return i;
    off += views[i].cols;
  }
  return -1;
}

void pack_rows(const MatrixView* views, int m, int64_t row_begin, int64_t rows,
               const double* shift, double* out, int64_t ld) {
  int64_t off = 0;
  for (int i = 0; i < m; ++i) {
    const MatrixView& v = views[i];
    if (v.dtype == DType::Float32)
      pack_view<float>(v, row_begin, rows, shift + off, out + off * ld, ld);
    else
      pack_view<double>(v, row_begin, rows, shift + off, out + off * ld, ld);
    off += v.cols;
  }
}

int gram_update(const MatrixView* views, int m, GramAccumulator& acc, int64_t chunk_rows,
                bool validate) {
  const int64_t n = m > 0 ? views[0].rows : 0;
  const int64_t D = acc.dim;
  if (n == 0 || D == 0) return -1;
  // Validate the whole batch first so that a bad value leaves the accumulator untouched
  // (a non-finite value makes its column sum non-finite).
  if (validate) {
    std::vector<double> sums(D);
    const int bad = column_sums(views, m, sums.data());
    if (bad >= 0) return bad;
  }

  const bool moments = acc.row_moments != nullptr && !acc.blocks_only;
  const int64_t chunk = std::max<int64_t>(1, std::min(chunk_rows, n));
  std::vector<double> buf(static_cast<size_t>(chunk) * D);
  std::vector<double> q(moments ? static_cast<size_t>(chunk) * m : 0);
  for (int64_t r0 = 0; r0 < n; r0 += chunk) {
    const int rows = static_cast<int>(std::min(chunk, n - r0));
    pack_rows(views, m, r0, rows, acc.shift, buf.data(), rows);
    if (acc.blocks_only) {
      parallel_problems(m, [&](int i) {
        const int64_t o = acc.offsets[i];
        const int d = static_cast<int>(acc.offsets[i + 1] - o);
        lapack::syrk_upper_t(d, rows, 1.0, buf.data() + o * rows, rows, 1.0,
                             acc.gram + diagonal_block_offset(acc.offsets, i), d);
      });
    } else {
      lapack::syrk_upper_t(static_cast<int>(D), rows, 1.0, buf.data(), rows, 1.0, acc.gram,
                           static_cast<int>(D));
    }
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < D; ++c) {
      double s = 0.0;
      for (int64_t r = 0; r < rows; ++r) s += buf[c * rows + r];
      acc.colsum[c] += s;
    }
    if (!moments) continue;
    // q[r, i] = squared norm of row r of model i (shifted); then R += Zs^T Q, QQ += Q^T Q.
    std::fill(q.begin(), q.end(), 0.0);
    for (int i = 0; i < m; ++i) {
      double* qi = q.data() + static_cast<size_t>(i) * rows;
      for (int64_t c = acc.offsets[i]; c < acc.offsets[i + 1]; ++c) {
        const double* col = buf.data() + c * rows;
        for (int r = 0; r < rows; ++r) qi[r] += col[r] * col[r];
      }
      double s = 0.0;
      for (int r = 0; r < rows; ++r) s += qi[r];
      acc.norm_sums[i] += s;
    }
    lapack::gemm('T', 'N', static_cast<int>(D), m, rows, 1.0, buf.data(), rows, q.data(), rows,
                 1.0, acc.row_moments, static_cast<int>(D));
    lapack::gemm('T', 'N', m, m, rows, 1.0, q.data(), rows, q.data(), rows, 1.0,
                 acc.norm_products, m);
  }
  return -1;
}

void center_gram(const GramAccumulator& acc, int64_t n, double* gram_out,
                 double* norm_products_out) {
  const int64_t D = acc.dim;
  const int m = acc.models;
  const double nn = static_cast<double>(n);
  std::vector<double> mean(D);
  for (int64_t c = 0; c < D; ++c) mean[c] = acc.colsum[c] / nn;

  if (acc.row_moments != nullptr && !acc.blocks_only && norm_products_out != nullptr) {
    // sum_s qc_i(s) qc_j(s) with qc = q - 2 x.m + |m|^2 (x shifted, m its mean, c_i = |m_i|^2):
    //   QQ_ij - 2 (m_j . R[j-block, i] + m_i . R[i-block, j]) + c_j qsum_i + c_i qsum_j
    //   + 4 m_i^T G_ij m_j - 3 n c_i c_j
    std::vector<double> c2(m, 0.0);
    for (int i = 0; i < m; ++i)
      for (int64_t c = acc.offsets[i]; c < acc.offsets[i + 1]; ++c) c2[i] += mean[c] * mean[c];
    for (int j = 0; j < m; ++j) {
      for (int i = 0; i < m; ++i) {
        double mr = 0.0;
        for (int64_t c = acc.offsets[j]; c < acc.offsets[j + 1]; ++c)
          mr += mean[c] * acc.row_moments[i * D + c];
        for (int64_t c = acc.offsets[i]; c < acc.offsets[i + 1]; ++c)
          mr += mean[c] * acc.row_moments[j * D + c];
        double mgm = 0.0;  // m_i^T G_ij m_j, reading the upper triangle
        for (int64_t b = acc.offsets[j]; b < acc.offsets[j + 1]; ++b) {
          double t = 0.0;
          for (int64_t a = acc.offsets[i]; a < acc.offsets[i + 1]; ++a)
            t += mean[a] * (a <= b ? acc.gram[b * D + a] : acc.gram[a * D + b]);
          mgm += t * mean[b];
        }
        norm_products_out[j * m + i] = acc.norm_products[j * m + i] - 2.0 * mr +
                                       c2[j] * acc.norm_sums[i] + c2[i] * acc.norm_sums[j] +
                                       4.0 * mgm - 3.0 * nn * c2[i] * c2[j];
      }
    }
  }
  if (acc.blocks_only) {
    for (int i = 0; i < m; ++i) {
      const int64_t o = acc.offsets[i], d = acc.offsets[i + 1] - o;
      const int64_t bo = diagonal_block_offset(acc.offsets, i);
      for (int64_t b = 0; b < d; ++b)
        for (int64_t a = 0; a <= b; ++a)
          gram_out[bo + b * d + a] = acc.gram[bo + b * d + a] - acc.colsum[o + a] * acc.colsum[o + b] / nn;
    }
    return;
  }
#pragma omp parallel for schedule(dynamic, 16)
  for (int64_t b = 0; b < D; ++b)
    for (int64_t a = 0; a <= b; ++a)
      gram_out[b * D + a] = acc.gram[b * D + a] - acc.colsum[a] * acc.colsum[b] / nn;
}

void projected_gram_update(const MatrixView* views, int m, const int64_t* offsets,
                           const double* mean, const double* const* bases,
                           const int64_t* koffsets, double* out, double* const* loadings,
                           int64_t chunk_rows) {
  const int64_t n = m > 0 ? views[0].rows : 0;
  const int64_t D = offsets[m], K = koffsets[m];
  if (n == 0 || K == 0) return;
  const int64_t chunk = std::max<int64_t>(1, std::min(chunk_rows, n));
  std::vector<double> buf(static_cast<size_t>(chunk) * D), u(static_cast<size_t>(chunk) * K);
  for (int64_t r0 = 0; r0 < n; r0 += chunk) {
    const int rows = static_cast<int>(std::min(chunk, n - r0));
    pack_rows(views, m, r0, rows, mean, buf.data(), rows);
    for (int i = 0; i < m; ++i) {
      const int d = static_cast<int>(offsets[i + 1] - offsets[i]);
      const int k = static_cast<int>(koffsets[i + 1] - koffsets[i]);
      const double* xi = buf.data() + offsets[i] * rows;
      double* ui = u.data() + koffsets[i] * rows;
      lapack::gemm('N', 'N', rows, k, d, 1.0, xi, rows, bases[i], d, 0.0, ui, rows);
      if (loadings)
        lapack::gemm('T', 'N', d, k, rows, 1.0, xi, rows, ui, rows, 1.0, loadings[i], d);
    }
    lapack::syrk_upper_t(static_cast<int>(K), rows, 1.0, u.data(), rows, 1.0, out,
                         static_cast<int>(K));
  }
}

}  // namespace mmkern
