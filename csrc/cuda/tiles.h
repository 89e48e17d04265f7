// Tiling of the pair kernels (disagreement.cu, soft_disagreement.cu): tiles of model pairs on
// blockIdx.x, splits of the samples on blockIdx.y.
#pragma once

#include <cstdint>

#include "cuda/launch.h"

namespace mmkern {

// Blocks a pair kernel aims for in total (tiles of pairs x splits of the samples): enough to fill
// any current GPU several times over, few enough that the per-block atomics stay negligible.
constexpr int64_t kTargetBlocks = 1024;

// Splits of `chunks` chunks of samples over blockIdx.y so that `tile_blocks` x splits is about
// kTargetBlocks, each split holding at least `min_chunks` chunks. Returns chunks per split.
inline int64_t chunks_per_split(int64_t chunks, int64_t tile_blocks, int64_t min_chunks) {
  int64_t splits = ceil_div(kTargetBlocks, tile_blocks);
  const int64_t by_work = ceil_div(chunks, min_chunks);
  if (splits > by_work) splits = by_work;
  if (splits > 65535) splits = 65535;  // gridDim.y limit
  if (splits < 1) splits = 1;
  return ceil_div(chunks, splits);
}

// The (bi, bj) tile of block `t` in the row-major upper triangle (bi <= bj) of tiles x tiles.
__device__ inline void upper_tile(int64_t t, int tiles, int* bi, int* bj) {
  int i = 0;
  while (t >= tiles - i) {
    t -= tiles - i;
    ++i;
  }
  *bi = i;
  *bj = i + static_cast<int>(t);
}

}  // namespace mmkern
