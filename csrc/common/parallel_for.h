// A parallel loop over independent small problems that each call BLAS/LAPACK.
#pragma once

#include <cstdint>
#include <exception>
#include <mutex>

#include "common/lapack.h"
#include "common/parallel.h"

namespace mmkern {

// Runs body(p) for p in [0, count): across OpenMP threads with BLAS set to one thread when
// possible, otherwise sequentially with multi-threaded BLAS (never both: no oversubscription). The
// first exception thrown by any body is rethrown on the calling thread after the loop.
template <typename F>
void parallel_problems(int64_t count, F&& body) {
  std::exception_ptr error;
  std::mutex lock;
  auto guarded = [&](int64_t p) {
    try {
      body(p);
    } catch (...) {
      std::lock_guard<std::mutex> g(lock);
      if (!error) error = std::current_exception();
    }
  };
  if (lapack::can_pin_threads() && count > 1 && max_threads() > 1) {
    lapack::SingleThreadedBlas pin;
#pragma omp parallel for schedule(dynamic, 1)
    for (int64_t p = 0; p < count; ++p) guarded(p);
  } else {
    for (int64_t p = 0; p < count; ++p) guarded(p);
  }
  if (error) std::rethrow_exception(error);
}

}  // namespace mmkern
