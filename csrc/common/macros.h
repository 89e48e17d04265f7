// Portability macros shared by the CPU and CUDA builds.
#pragma once

#if defined(__CUDACC__)
#define MMKERN_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define MMKERN_HOST_DEVICE inline
#endif
