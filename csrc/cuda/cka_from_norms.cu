// CUDA twin of cka_from_norms (similarity.h): one thread per pair running cka_at of
// common/similarity_math.h, the CPU twin's per-pair body.
#include "cuda/launch.h"
#include "similarity_cuda.h"

namespace mmkern {
namespace {

constexpr int kThreads = 128;

__global__ void cka_from_norms_kernel(CkaArgs a) {
  const int64_t p = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (p < a.npairs) cka_at(a, p);
}

}  // namespace

void cka_from_norms_cuda(const CkaArgs& args, cudaStream_t stream) {
  if (!check_cka_args(args, "cka_from_norms_cuda")) return;
  cka_from_norms_kernel<<<static_cast<unsigned>(ceil_div(args.npairs, kThreads)), kThreads, 0, stream>>>(args);
  check_launch("cka_from_norms_cuda");
}

}  // namespace mmkern
