// Scalar math of batch normalisation in training mode, shared by the CPU kernel (and a CUDA twin).
//
// With the batch mean mu and biased variance var of a channel, BatchNorm maps z to
//   gamma * (z - mu) / sqrt(var + eps) + beta  =  z * scale + shift,
//   scale = gamma / sqrt(var + eps),  shift = beta - mu * scale   (computed in float64),
// optionally followed by ReLU.
#pragma once

#include <cmath>

#include "common/macros.h"

namespace mmkern {

MMKERN_HOST_DEVICE void batchnorm_affine(double mean, double var, double eps, double gamma, double beta,
                                         double* scale, double* shift) {
  *scale = gamma / sqrt(var + eps);
  *shift = beta - mean * *scale;
}

template <typename T>
MMKERN_HOST_DEVICE T batchnorm_apply(T z, T scale, T shift, bool relu) {
  const T y = z * scale + shift;
  return relu && !(y > T(0)) ? (y != y ? y : T(0)) : y;  // ReLU keeps NaN, as torch's does
}

}  // namespace mmkern
