// CUDA twin of disagreement_counts (multiplicity.h): hard disagreement counts of every pair of
// models, from packed class codes compared 4 bytes / 2 halfwords at a time.
#include <cstdint>
#include <stdexcept>
#include <string>

#include "cuda/launch.h"
#include "cuda/tiles.h"
#include "multiplicity_cuda.h"

namespace mmkern {
namespace {

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

}  // namespace

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

template void disagreement_counts_cuda<uint8_t>(const uint8_t*, int, int64_t, int64_t*, cudaStream_t);
template void disagreement_counts_cuda<uint16_t>(const uint16_t*, int, int64_t, int64_t*, cudaStream_t);
template void disagreement_counts_cuda<uint32_t>(const uint32_t*, int, int64_t, int64_t*, cudaStream_t);

}  // namespace mmkern
