// CUDA twin of connectivity.h's lerp_many, on device buffers, asynchronous on `stream`.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>

#include "common/connectivity_math.h"

namespace mmkern {

// a, b: p contiguous float32/float64 values each; alphas: k float64; out: k x p contiguous values
// of the same T, overwritten (no overlap with a or b):
//   out[j * p + i] = T(lerp_value(double(a[i]), double(b[i]), alphas[j]))
// the same bits as the CPU kernel. Grid-stride over elements, blockIdx.y over alphas.
template <typename T>
void lerp_many_cuda(const T* a, const T* b, int64_t p, const double* alphas, int64_t k, T* out,
                    cudaStream_t stream);

}  // namespace mmkern
