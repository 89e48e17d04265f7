// Portability macros shared by the CPU and CUDA builds.
#pragma once

#if defined(__CUDACC__)
#define MMKERN_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define MMKERN_HOST_DEVICE inline
#endif

// Compiles a hot CPU loop twice, for x86-64-v3 (AVX2) and for the baseline ISA, picking one at
// load time (GCC function multi-versioning on x86-64 Linux); elsewhere a plain function.
#if !defined(__CUDACC__) && defined(__x86_64__) && defined(__linux__) && \
    defined(__GNUC__) && !defined(__clang__)
#define MMKERN_TARGET_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define MMKERN_TARGET_CLONES
#endif
