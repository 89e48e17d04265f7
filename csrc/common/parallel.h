// OpenMP helpers that also compile without OpenMP (MMKERN_OPENMP=OFF).
#pragma once

#ifdef MMKERN_WITH_OPENMP
#include <omp.h>
#endif

namespace mmkern {

inline int max_threads() {
#ifdef MMKERN_WITH_OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

inline int thread_id() {
#ifdef MMKERN_WITH_OPENMP
  return omp_get_thread_num();
#else
  return 0;
#endif
}

}  // namespace mmkern
