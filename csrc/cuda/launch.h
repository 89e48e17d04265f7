// Launch helpers shared by every CUDA source: error checks and grid arithmetic.
#pragma once

#include <cuda_runtime_api.h>

#include <cstdint>
#include <stdexcept>
#include <string>

namespace mmkern {

// Throws std::runtime_error("<what>: <CUDA error string>") when the last launch (or any earlier
// asynchronous call on this thread) failed.
inline void check_launch(const char* what) {
  const cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(err));
}

// Throws std::runtime_error when a runtime call returned an error.
inline void check_call(cudaError_t err, const char* what) {
  if (err != cudaSuccess) throw std::runtime_error(std::string(what) + ": " + cudaGetErrorString(err));
}

inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Whether this module's kernels can run on the current device: launches a one-thread kernel and
// waits for it. Returns "" on success, otherwise the CUDA error (e.g. "no kernel image is
// available for execution on the device", or a driver older than the runtime). Leaves no error
// state behind.
std::string probe_device();

}  // namespace mmkern
