// Scalar math of the linear-mode-connectivity kernels, shared by the CPU and CUDA kernels.
//
// MMKERN_HOST_DEVICE functions over plain values, so the CPU tests exercise exactly the code the
// CUDA kernels run.
#pragma once

#include "common/macros.h"

namespace mmkern {

// The point at `alpha` on the segment from a to b, in float64:
//
//   lerp_value(a, b, alpha) = (1 - alpha) * a + alpha * b
//
// evaluated as three separately rounded float64 operations, t = 1 - alpha, u = t * a,
// v = alpha * b, u + v (never fused into an FMA: the CUDA build uses the explicit
// round-to-nearest intrinsics and csrc/cpu/lerp.cpp is compiled with -ffp-contract=off), so it is
// bitwise the NumPy / torch expression `(1 - alpha) * a + alpha * b` in float64. This is the
// symmetric two-product form, not torch.lerp's `a + alpha * (b - a)` (which switches formulas at
// alpha = 0.5); the two can differ in the last bit.
//
// Endpoints are exact for finite a and b: alpha = 0 gives 1 * a + 0 * b = a + (+-0) = a, and
// alpha = 1 gives 0 * a + 1 * b = (+-0) + b = b (apart from the sign of a zero result: -0 + +0 =
// +0). An inf or NaN in the endpoint that is weighted by zero still poisons the result
// (0 * inf = NaN), as in the Python expression.
MMKERN_HOST_DEVICE double lerp_value(double a, double b, double alpha) {
#if defined(__CUDA_ARCH__)
  return __dadd_rn(__dmul_rn(1.0 - alpha, a), __dmul_rn(alpha, b));
#else
  const double u = (1.0 - alpha) * a;
  const double v = alpha * b;
  return u + v;
#endif
}

}  // namespace mmkern
