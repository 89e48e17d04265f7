// CUDA twin of soft_disagreement (multiplicity.h): the mean per-sample soft_term
// (common/multiplicity_math.h) of every pair of models.
#include <cstdint>
#include <stdexcept>
#include <string>

#include "cuda/launch.h"
#include "cuda/tiles.h"
#include "multiplicity_cuda.h"

namespace mmkern {
namespace {

constexpr int kSoftTile = 16;
constexpr int kSoftMaxStaged = 32;            // samples per staged chunk, at most
constexpr int kSoftSharedBytes = 40 * 1024;   // below the 48 KiB default of dynamic shared memory
constexpr int64_t kSoftMinChunks = 4;

// Elements per staged row of `samples` samples of C values, rounded up to an odd count so the
// 16 rows read at one offset by a warp fall into different banks.
__host__ __device__ int64_t soft_row_stride(int samples, int C) {
  const int64_t len = static_cast<int64_t>(samples) * C;
  return len | 1;
}

// Block (tile blockIdx.x, sample split blockIdx.y), thread (tx, ty) owns pair
// (i, j) = (bi * 16 + ty, bj * 16 + tx); symmetric metrics take the upper triangle of tiles and
// pairs i < j, KL every tile and every pair i != j. With `staged` > 0, chunks of `staged`
// samples of both tiles' rows are copied to shared memory first (coalesced, contiguous per
// model); otherwise (very many classes) soft_term reads the rows in place. The split's sum of
// soft_term over its samples is added atomically to out[i * M + j] (zeroed by the caller).
template <typename T>
__global__ void __launch_bounds__(kSoftTile * kSoftTile)
soft_disagreement_kernel(const T* __restrict__ probs, int M, int64_t n, int C, SoftMetric metric,
                         int tiles, int staged, int64_t samples_per_split, double* __restrict__ out) {
  extern __shared__ unsigned char soft_shared[];
  T* stage = reinterpret_cast<T*>(soft_shared);
  const bool symmetric = metric != SoftMetric::KullbackLeibler;
  int bi = 0, bj = 0;
  if (symmetric) {
    upper_tile(blockIdx.x, tiles, &bi, &bj);
  } else {
    bi = static_cast<int>(blockIdx.x / tiles);
    bj = static_cast<int>(blockIdx.x % tiles);
  }
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int tid = ty * kSoftTile + tx;
  const int i = bi * kSoftTile + ty, j = bj * kSoftTile + tx;
  const bool active = i < M && j < M && (symmetric ? i < j : i != j);
  const int64_t x_begin = static_cast<int64_t>(blockIdx.y) * samples_per_split;
  const int64_t x_end = x_begin + samples_per_split < n ? x_begin + samples_per_split : n;

  double acc = 0.0;
  if (staged > 0) {
    const int64_t stride = soft_row_stride(staged, C);
    for (int64_t x0 = x_begin; x0 < x_end; x0 += staged) {
      const int len = static_cast<int>(x_end - x0 < staged ? x_end - x0 : staged);
      const int64_t row_len = static_cast<int64_t>(len) * C;
      for (int64_t idx = tid; idx < 2 * kSoftTile * row_len; idx += kSoftTile * kSoftTile) {
        const int r = static_cast<int>(idx / row_len);  // 0..15 tile bi, 16..31 tile bj
        const int64_t e = idx % row_len;
        const int model = (r < kSoftTile ? bi * kSoftTile + r : bj * kSoftTile + r - kSoftTile);
        stage[r * stride + e] = model < M ? probs[(static_cast<int64_t>(model) * n + x0) * C + e] : T(0);
      }
      __syncthreads();
      if (active) {
        const T* p = stage + ty * stride;
        const T* q = stage + (kSoftTile + tx) * stride;
        for (int s = 0; s < len; ++s) acc += soft_term(metric, p + s * C, q + s * C, C);
      }
      __syncthreads();
    }
  } else if (active) {
    const T* p = probs + static_cast<int64_t>(i) * n * C;
    const T* q = probs + static_cast<int64_t>(j) * n * C;
    for (int64_t x = x_begin; x < x_end; ++x) acc += soft_term(metric, p + x * C, q + x * C, C);
  }
  if (active && acc != 0.0) atomicAdd(out + static_cast<int64_t>(i) * M + j, acc);
}

// out[i][j] = sum / n for the computed pairs (i < j, mirrored, for symmetric metrics; i != j
// for KL); the diagonal stays 0.
__global__ void soft_finalize_kernel(int M, double inv_n, bool symmetric, double* __restrict__ out) {
  const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= static_cast<int64_t>(M) * M) return;
  const int64_t i = idx / M, j = idx % M;
  if (i == j || (symmetric && i > j)) return;
  const double v = out[idx] * inv_n;
  out[idx] = v;
  if (symmetric) out[j * M + i] = v;
}

}  // namespace

template <typename T>
void soft_disagreement_cuda(const T* probs, int M, int64_t n, int C, SoftMetric metric, double* out,
                            cudaStream_t stream) {
  if (M < 0 || n < 0) throw std::invalid_argument("soft_disagreement_cuda: negative M or n");
  if (C < 1) throw std::invalid_argument("soft_disagreement_cuda: C must be >= 1");
  const int code = static_cast<int>(metric);
  if (code < 0 || code > 3) throw std::invalid_argument("soft_disagreement_cuda: metric must be 0..3");
  if (M == 0) return;
  if (out == nullptr) throw std::invalid_argument("soft_disagreement_cuda: null out pointer");
  if (M > 1 && n > 0 && probs == nullptr)
    throw std::invalid_argument("soft_disagreement_cuda: null probs pointer");
  const int64_t entries = static_cast<int64_t>(M) * M;
  check_call(cudaMemsetAsync(out, 0, entries * sizeof(double), stream), "soft_disagreement_cuda");
  if (M < 2 || n == 0) return;

  const bool symmetric = metric != SoftMetric::KullbackLeibler;
  const int tiles = static_cast<int>(ceil_div(M, kSoftTile));
  const int64_t tile_blocks = symmetric ? static_cast<int64_t>(tiles) * (tiles + 1) / 2
                                        : static_cast<int64_t>(tiles) * tiles;
  // Largest chunk of samples whose 2 x 16 rows fit the shared-memory budget (0: read in place).
  int staged = 0;
  for (int s = kSoftMaxStaged; s >= 1; s /= 2)
    if (2 * kSoftTile * soft_row_stride(s, C) * static_cast<int64_t>(sizeof(T)) <= kSoftSharedBytes) {
      staged = s;
      break;
    }
  const int64_t chunk = staged > 0 ? staged : kSoftMaxStaged;
  const int64_t chunks = ceil_div(n, chunk);
  const int64_t per_split = chunks_per_split(chunks, tile_blocks, kSoftMinChunks);
  const dim3 grid(static_cast<unsigned>(tile_blocks), static_cast<unsigned>(ceil_div(chunks, per_split)));
  const dim3 block(kSoftTile, kSoftTile);
  const size_t shared = staged > 0 ? 2 * kSoftTile * soft_row_stride(staged, C) * sizeof(T) : 0;
  soft_disagreement_kernel<T><<<grid, block, shared, stream>>>(probs, M, n, C, metric, tiles, staged,
                                                               per_split * chunk, out);
  check_launch("soft_disagreement_cuda");
  soft_finalize_kernel<<<static_cast<unsigned>(ceil_div(entries, 256)), 256, 0, stream>>>(
      M, 1.0 / static_cast<double>(n), symmetric, out);
  check_launch("soft_disagreement_cuda (finalize)");
}


template void soft_disagreement_cuda<float>(const float*, int, int64_t, int, SoftMetric, double*, cudaStream_t);
template void soft_disagreement_cuda<double>(const double*, int, int64_t, int, SoftMetric, double*, cudaStream_t);

}  // namespace mmkern
