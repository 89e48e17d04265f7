// CPU hard disagreement matrix: byte-code comparisons tiled over model pairs and samples.
#include <algorithm>
#include <cstdint>
#include <vector>

#include "common/macros.h"
#include "multiplicity.h"

namespace mmkern {
namespace {

constexpr int kLanes = 32;        // one AVX2 register of uint8 codes
constexpr int kTile = 4;          // models per tile side: 4 x 4 pairs share their loads
constexpr int64_t kChunk = 4096;  // samples per chunk: 2 * kTile rows stay in L1/L2

// Number of k < len with a[k] != b[k]. Byte counters per lane absorb up to 255 vector steps
// before they are summed, so the loop vectorises to compare + subtract on full registers.
template <typename Code>
MMKERN_TARGET_CLONES uint32_t count_differences(const Code* a, const Code* b, int64_t len) {
  uint32_t total = 0;
  int64_t k = 0;
  while (k + kLanes <= len) {
    const int64_t steps = std::min<int64_t>(255, (len - k) / kLanes);
    uint8_t acc[kLanes] = {};
    for (int64_t s = 0; s < steps; ++s, k += kLanes)
      for (int l = 0; l < kLanes; ++l) acc[l] += static_cast<uint8_t>(a[k + l] != b[k + l]);
    for (int l = 0; l < kLanes; ++l) total += acc[l];
  }
  for (; k < len; ++k) total += a[k] != b[k];
  return total;
}

}  // namespace

template <typename Code>
void disagreement_counts(const Code* codes, int M, int64_t n, int64_t* counts) {
  const int blocks = (M + kTile - 1) / kTile;
  std::vector<std::pair<int, int>> tiles;  // upper triangle of tile pairs, diagonal tiles included
  for (int bi = 0; bi < blocks; ++bi)
    for (int bj = bi; bj < blocks; ++bj) tiles.emplace_back(bi, bj);
  std::fill(counts, counts + static_cast<int64_t>(M) * M, 0);

#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t t = 0; t < static_cast<int64_t>(tiles.size()); ++t) {
    const int i0 = tiles[t].first * kTile, j0 = tiles[t].second * kTile;
    const int i1 = std::min(M, i0 + kTile), j1 = std::min(M, j0 + kTile);
    int64_t local[kTile][kTile] = {};
    for (int64_t k0 = 0; k0 < n; k0 += kChunk) {
      const int64_t len = std::min(kChunk, n - k0);
      for (int i = i0; i < i1; ++i)
        for (int j = std::max(j0, i + 1); j < j1; ++j)
          local[i - i0][j - j0] += count_differences(codes + i * n + k0, codes + j * n + k0, len);
    }
    for (int i = i0; i < i1; ++i)
      for (int j = std::max(j0, i + 1); j < j1; ++j)
        counts[static_cast<int64_t>(i) * M + j] = counts[static_cast<int64_t>(j) * M + i] = local[i - i0][j - j0];
  }
}

template void disagreement_counts<uint8_t>(const uint8_t*, int, int64_t, int64_t*);
template void disagreement_counts<uint16_t>(const uint16_t*, int, int64_t, int64_t*);
template void disagreement_counts<uint32_t>(const uint32_t*, int, int64_t, int64_t*);

}  // namespace mmkern
