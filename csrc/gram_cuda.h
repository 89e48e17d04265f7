// CUDA twin of gram.h's pack_rows (device pointers, launches asynchronous on `stream`).
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "common/view.h"

namespace mmkern {

// Copies rows [row_begin, row_begin + rows) of the m stacked views, minus `shift`, as float64
// into the column-major `out`:
//   out[c * ld + r] = load_as_double(view_of(c), row_begin + r, c - offset_of(c)) - shift[c]
// for r < rows and c < D = sum of the views' cols (the views' columns stacked left to right).
//   views:  host array of m views whose `data` are device pointers (float32 or float64, any
//           element strides); every view must have at least row_begin + rows rows
//   shift:  device, D doubles
//   out:    device, at least (D - 1) * ld + rows doubles; ld >= rows
// Invalid arguments throw std::invalid_argument before anything is launched.
void pack_rows_cuda(const MatrixView* views, int m, int64_t row_begin, int64_t rows,
                    const double* shift, double* out, int64_t ld, cudaStream_t stream);

}  // namespace mmkern
