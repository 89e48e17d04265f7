// CUDA twins of the per-pair similarity tails declared in similarity.h (pair_summaries,
// cka_from_norms): the same argument structs, checks and per-pair bodies
// (common/similarity_math.h), on device buffers, one thread per pair, asynchronous on `stream`.
// Invalid arguments throw std::invalid_argument before anything is launched; a failed launch
// throws std::runtime_error with the CUDA error string.
#pragma once

#include <cuda_runtime_api.h>

#include "common/similarity_math.h"

namespace mmkern {

void pair_summaries_cuda(const PairSummaryArgs& args, cudaStream_t stream);
void cka_from_norms_cuda(const CkaArgs& args, cudaStream_t stream);

}  // namespace mmkern
