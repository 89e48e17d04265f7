// CUDA twin of pair_summaries (similarity.h): one thread per pair running pair_summary_at of
// common/similarity_math.h, the CPU twin's per-pair body.
#include "cuda/launch.h"
#include "similarity_cuda.h"

namespace mmkern {
namespace {

constexpr int kThreads = 128;

__global__ void pair_summaries_kernel(PairSummaryArgs a) {
  const int64_t p = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (p < a.npairs) pair_summary_at(a, p);
}

}  // namespace

void pair_summaries_cuda(const PairSummaryArgs& args, cudaStream_t stream) {
  if (!check_pair_summary_args(args, "pair_summaries_cuda")) return;
  pair_summaries_kernel<<<static_cast<unsigned>(ceil_div(args.npairs, kThreads)), kThreads, 0, stream>>>(args);
  check_launch("pair_summaries_cuda");
}

}  // namespace mmkern
