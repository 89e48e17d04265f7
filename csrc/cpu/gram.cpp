// CPU joint Gram accumulation: strided pack to float64 + one BLAS SYRK per row chunk.
#include "gram.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "common/lapack.h"

namespace mmkern {
namespace {

template <typename T>
const T* typed(const MatrixView& v) {
  return static_cast<const T*>(v.data);
}

// Column sums of one view in float64, with a flag for non-finite values; parallel over columns.
template <typename T>
bool column_sums_view(const MatrixView& v, double* out) {
  const T* p = typed<T>(v);
  bool bad = false;
#pragma omp parallel for schedule(static) reduction(|| : bad)
  for (int64_t c = 0; c < v.cols; ++c) {
    double s = 0.0;
    bool local_bad = false;
    for (int64_t r = 0; r < v.rows; ++r) {
      const double x = static_cast<double>(p[r * v.row_stride + c * v.col_stride]);
      local_bad |= !std::isfinite(x);
      s += x;
    }
    out[c] = s;
    bad = bad || local_bad;
  }
  return bad;
}

// Packs rows [r0, r0 + rows) of one view minus shift into column-major `out` (ld); tiles of
// columns keep each read row segment in cache whatever the input order.
template <typename T>
bool pack_view(const MatrixView& v, int64_t r0, int64_t rows, const double* shift, double* out,
               int64_t ld) {
  constexpr int64_t kTile = 16;
  const T* p = typed<T>(v);
  const int64_t tiles = (v.cols + kTile - 1) / kTile;
  bool bad = false;
#pragma omp parallel for schedule(static) reduction(|| : bad)
  for (int64_t t = 0; t < tiles; ++t) {
    const int64_t c0 = t * kTile, c1 = std::min(v.cols, c0 + kTile);
    bool local_bad = false;
    for (int64_t r = 0; r < rows; ++r) {
      const T* row = p + (r0 + r) * v.row_stride;
      for (int64_t c = c0; c < c1; ++c) {
        const double x = static_cast<double>(row[c * v.col_stride]);
        local_bad |= !std::isfinite(x);
        out[c * ld + r] = x - shift[c];
      }
    }
    bad = bad || local_bad;
  }
  return bad;
}

}  // namespace

int column_sums(const MatrixView* views, int m, double* out) {
  int64_t off = 0;
  for (int i = 0; i < m; ++i) {
    const bool bad = views[i].dtype == DType::Float32 ? column_sums_view<float>(views[i], out + off)
                                                      : column_sums_view<double>(views[i], out + off);
    if (bad) return i;
    off += views[i].cols;
  }
  return -1;
}

int pack_rows(const MatrixView* views, int m, int64_t row_begin, int64_t rows,
              const double* shift, double* out, int64_t ld) {
  int64_t off = 0;
  int first_bad = -1;
  for (int i = 0; i < m; ++i) {
    const MatrixView& v = views[i];
    const bool bad =
        v.dtype == DType::Float32
            ? pack_view<float>(v, row_begin, rows, shift + off, out + off * ld, ld)
            : pack_view<double>(v, row_begin, rows, shift + off, out + off * ld, ld);
    if (bad && first_bad < 0) first_bad = i;
    off += v.cols;
  }
  return first_bad;
}

int gram_update(const MatrixView* views, int m, GramAccumulator& acc, int64_t chunk_rows) {
  const int64_t n = m > 0 ? views[0].rows : 0;
  const int64_t D = acc.dim;
  if (n == 0 || D == 0) return -1;
  // Validate the whole batch first so that a bad value leaves the accumulator untouched.
  std::vector<double> sums(D);
  const int bad = column_sums(views, m, sums.data());
  if (bad >= 0) return bad;

  const bool moments = acc.row_moments != nullptr;
  const int64_t chunk = std::max<int64_t>(1, std::min(chunk_rows, n));
  std::vector<double> buf(static_cast<size_t>(chunk) * D);
  std::vector<double> q(moments ? static_cast<size_t>(chunk) * m : 0);
  for (int64_t r0 = 0; r0 < n; r0 += chunk) {
    const int64_t rows = std::min(chunk, n - r0);
    pack_rows(views, m, r0, rows, acc.shift, buf.data(), rows);
    lapack::syrk_upper_t(static_cast<int>(D), static_cast<int>(rows), 1.0, buf.data(),
                         static_cast<int>(rows), 1.0, acc.gram, static_cast<int>(D));
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < D; ++c) {
      double s = 0.0;
      for (int64_t r = 0; r < rows; ++r) s += buf[c * rows + r];
      acc.colsum[c] += s;
    }
    if (!moments) continue;
    // q[r, i] = squared norm of row r of model i (shifted); then R += Z^T Q, QQ += Q^T Q.
    std::fill(q.begin(), q.end(), 0.0);
    for (int i = 0; i < m; ++i) {
      double* qi = q.data() + static_cast<size_t>(i) * rows;
      for (int64_t c = acc.offsets[i]; c < acc.offsets[i + 1]; ++c) {
        const double* col = buf.data() + c * rows;
        for (int64_t r = 0; r < rows; ++r) qi[r] += col[r] * col[r];
      }
      double s = 0.0;
      for (int64_t r = 0; r < rows; ++r) s += qi[r];
      acc.norm_sums[i] += s;
    }
    lapack::gemm('T', 'N', static_cast<int>(D), m, static_cast<int>(rows), 1.0, buf.data(),
                 static_cast<int>(rows), q.data(), static_cast<int>(rows), 1.0, acc.row_moments,
                 static_cast<int>(D));
    lapack::gemm('T', 'N', m, m, static_cast<int>(rows), 1.0, q.data(), static_cast<int>(rows),
                 q.data(), static_cast<int>(rows), 1.0, acc.norm_products, m);
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

  if (acc.row_moments != nullptr && norm_products_out != nullptr) {
    // sum_s qc_i qc_j from shifted statistics, with m_i the mean of the shifted data of model i
    // and c_i = |m_i|^2 (derivation in docs: expand qc = q - 2 x.m + c):
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
#pragma omp parallel for schedule(dynamic, 16)
  for (int64_t b = 0; b < D; ++b)
    for (int64_t a = 0; a <= b; ++a)
      gram_out[b * D + a] = acc.gram[b * D + a] - acc.colsum[a] * acc.colsum[b] / nn;
}

}  // namespace mmkern
