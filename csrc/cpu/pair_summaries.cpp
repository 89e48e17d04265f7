// CPU twin of pair_summaries_cuda (similarity_cuda.h): the same checks and the same per-pair
// body (pair_summary_at, common/similarity_math.h) as the CUDA kernel, pairs in parallel.
#include <cstdint>

#include "similarity.h"

namespace mmkern {

void pair_summaries(const PairSummaryArgs& args) {
  if (!check_pair_summary_args(args, "pair_summaries")) return;
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < args.npairs; ++p) pair_summary_at(args, p);
}

}  // namespace mmkern
