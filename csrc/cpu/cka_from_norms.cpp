// CPU twin of cka_from_norms_cuda (similarity_cuda.h): the same checks and the same per-pair
// body (cka_at, common/similarity_math.h) as the CUDA kernel, pairs in parallel.
#include <cstdint>

#include "similarity.h"

namespace mmkern {

void cka_from_norms(const CkaArgs& args) {
  if (!check_cka_args(args, "cka_from_norms")) return;
#pragma omp parallel for schedule(static)
  for (int64_t p = 0; p < args.npairs; ++p) cka_at(args, p);
}

}  // namespace mmkern
