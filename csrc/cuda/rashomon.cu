// CUDA twin of rashomon_capacity (multiplicity.h): one thread per sample running row_neg_entropy
// and blahut_arimoto of common/multiplicity_math.h, the CPU kernel's code.
#include <cstdint>
#include <stdexcept>
#include <string>

#include "cuda/launch.h"
#include "multiplicity_cuda.h"

namespace mmkern {
namespace {

constexpr int kRashomonThreads = 128;

// Samples [x_begin, x_begin + count): thread k copies sample x's M x C channel (float64) into
// its interleaved scratch (element e at workspace[e * count + k]; elements in the order P (M x C),
// the rows' negative entropies (M), then blahut_arimoto's w (M), logq (C) and d (M)) and stores
// the capacity in nats and the final bound gap, as the CPU kernel does.
template <typename T>
__global__ void __launch_bounds__(kRashomonThreads)
rashomon_kernel(const T* __restrict__ probs, int M, int64_t n, int C, int64_t x_begin, int64_t count,
                double tol, int max_iter, double* __restrict__ out, double* __restrict__ gap,
                double* __restrict__ workspace) {
  const int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (k >= count) return;
  const int64_t x = x_begin + k;
  const int64_t mc = static_cast<int64_t>(M) * C;
  double* P = workspace + k;
  double* neg_entropy = P + mc * count;
  double* w = neg_entropy + M * count;
  double* logq = w + M * count;
  double* d = logq + C * count;
  for (int m = 0; m < M; ++m)
    for (int c = 0; c < C; ++c)
      P[(static_cast<int64_t>(m) * C + c) * count] = static_cast<double>(probs[(m * n + x) * C + c]);
  row_neg_entropy(P, M, C, neg_entropy, count);
  double g = 0.0;
  out[x] = blahut_arimoto(P, neg_entropy, M, C, tol, max_iter, w, logq, d, &g, count);
  if (gap) gap[x] = g;
}

}  // namespace

template <typename T>
void rashomon_capacity_cuda(const T* probs, int M, int64_t n, int C, double tol, int max_iter,
                            double* out, double* gap, double* workspace, int64_t workspace_size,
                            cudaStream_t stream) {
  if (M < 1 || n < 0 || C < 1)
    throw std::invalid_argument("rashomon_capacity_cuda: M and C must be >= 1 and n >= 0");
  if (!(tol > 0.0) || max_iter < 1)
    throw std::invalid_argument("rashomon_capacity_cuda: tol must be > 0 and max_iter >= 1");
  if (n == 0) return;
  if (probs == nullptr || out == nullptr || workspace == nullptr)
    throw std::invalid_argument("rashomon_capacity_cuda: null probs, out or workspace pointer");
  const int64_t per_sample = rashomon_workspace_per_sample(M, C);
  const int64_t per_launch = workspace_size / per_sample;
  if (per_launch < 1)
    throw std::invalid_argument("rashomon_capacity_cuda: workspace_size must be at least " +
                                std::to_string(per_sample) + " doubles (MC + 3M + C)");
  // Successive launches on one stream reuse the workspace in order.
  for (int64_t x0 = 0; x0 < n; x0 += per_launch) {
    const int64_t count = n - x0 < per_launch ? n - x0 : per_launch;
    rashomon_kernel<T><<<static_cast<unsigned>(ceil_div(count, kRashomonThreads)), kRashomonThreads, 0, stream>>>(
        probs, M, n, C, x0, count, tol, max_iter, out, gap, workspace);
    check_launch("rashomon_capacity_cuda");
  }
}

template void rashomon_capacity_cuda<float>(const float*, int, int64_t, int, double, int, double*, double*,
                                            double*, int64_t, cudaStream_t);
template void rashomon_capacity_cuda<double>(const double*, int, int64_t, int, double, int, double*, double*,
                                             double*, int64_t, cudaStream_t);

}  // namespace mmkern
