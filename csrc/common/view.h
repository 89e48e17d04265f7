// Strided, typed views of caller-owned arrays: how kernels receive input without copies.
#pragma once

#include <cstdint>

#include "common/macros.h"

namespace mmkern {

// Element types accepted by the kernels (the dtype policy is written once, in mmkern/_dtypes.py).
enum class DType : int { Float32 = 0, Float64 = 1 };

// A 2-D matrix view: element (r, c) lives at data + r * row_stride + c * col_stride, with strides
// counted in elements (not bytes), so C-, Fortran-ordered and sliced arrays all fit.
struct MatrixView {
  const void* data;
  int64_t rows;
  int64_t cols;
  int64_t row_stride;
  int64_t col_stride;
  DType dtype;
};

// Reads element (r, c) of a view as double; every kernel accumulates in float64.
MMKERN_HOST_DEVICE double load_as_double(const MatrixView& v, int64_t r, int64_t c) {
  const int64_t off = r * v.row_stride + c * v.col_stride;
  return v.dtype == DType::Float32 ? static_cast<double>(static_cast<const float*>(v.data)[off])
                                   : static_cast<const double*>(v.data)[off];
}

}  // namespace mmkern
