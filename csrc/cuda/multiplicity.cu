// CUDA twins of the predictive-multiplicity kernels (multiplicity.h): the hard and soft
// disagreement matrices and the per-sample Rashomon capacity. Same layouts as the CPU kernels
// (C-contiguous, model-major) and the same scalar math: soft_term and blahut_arimoto of
// common/multiplicity_math.h run unchanged on the device.
#include <cstdint>
#include <stdexcept>
#include <string>

#include "common/multiplicity_math.h"
#include "cuda/kernels.h"

namespace mmkern {
namespace {

void check_launch(const char* what) {
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess)
    throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(err));
}

void check_call(cudaError_t err, const char* what) {
  if (err != cudaSuccess)
    throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(err));
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Blocks a pair kernel aims for in total (tiles of pairs x splits of the samples): enough to fill
// any current GPU several times over, few enough that the per-block atomics stay negligible.
constexpr int64_t kTargetBlocks = 1024;

// Splits of `chunks` chunks of samples over blockIdx.y so that `tile_blocks` x splits is about
// kTargetBlocks, each split holding at least `min_chunks` chunks. Returns chunks per split.
int64_t chunks_per_split(int64_t chunks, int64_t tile_blocks, int64_t min_chunks) {
  int64_t splits = ceil_div(kTargetBlocks, tile_blocks);
  const int64_t by_work = ceil_div(chunks, min_chunks);
  if (splits > by_work) splits = by_work;
  if (splits > 65535) splits = 65535;  // gridDim.y limit
  if (splits < 1) splits = 1;
  return ceil_div(chunks, splits);
}

// The (bi, bj) tile of block `t` in the row-major upper triangle (bi <= bj) of tiles x tiles.
__device__ void upper_tile(int64_t t, int tiles, int* bi, int* bj) {
  int i = 0;
  while (t >= tiles - i) {
    t -= tiles - i;
    ++i;
  }
  *bi = i;
  *bj = i + static_cast<int>(t);
}

// ---------------------------------------------------------------------------------------------
// hard disagreement: 32-bit words of packed codes, compared 4 bytes / 2 halfwords at a time
// ---------------------------------------------------------------------------------------------

constexpr int kHardTile = 32;        // models per tile side: 32 x 32 pairs per block
constexpr int kHardThreads = 16;     // 16 x 16 threads, each owning 2 x 2 pairs of the tile
constexpr int kHardWords = 32;       // words of codes per row per staged chunk
constexpr int64_t kHardMinChunks = 16;

// Number of differing codes in two packed words (4 uint8, 2 uint16 or 1 uint32 code each):
// __vsetne4 / __vsetne2 set 1 in each byte / halfword that differs, so the set bits count the
// differences.
template <typename Code>
__device__ __forceinline__ unsigned differing(unsigned a, unsigned b);
template <>
__device__ __forceinline__ unsigned differing<uint8_t>(unsigned a, unsigned b) {
  return __popc(__vsetne4(a, b));
}
template <>
__device__ __forceinline__ unsigned differing<uint16_t>(unsigned a, unsigned b) {
  return __popc(__vsetne2(a, b));
}
template <>
__device__ __forceinline__ unsigned differing<uint32_t>(unsigned a, unsigned b) {
  return a != b;
}

// Block (tile pair blockIdx.x, sample split blockIdx.y): stages chunks of both tiles' code rows
// in shared memory as packed words (zero-padded past n and past M, where both sides then agree)
// and counts the differing codes of its pairs i < j; the split's counts are added atomically
// to both triangles of `counts` (zeroed by the caller).
template <typename Code>
__global__ void __launch_bounds__(kHardThreads * kHardThreads)
disagreement_kernel(const Code* __restrict__ codes, int M, int64_t n, int tiles,
                    int64_t samples_per_split, unsigned long long* __restrict__ counts) {
  constexpr int kPer = 4 / static_cast<int>(sizeof(Code));  // codes per word
  constexpr int kChunk = kHardWords * kPer;                   // samples per chunk
  // +1 word per row: threads reading 16 different rows at one word hit 16 different banks.
  __shared__ unsigned rows[2][kHardTile][kHardWords + 1];

  int bi = 0, bj = 0;
  upper_tile(blockIdx.x, tiles, &bi, &bj);
  const int tx = threadIdx.x, ty = threadIdx.y;
  const int tid = ty * kHardThreads + tx;
  const int64_t x_begin = static_cast<int64_t>(blockIdx.y) * samples_per_split;
  const int64_t x_end = x_begin + samples_per_split < n ? x_begin + samples_per_split : n;

  unsigned long long total[2][2] = {};
  for (int64_t x0 = x_begin; x0 < x_end; x0 += kChunk) {
    // Stage: one word (kPer consecutive codes of one row) per thread and step.
    for (int idx = tid; idx < 2 * kHardTile * kHardWords; idx += kHardThreads * kHardThreads) {
      const int side = idx / (kHardTile * kHardWords);
      const int r = (idx / kHardWords) % kHardTile;
      const int k = idx % kHardWords;
      const int model = (side == 0 ? bi : bj) * kHardTile + r;
      unsigned word = 0;
      if (model < M) {
        const Code* row = codes + static_cast<int64_t>(model) * n;
        for (int e = 0; e < kPer; ++e) {
          const int64_t x = x0 + static_cast<int64_t>(k) * kPer + e;
          if (x < x_end) word |= static_cast<unsigned>(row[x]) << (8 * sizeof(Code) * e);
        }
      }
      rows[side][r][k] = word;
    }
    __syncthreads();
    unsigned acc[2][2] = {};
#pragma unroll 8
    for (int k = 0; k < kHardWords; ++k) {
      const unsigned a0 = rows[0][ty][k], a1 = rows[0][ty + kHardThreads][k];
      const unsigned b0 = rows[1][tx][k], b1 = rows[1][tx + kHardThreads][k];
      acc[0][0] += differing<Code>(a0, b0);
      acc[0][1] += differing<Code>(a0, b1);
      acc[1][0] += differing<Code>(a1, b0);
      acc[1][1] += differing<Code>(a1, b1);
    }
    for (int a = 0; a < 2; ++a)
      for (int b = 0; b < 2; ++b) total[a][b] += acc[a][b];
    __syncthreads();
  }
  for (int a = 0; a < 2; ++a)
    for (int b = 0; b < 2; ++b) {
      const int64_t i = static_cast<int64_t>(bi) * kHardTile + ty + a * kHardThreads;
      const int64_t j = static_cast<int64_t>(bj) * kHardTile + tx + b * kHardThreads;
      if (i < j && j < M && total[a][b] > 0) {
        atomicAdd(counts + i * M + j, total[a][b]);
        atomicAdd(counts + j * M + i, total[a][b]);
      }
    }
}

// ---------------------------------------------------------------------------------------------
// soft disagreement: one thread per pair of a 16 x 16 tile, samples staged in shared memory
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// Rashomon capacity: one thread per sample running blahut_arimoto on its own scratch
// ---------------------------------------------------------------------------------------------

constexpr int kRashomonThreads = 128;

// Samples [x_begin, x_begin + count): thread k copies sample x's M x C channel (float64) into
// workspace + k * rashomon_workspace_per_sample(M, C), followed by its rows' negative entropies
// (M) and the w (M), logq (C) and d (M) scratch of blahut_arimoto, and stores
// min(C, exp(capacity)) and the final bound gap, as the CPU kernel does.
template <typename T>
__global__ void __launch_bounds__(kRashomonThreads)
rashomon_kernel(const T* __restrict__ probs, int M, int64_t n, int C, int64_t x_begin, int64_t count,
                double tol, int max_iter, double* __restrict__ out, double* __restrict__ gap,
                double* __restrict__ workspace) {
  const int64_t k = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (k >= count) return;
  const int64_t x = x_begin + k;
  double* P = workspace + k * rashomon_workspace_per_sample(M, C);
  double* neg_entropy = P + static_cast<int64_t>(M) * C;
  double* w = neg_entropy + M;
  double* logq = w + M;
  double* d = logq + C;
  for (int m = 0; m < M; ++m)
    for (int c = 0; c < C; ++c) P[m * C + c] = static_cast<double>(probs[(m * n + x) * C + c]);
  row_neg_entropy(P, M, C, neg_entropy);
  double g = 0.0;
  const double capacity = blahut_arimoto(P, neg_entropy, M, C, tol, max_iter, w, logq, d, &g);
  const double v = exp(capacity), top = static_cast<double>(C);
  out[x] = v < top ? v : top;  // std::min(C, v), as on the CPU
  if (gap) gap[x] = g;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// host wrappers
// ---------------------------------------------------------------------------------------------

template <typename Code>
void disagreement_counts_cuda(const Code* codes, int M, int64_t n, int64_t* counts, cudaStream_t stream) {
  if (M < 0 || n < 0) throw std::invalid_argument("disagreement_counts_cuda: negative M or n");
  if (M == 0) return;
  if (counts == nullptr) throw std::invalid_argument("disagreement_counts_cuda: null counts pointer");
  if (M > 1 && n > 0 && codes == nullptr)
    throw std::invalid_argument("disagreement_counts_cuda: null codes pointer");
  const int64_t entries = static_cast<int64_t>(M) * M;
  check_call(cudaMemsetAsync(counts, 0, entries * sizeof(int64_t), stream), "disagreement_counts_cuda");
  if (M < 2 || n == 0) return;

  constexpr int64_t kChunk = kHardWords * (4 / sizeof(Code));
  const int tiles = static_cast<int>(ceil_div(M, kHardTile));
  const int64_t tile_pairs = static_cast<int64_t>(tiles) * (tiles + 1) / 2;
  const int64_t chunks = ceil_div(n, kChunk);
  const int64_t per_split = chunks_per_split(chunks, tile_pairs, kHardMinChunks);
  const dim3 grid(static_cast<unsigned>(tile_pairs), static_cast<unsigned>(ceil_div(chunks, per_split)));
  const dim3 block(kHardThreads, kHardThreads);
  // int64 counts are non-negative: their bits are those of the unsigned long long atomics.
  disagreement_kernel<Code><<<grid, block, 0, stream>>>(
      codes, M, n, tiles, per_split * kChunk, reinterpret_cast<unsigned long long*>(counts));
  check_launch("disagreement_counts_cuda");
}

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

template void disagreement_counts_cuda<uint8_t>(const uint8_t*, int, int64_t, int64_t*, cudaStream_t);
template void disagreement_counts_cuda<uint16_t>(const uint16_t*, int, int64_t, int64_t*, cudaStream_t);
template void disagreement_counts_cuda<uint32_t>(const uint32_t*, int, int64_t, int64_t*, cudaStream_t);
template void soft_disagreement_cuda<float>(const float*, int, int64_t, int, SoftMetric, double*, cudaStream_t);
template void soft_disagreement_cuda<double>(const double*, int, int64_t, int, SoftMetric, double*, cudaStream_t);
template void rashomon_capacity_cuda<float>(const float*, int, int64_t, int, double, int, double*, double*,
                                            double*, int64_t, cudaStream_t);
template void rashomon_capacity_cuda<double>(const double*, int, int64_t, int, double, int, double*, double*,
                                             double*, int64_t, cudaStream_t);

}  // namespace mmkern
