// CUDA twin of the fused multi-alpha lerp (connectivity.h): lerp_value of
// common/connectivity_math.h per element (explicit round-to-nearest intrinsics on the device, so
// no FMA contraction: the same bits as the CPU kernel).
#include <cstdint>
#include <stdexcept>
#include <string>

#include "connectivity_cuda.h"
#include "cuda/launch.h"

namespace mmkern {
namespace {

constexpr int kLerpThreads = 256;

// Grid-stride over the p elements (x) and rows of alphas (y): out[j * p + i].
template <typename T>
__global__ void lerp_many_kernel(const T* __restrict__ a, const T* __restrict__ b, int64_t p,
                                 const double* __restrict__ alphas, int64_t k, T* __restrict__ out) {
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t j = blockIdx.y; j < k; j += gridDim.y) {
    const double alpha = alphas[j];
    T* row = out + j * p;
    for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < p; i += stride)
      row[i] = static_cast<T>(lerp_value(static_cast<double>(a[i]), static_cast<double>(b[i]), alpha));
  }
}

}  // namespace

template <typename T>
void lerp_many_cuda(const T* a, const T* b, int64_t p, const double* alphas, int64_t k, T* out,
                    cudaStream_t stream) {
  if (p < 0 || k < 0) throw std::invalid_argument("lerp_many_cuda: p and k must be non-negative");
  if (p == 0 || k == 0) return;
  int64_t bx = (p + kLerpThreads - 1) / kLerpThreads;
  if (bx > 4096) bx = 4096;  // grid-stride beyond: enough blocks for any current GPU
  int64_t by = k < 65535 ? k : 65535;  // gridDim.y limit
  const dim3 grid(static_cast<unsigned>(bx), static_cast<unsigned>(by));
  lerp_many_kernel<T><<<grid, kLerpThreads, 0, stream>>>(a, b, p, alphas, k, out);
  check_launch("lerp_many_cuda");
}

template void lerp_many_cuda<float>(const float*, const float*, int64_t, const double*, int64_t, float*,
                                    cudaStream_t);
template void lerp_many_cuda<double>(const double*, const double*, int64_t, const double*, int64_t,
                                     double*, cudaStream_t);

}  // namespace mmkern
