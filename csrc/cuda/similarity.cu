// CUDA per-pair similarity summaries (the scalar tail of similarity.h's GramFactors::pairs): one
// thread per pair, running exactly the shared functors of common/similarity_math.h.
#include <cmath>
#include <stdexcept>
#include <string>

#include "common/similarity_math.h"
#include "cuda/kernels.h"

namespace mmkern {
namespace {

constexpr int kThreads = 128;

__global__ void pair_summaries_kernel(PairSummaryArgs a) {
  const int64_t p = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (p >= a.npairs) return;
  int64_t k = a.count[p];
  k = k < 0 ? 0 : (k > a.kmax ? a.kmax : k);
  const double* rho = a.rho + p * a.kmax;
  if (a.mean || a.r2) {
    double mean = 0.0, r2 = 0.0;
    correlation_summary(rho, static_cast<int>(k), &mean, &r2);
    if (a.mean) a.mean[p] = mean;
    if (a.r2) a.r2[p] = r2;
  }
  if (a.weighted) a.weighted[p] = weighted_correlation(rho, a.weights + p * a.kmax, static_cast<int>(k));
}

__global__ void cka_from_norms_kernel(CkaArgs a) {
  const int64_t p = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
  if (p >= a.npairs) return;
  const int64_t i = a.first[p], j = a.second[p];
  if (i < 0 || i >= a.models || j < 0 || j >= a.models) {  // never read out of bounds
    if (a.cka) a.cka[p] = NAN;
    if (a.cka_debiased) a.cka_debiased[p] = NAN;
    return;
  }
  const double cross = a.cross_fro2[p], sxx = a.self_fro2[i], syy = a.self_fro2[j];
  if (a.cka) a.cka[p] = cka_ratio(cross, sxx, syy);
  if (a.cka_debiased) {
    const double* np = a.norm_products;
    const int64_t m = a.models;
    const double ti = a.trace[i], tj = a.trace[j];
    const double hxy = debiased_hsic(cross, np[i * m + j], ti, tj, a.n);
    const double hxx = debiased_hsic(sxx, np[i * m + i], ti, ti, a.n);
    const double hyy = debiased_hsic(syy, np[j * m + j], tj, tj, a.n);
    a.cka_debiased[p] = cka_ratio(hxy, hxx, hyy);
  }
}

void check_launch(const char* what) {
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess)
    throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(err));
}

unsigned blocks_for(int64_t npairs) {
  return static_cast<unsigned>((npairs + kThreads - 1) / kThreads);
}

}  // namespace

void pair_summaries_cuda(const PairSummaryArgs& args, cudaStream_t stream) {
  if (args.npairs < 0 || args.kmax < 0)
    throw std::invalid_argument("pair_summaries_cuda: negative npairs or kmax");
  if (args.weighted && !args.weights)
    throw std::invalid_argument("pair_summaries_cuda: the weighted summary needs weights");
  if (args.npairs == 0 || (!args.mean && !args.r2 && !args.weighted)) return;
  if (!args.count || (args.kmax > 0 && !args.rho))
    throw std::invalid_argument("pair_summaries_cuda: null rho or count");
  pair_summaries_kernel<<<blocks_for(args.npairs), kThreads, 0, stream>>>(args);
  check_launch("pair_summaries_cuda");
}

void cka_from_norms_cuda(const CkaArgs& args, cudaStream_t stream) {
  if (args.npairs < 0 || args.models < 0)
    throw std::invalid_argument("cka_from_norms_cuda: negative npairs or models");
  if (args.cka_debiased && (!args.trace || !args.norm_products))
    throw std::invalid_argument("cka_from_norms_cuda: debiased CKA needs trace and norm_products");
  if (args.cka_debiased && !(args.n >= 4.0))
    throw std::invalid_argument("cka_from_norms_cuda: debiased CKA needs n >= 4 samples");
  if (args.npairs == 0 || (!args.cka && !args.cka_debiased)) return;
  if (!args.first || !args.second || !args.cross_fro2 || !args.self_fro2)
    throw std::invalid_argument("cka_from_norms_cuda: null pair or norm pointer");
  cka_from_norms_kernel<<<blocks_for(args.npairs), kThreads, 0, stream>>>(args);
  check_launch("cka_from_norms_cuda");
}

}  // namespace mmkern
