// Linear-mode-connectivity kernels: the parameters of models interpolated between two endpoints.
//
// A model's parameters are flattened into one contiguous vector of p values; the K interpolated
// parameter sets of a connectivity curve are materialised by one fused pass (docs/design.md,
// "Connectivity"). Inputs and outputs are float32 or float64 (the same T for all three); the arithmetic is
// float64 (lerp_value in common/connectivity_math.h) and each output is rounded to T once.
#pragma once

#include <cstdint>

#include "common/connectivity_math.h"

namespace mmkern {

// Shape contract:
//   a, b:    p contiguous values each (the two endpoints' flattened parameters), p >= 0
//   alphas:  k contiguous float64 interpolation weights, k >= 0 (finite; not checked here)
//   out:     k x p contiguous values, row-major, overwritten (must not overlap a or b):
//            out[j * p + i] = T(lerp_value(double(a[i]), double(b[i]), alphas[j]))
//                           = T((1 - alpha_j) * a[i] + alpha_j * b[i])   (float64 arithmetic)
// Parallel (OpenMP) over rows and blocks of elements; the inner loop over elements vectorises.
// Throws std::invalid_argument for negative p or k.
template <typename T>
void lerp_many(const T* a, const T* b, int64_t p, const double* alphas, int64_t k, T* out);

}  // namespace mmkern

namespace mmkern {

// Batch normalisation in training mode over one batch, in place, optionally fused with ReLU:
// the BatchNorm re-estimation pass of the connectivity engine (each BatchNorm output feeds only
// the next layer there, so it may overwrite the convolution output it normalises).
//
// Shape contract:
//   x:            outer x c x inner contiguous values (NCHW-style: outer = N, inner = H*W;
//                 channels-last: outer = N*H*W, inner = 1), outer * inner >= 2; overwritten with
//                 batchnorm_apply(x, scale_c, shift_c, relu) (common/batchnorm_math.h)
//   weight, bias: c values each (gamma, beta), or nullptr for 1 and 0
//   mean, var:    c float64 values each, written: the batch mean and the biased batch variance
//                 (two passes in float64: the mean, then the squared deviations from it)
// Parallel (OpenMP) over blocks of outer; the per-thread partial sums are added in thread order,
// so results are deterministic for a given number of threads.
template <typename T>
void batchnorm_train_inplace(T* x, int64_t outer, int64_t c, int64_t inner, const T* weight, const T* bias,
                             double eps, bool relu, double* mean, double* var);

}  // namespace mmkern
