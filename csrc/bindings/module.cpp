// mmkern._C: the CPU kernels. This file loads BLAS/LAPACK from SciPy and reports the build.
#include <pybind11/pybind11.h>

#include <string>

#include "common/lapack.h"

#ifdef MMKERN_WITH_OPENMP
#include <omp.h>
#endif

namespace py = pybind11;

void bind_similarity(py::module_& m);  // bindings/similarity.cpp

namespace {

// Fetches the raw function pointer SciPy publishes for `name` in `module.__pyx_capi__`.
void load_routine(const char* module, const char* name) {
  py::dict capi = py::module_::import(module).attr("__pyx_capi__");
  py::object capsule = capi[name];
  PyObject* cap = capsule.ptr();
  void* fn = PyCapsule_GetPointer(cap, PyCapsule_GetName(cap));
  if (fn == nullptr) throw py::error_already_set();
  mmkern::lapack::set_routine(name, fn);
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "mmkern CPU kernels (C++17, OpenMP, BLAS/LAPACK through SciPy)";
  load_routine("scipy.linalg.cython_blas", "dsyrk");
  load_routine("scipy.linalg.cython_blas", "dgemm");
  load_routine("scipy.linalg.cython_lapack", "dsyevd");
  load_routine("scipy.linalg.cython_lapack", "dgesdd");
  mmkern::lapack::require_all();

  m.def("build_info", []() {
    py::dict info;
    info["version"] = MMKERN_VERSION;
#ifdef MMKERN_WITH_OPENMP
    info["openmp"] = true;
    info["openmp_threads"] = omp_get_max_threads();
#else
    info["openmp"] = false;
    info["openmp_threads"] = 1;
#endif
    info["blas"] = "scipy.linalg.cython_blas / cython_lapack capsules";
    info["compiler"] = std::string(__VERSION__);
    return info;
  });
  bind_similarity(m);
}
