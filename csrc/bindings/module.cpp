// mmkern._C: the CPU kernels. This file loads BLAS/LAPACK from SciPy and reports the build.
#include <pybind11/pybind11.h>

#include <algorithm>
#include <cstdlib>
#include <string>
#include <vector>

#if defined(__linux__)
#include <dlfcn.h>
#include <link.h>
#endif

#include "common/lapack.h"
#include "common/multiplicity_math.h"
#include "common/similarity_math.h"
#include "common/view.h"

#ifdef MMKERN_WITH_OPENMP
#include <omp.h>
#endif

namespace py = pybind11;

void bind_similarity(py::module_& m);     // bindings/similarity.cpp
void bind_multiplicity(py::module_& m);  // bindings/multiplicity.cpp
void bind_connectivity(py::module_& m);  // bindings/connectivity.cpp

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

// Finds OpenBLAS's thread-count getter and setter in an already loaded OpenBLAS, preferring
// SciPy's own copy (the one behind the capsules; its symbols carry a "scipy_" prefix). Returns
// false where there is none (e.g. another BLAS): small problems then run sequentially.
bool load_thread_hooks() {
#if defined(__linux__)
  std::vector<std::string> paths;
  dl_iterate_phdr(
      [](dl_phdr_info* info, size_t, void* data) {
        std::string name = info->dlpi_name ? info->dlpi_name : "";
        if (name.find("openblas") != std::string::npos)
          static_cast<std::vector<std::string>*>(data)->push_back(name);
        return 0;
      },
      &paths);
  std::stable_partition(paths.begin(), paths.end(),
                        [](const std::string& p) { return p.find("scipy") != std::string::npos; });
  for (const auto& path : paths) {
    void* handle = dlopen(path.c_str(), RTLD_LAZY | RTLD_NOLOAD);
    if (!handle) continue;
    for (const char* prefix : {"scipy_", ""}) {
      void* get = dlsym(handle, (std::string(prefix) + "openblas_get_num_threads").c_str());
      void* set = dlsym(handle, (std::string(prefix) + "openblas_set_num_threads").c_str());
      if (get && set) {
        mmkern::lapack::set_routine("openblas_get_num_threads", get);
        mmkern::lapack::set_routine("openblas_set_num_threads", set);
        dlclose(handle);  // RTLD_NOLOAD took a reference; the library stays loaded by SciPy
        return true;
      }
    }
    dlclose(handle);
  }
#endif
  return false;
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "mmkern CPU kernels (C++17, OpenMP, BLAS/LAPACK through SciPy)";
  load_routine("scipy.linalg.cython_blas", "dsyrk");
  load_routine("scipy.linalg.cython_blas", "dgemm");
  load_routine("scipy.linalg.cython_lapack", "dsyevd");
  load_routine("scipy.linalg.cython_lapack", "dgesdd");
  load_routine("scipy.linalg.cython_lapack", "dgesvd");
  load_routine("scipy.linalg.cython_lapack", "dpotrf");
  load_routine("scipy.linalg.cython_blas", "dtrsm");
  // MMKERN_PIN_BLAS_THREADS=0 keeps BLAS multi-threaded and runs small problems sequentially.
  const char* pin = std::getenv("MMKERN_PIN_BLAS_THREADS");
  if (!(pin && std::string(pin) == "0")) load_thread_hooks();
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
    info["blas_thread_pinning"] = mmkern::lapack::can_pin_threads();
    return info;
  });
  // The codes and constants of the kernels' contract, bound once so that every Python route
  // (host and device) reads them from here instead of keeping copies.
  m.attr("KEEP_SLACK") = mmkern::kKeepSlack;
  py::dict keep_modes;
  keep_modes["variance"] = static_cast<int>(mmkern::KeepMode::VarianceFraction);
  keep_modes["singular_values"] = static_cast<int>(mmkern::KeepMode::SingularValueFraction);
  keep_modes["count"] = static_cast<int>(mmkern::KeepMode::Count);
  m.attr("KEEP_MODES") = keep_modes;
  py::dict soft_metrics;
  soft_metrics["tv"] = static_cast<int>(mmkern::SoftMetric::TotalVariation);
  soft_metrics["js"] = static_cast<int>(mmkern::SoftMetric::JensenShannon);
  soft_metrics["hellinger"] = static_cast<int>(mmkern::SoftMetric::Hellinger);
  soft_metrics["kl"] = static_cast<int>(mmkern::SoftMetric::KullbackLeibler);
  m.attr("SOFT_METRICS") = soft_metrics;
  py::dict dtypes;
  dtypes["float32"] = static_cast<int>(mmkern::DType::Float32);
  dtypes["float64"] = static_cast<int>(mmkern::DType::Float64);
  m.attr("DTYPE_CODES") = dtypes;

  bind_similarity(m);
  bind_multiplicity(m);
  bind_connectivity(m);
}
