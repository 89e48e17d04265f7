// CPU fused multi-alpha lerp (connectivity.h): all K interpolated parameter vectors in one pass.
//
// Compiled with -ffp-contract=off (CMakeLists.txt) so lerp_value stays three separately rounded
// float64 operations, bitwise the Python expression, in both target clones.
#include <algorithm>
#include <cstdint>
#include <stdexcept>

#include "common/connectivity_math.h"
#include "common/macros.h"
#include "connectivity.h"

namespace mmkern {
namespace {

// Elements per task: 16K values of a and b (128-256 KiB together) stay in L2 while every alpha's
// row of the block is written, so the endpoints are read from memory once per block.
constexpr int64_t kBlock = 16384;
// Below this many outputs the pass is too short to pay for a parallel region.
constexpr int64_t kParallelMin = 1 << 15;

// out[i] = T(lerp_value(a[i], b[i], alpha)) for i < len: a plain loop the compiler vectorises
// (float -> double converts, two multiplies, one add, double -> float rounds).
template <typename T>
MMKERN_TARGET_CLONES void lerp_row(const T* __restrict a, const T* __restrict b, int64_t len,
                                   double alpha, T* __restrict out) {
  for (int64_t i = 0; i < len; ++i)
    out[i] = static_cast<T>(lerp_value(static_cast<double>(a[i]), static_cast<double>(b[i]), alpha));
}

}  // namespace

template <typename T>
void lerp_many(const T* a, const T* b, int64_t p, const double* alphas, int64_t k, T* out) {
  if (p < 0 || k < 0) throw std::invalid_argument("lerp_many: p and k must be non-negative");
  if (p == 0 || k == 0) return;
  const int64_t blocks = (p + kBlock - 1) / kBlock;
  const bool parallel = p * k >= kParallelMin;
  // Tasks are (block, alpha) pairs, block-major: each thread's consecutive tasks reuse a block.
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t t = 0; t < blocks * k; ++t) {
    const int64_t blk = t / k, j = t % k;
    const int64_t i0 = blk * kBlock, len = std::min(kBlock, p - i0);
    lerp_row(a + i0, b + i0, len, alphas[j], out + j * p + i0);
  }
}

template void lerp_many<float>(const float*, const float*, int64_t, const double*, int64_t, float*);
template void lerp_many<double>(const double*, const double*, int64_t, const double*, int64_t, double*);

}  // namespace mmkern
