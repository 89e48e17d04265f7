// CUDA twin of pack_rows (gram.h): strided gather of stacked views minus a shift into a float64
// column-major buffer, ready for a cuBLAS SYRK/GEMM by the caller's array library.
#include <stdexcept>
#include <string>

#include "cuda/launch.h"
#include "gram_cuda.h"

namespace mmkern {
namespace {

constexpr int kTile = 32;      // tile edge (rows and columns)
constexpr int kTileRows = 8;   // threadIdx.y extent; each thread handles kTile / kTileRows entries

// One view's rows [row_begin, row_begin + rows) minus shift into out (column-major, ld), through
// a shared-memory tile so that both the read (along the input's contiguous axis, chosen by
// `read_along_cols`) and the write (along rows of the column-major output) are coalesced.
__global__ void pack_view_kernel(MatrixView v, int64_t row_begin, int64_t rows,
                                 const double* __restrict__ shift, double* __restrict__ out,
                                 int64_t ld, bool read_along_cols) {
  __shared__ double tile[kTile][kTile + 1];  // [row within tile][column within tile]
  const int64_t c0 = static_cast<int64_t>(blockIdx.x) * kTile;
  const int64_t row_tiles = (rows + kTile - 1) / kTile;
  for (int64_t t = blockIdx.y; t < row_tiles; t += gridDim.y) {
    const int64_t r0 = t * kTile;
    for (int k = threadIdx.y; k < kTile; k += kTileRows) {
      // read_along_cols: consecutive threads take consecutive columns of one row.
      const int tr = read_along_cols ? k : static_cast<int>(threadIdx.x);
      const int tc = read_along_cols ? static_cast<int>(threadIdx.x) : k;
      const int64_t r = r0 + tr, c = c0 + tc;
      if (r < rows && c < v.cols) tile[tr][tc] = load_as_double(v, row_begin + r, c) - shift[c];
    }
    __syncthreads();
    for (int k = threadIdx.y; k < kTile; k += kTileRows) {
      const int64_t r = r0 + threadIdx.x, c = c0 + k;
      if (r < rows && c < v.cols) out[c * ld + r] = tile[threadIdx.x][k];
    }
    __syncthreads();
  }
}

int64_t abs64(int64_t v) { return v < 0 ? -v : v; }

}  // namespace

void pack_rows_cuda(const MatrixView* views, int m, int64_t row_begin, int64_t rows,
                    const double* shift, double* out, int64_t ld, cudaStream_t stream) {
  if (m < 0) throw std::invalid_argument("pack_rows_cuda: negative number of views");
  if (row_begin < 0 || rows < 0) throw std::invalid_argument("pack_rows_cuda: negative row range");
  if (ld < rows) throw std::invalid_argument("pack_rows_cuda: ld must be >= rows");
  for (int i = 0; i < m; ++i) {
    const MatrixView& v = views[i];
    if (v.rows < row_begin + rows)
      throw std::invalid_argument("pack_rows_cuda: view " + std::to_string(i) + " has " +
                                  std::to_string(v.rows) + " rows, fewer than row_begin + rows");
    if (v.cols < 0) throw std::invalid_argument("pack_rows_cuda: negative column count");
    if (v.data == nullptr && v.rows * v.cols > 0)
      throw std::invalid_argument("pack_rows_cuda: null data pointer");
  }
  if (rows == 0) return;
  if (shift == nullptr || out == nullptr)
    throw std::invalid_argument("pack_rows_cuda: null shift or out pointer");

  const int64_t row_tiles = (rows + kTile - 1) / kTile;
  const unsigned grid_y = static_cast<unsigned>(row_tiles < 65535 ? row_tiles : 65535);
  const dim3 block(kTile, kTileRows);
  int64_t off = 0;
  for (int i = 0; i < m; ++i) {
    const MatrixView& v = views[i];
    if (v.cols > 0) {
      const dim3 grid(static_cast<unsigned>((v.cols + kTile - 1) / kTile), grid_y);
      // Read along the axis with the smaller stride (the contiguous one for C or F order).
      const bool read_along_cols = abs64(v.col_stride) <= abs64(v.row_stride);
      pack_view_kernel<<<grid, block, 0, stream>>>(v, row_begin, rows, shift + off, out + off * ld,
                                                   ld, read_along_cols);
      check_launch("pack_rows_cuda");
    }
    off += v.cols;
  }
}

}  // namespace mmkern
