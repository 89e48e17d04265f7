// Whether the kernels of this module can run on the current device (cuda/launch.h).
#include <string>

#include "cuda/launch.h"

namespace mmkern {
namespace {

__global__ void probe_kernel(int* flag) { *flag = 1; }

}  // namespace

std::string probe_device() {
  int* flag = nullptr;
  cudaError_t err = cudaMalloc(&flag, sizeof(int));
  if (err == cudaSuccess) {
    probe_kernel<<<1, 1>>>(flag);
    err = cudaGetLastError();  // e.g. no kernel image for this device's architecture
    if (err == cudaSuccess) err = cudaDeviceSynchronize();
    cudaFree(flag);
  }
  if (err == cudaSuccess) return "";
  std::string what = cudaGetErrorString(err);
  cudaGetLastError();  // clear the (non-sticky) error state for the caller's library
  return what;
}

}  // namespace mmkern
