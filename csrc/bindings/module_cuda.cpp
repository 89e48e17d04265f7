// mmkern._C_cuda: bindings of the CUDA twins (csrc/*_cuda.h).
//
// The kernels work on memory owned by the caller's array library (torch or CuPy), so device
// buffers cross this boundary as raw pointers passed as Python ints (``tensor.data_ptr()``,
// ``cupy_array.data.ptr``; 0 means "none"), with shapes and element strides alongside, and the
// CUDA stream as an int (``torch.cuda.current_stream().cuda_stream``; 0 = the legacy default
// stream). Launches are asynchronous on that stream; the GIL is released around them. The
// caller must make the target device current (e.g. ``with torch.cuda.device(t.device)``).
// dtype codes are those of mmkern._C.DTYPE_CODES (0 float32, 1 float64).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cuda_runtime_api.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include "common/dispatch.h"
#include "common/view.h"
#include "connectivity_cuda.h"
#include "cuda/launch.h"
#include "gram_cuda.h"
#include "multiplicity_cuda.h"
#include "similarity_cuda.h"

#ifndef MMKERN_VERSION
#define MMKERN_VERSION "unknown"
#endif
#ifndef MMKERN_CUDA_ARCHITECTURES
#define MMKERN_CUDA_ARCHITECTURES "unknown"
#endif

namespace py = pybind11;

namespace {

// (data_ptr, rows, cols, row_stride, col_stride, dtype): strides in elements.
using ViewTuple = std::tuple<uintptr_t, int64_t, int64_t, int64_t, int64_t, int>;

template <typename T>
T* device_ptr(uintptr_t p) {
  return reinterpret_cast<T*>(p);
}

cudaStream_t as_stream(uintptr_t s) { return reinterpret_cast<cudaStream_t>(s); }

mmkern::DType dtype_code(int code, const std::string& what) {
  if (code != 0 && code != 1) throw std::invalid_argument(what + ": dtype code must be 0 (float32) or 1 (float64)");
  return static_cast<mmkern::DType>(code);
}

std::vector<mmkern::MatrixView> to_views(const std::vector<ViewTuple>& tuples) {
  std::vector<mmkern::MatrixView> views;
  views.reserve(tuples.size());
  for (size_t i = 0; i < tuples.size(); ++i) {
    const auto& [ptr, rows, cols, row_stride, col_stride, dtype] = tuples[i];
    const std::string what = "view " + std::to_string(i);
    const mmkern::DType dt = dtype_code(dtype, what);
    if (rows < 0 || cols < 0) throw std::invalid_argument(what + ": negative shape");
    views.push_back(mmkern::MatrixView{device_ptr<const void>(ptr), rows, cols, row_stride, col_stride, dt});
  }
  return views;
}

// A model / class count as the kernels' int, or an error naming it.
int as_count(int64_t v, const char* name) {
  if (v < 0 || v > INT32_MAX)
    throw std::invalid_argument(std::string(name) + " must be in [0, 2^31), got " + std::to_string(v));
  return static_cast<int>(v);
}

py::dict build_info() {
  py::dict info;
  info["version"] = MMKERN_VERSION;
  info["cuda_version"] = CUDART_VERSION;
  info["architectures"] = MMKERN_CUDA_ARCHITECTURES;
  int runtime = 0;
  info["runtime_version"] = cudaRuntimeGetVersion(&runtime) == cudaSuccess ? runtime : 0;
  int driver = 0;
  info["driver_version"] = cudaDriverGetVersion(&driver) == cudaSuccess ? driver : 0;
  int count = 0;
  const cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    count = 0;
    info["device_error"] = std::string(cudaGetErrorString(err));
    cudaGetLastError();  // reset the (non-sticky) error state so later calls start clean
  }
  info["device_count"] = count;
  return info;
}

}  // namespace

PYBIND11_MODULE(_C_cuda, m) {
  m.doc() = "mmkern CUDA kernels (twins of mmkern._C's; device pointers passed as ints)";

  m.def("build_info", &build_info,
        "Build facts: version, cuda_version (CUDART_VERSION), architectures, runtime/driver "
        "versions and device_count (0 when no driver or device is present; never raises).");

  m.def(
      "probe",
      []() {
        py::gil_scoped_release release;
        return mmkern::probe_device();
      },
      "Launch a one-thread kernel on the current device and wait for it: '' when this module's "
      "kernels can run there, else the CUDA error (no kernel image for the device's architecture, "
      "a driver older than the runtime, ...).");

  m.def(
      "pack_rows",
      [](const std::vector<ViewTuple>& views, int64_t row_begin, int64_t rows, uintptr_t shift, uintptr_t out,
         int64_t ld, uintptr_t stream) {
        auto v = to_views(views);
        py::gil_scoped_release release;
        mmkern::pack_rows_cuda(v.data(), static_cast<int>(v.size()), row_begin, rows, device_ptr<const double>(shift),
                               device_ptr<double>(out), ld, as_stream(stream));
      },
      py::arg("views"), py::arg("row_begin"), py::arg("rows"), py::arg("shift"), py::arg("out"), py::arg("ld"),
      py::arg("stream") = 0,
      "Rows [row_begin, row_begin + rows) of the stacked device views minus shift (D doubles) "
      "into the column-major float64 device buffer out (leading dimension ld). views: list of "
      "(data_ptr, rows, cols, row_stride, col_stride, dtype) with element strides.");

  m.def(
      "pair_summaries",
      [](int64_t npairs, int64_t kmax, uintptr_t rho, uintptr_t count, uintptr_t weights, uintptr_t mean,
         uintptr_t r2, uintptr_t weighted, uintptr_t stream) {
        mmkern::PairSummaryArgs a;
        a.npairs = npairs;
        a.kmax = kmax;
        a.rho = device_ptr<const double>(rho);
        a.count = device_ptr<const int64_t>(count);
        a.weights = device_ptr<const double>(weights);
        a.mean = device_ptr<double>(mean);
        a.r2 = device_ptr<double>(r2);
        a.weighted = device_ptr<double>(weighted);
        py::gil_scoped_release release;
        mmkern::pair_summaries_cuda(a, as_stream(stream));
      },
      py::arg("npairs"), py::arg("kmax"), py::arg("rho"), py::arg("count"), py::arg("weights") = 0,
      py::arg("mean") = 0, py::arg("r2") = 0, py::arg("weighted") = 0, py::arg("stream") = 0,
      "Per-pair mean / mean square / weighted mean of canonical correlations (float64 device "
      "buffers: rho and weights npairs x kmax row-major, count int64 npairs; outputs npairs).");

  m.def(
      "cka_from_norms",
      [](int64_t npairs, int64_t models, double n, uintptr_t first, uintptr_t second, uintptr_t cross_fro2,
         uintptr_t self_fro2, uintptr_t trace, uintptr_t norm_products, uintptr_t cka, uintptr_t cka_debiased,
         uintptr_t stream) {
        mmkern::CkaArgs a;
        a.npairs = npairs;
        a.models = models;
        a.n = n;
        a.first = device_ptr<const int64_t>(first);
        a.second = device_ptr<const int64_t>(second);
        a.cross_fro2 = device_ptr<const double>(cross_fro2);
        a.self_fro2 = device_ptr<const double>(self_fro2);
        a.trace = device_ptr<const double>(trace);
        a.norm_products = device_ptr<const double>(norm_products);
        a.cka = device_ptr<double>(cka);
        a.cka_debiased = device_ptr<double>(cka_debiased);
        py::gil_scoped_release release;
        mmkern::cka_from_norms_cuda(a, as_stream(stream));
      },
      py::arg("npairs"), py::arg("models"), py::arg("n"), py::arg("first"), py::arg("second"),
      py::arg("cross_fro2"), py::arg("self_fro2"), py::arg("trace") = 0, py::arg("norm_products") = 0,
      py::arg("cka") = 0, py::arg("cka_debiased") = 0, py::arg("stream") = 0,
      "Per-pair linear CKA and debiased CKA from cross/self Frobenius norms, traces and norm "
      "products (float64 device buffers; first/second int64 model indices).");

  // ---- predictive multiplicity (multiplicity_cuda.h) ----------------------------------------

  m.def(
      "disagreement_counts",
      [](uintptr_t codes, int bits, int64_t models, int64_t n, uintptr_t counts, uintptr_t stream) {
        const int M = as_count(models, "models");
        mmkern::dispatch_code(bits, "disagreement_counts", [&](auto tag) {
          using Code = decltype(tag);
          py::gil_scoped_release release;
          mmkern::disagreement_counts_cuda(device_ptr<const Code>(codes), M, n, device_ptr<int64_t>(counts),
                                           as_stream(stream));
        });
      },
      py::arg("codes"), py::arg("bits"), py::arg("models"), py::arg("n"), py::arg("counts"), py::arg("stream") = 0,
      "Pairwise disagreement counts: codes a C-contiguous (models, n) uint8 (bits=8), uint16 "
      "(bits=16) or uint32 (bits=32) device buffer; counts an int64 (models, models) device "
      "buffer, overwritten.");

  m.def(
      "soft_disagreement",
      [](uintptr_t probs, int dtype, int64_t models, int64_t n, int64_t classes, int metric, uintptr_t out,
         uintptr_t stream) {
        const mmkern::DType dt = dtype_code(dtype, "probs");
        if (metric < 0 || metric > 3) throw std::invalid_argument("metric must be 0 (tv), 1 (js), 2 (hellinger) or 3 (kl)");
        const int M = as_count(models, "models"), C = as_count(classes, "classes");
        const auto sm = static_cast<mmkern::SoftMetric>(metric);
        mmkern::dispatch_float(dt, "probs", [&](auto tag) {
          using T = decltype(tag);
          py::gil_scoped_release release;
          mmkern::soft_disagreement_cuda(device_ptr<const T>(probs), M, n, C, sm, device_ptr<double>(out),
                                         as_stream(stream));
        });
      },
      py::arg("probs"), py::arg("dtype"), py::arg("models"), py::arg("n"), py::arg("classes"), py::arg("metric"),
      py::arg("out"), py::arg("stream") = 0,
      "Mean per-sample soft disagreement (mmkern._C.SOFT_METRICS codes) of a C-contiguous "
      "(models, n, classes) float32/float64 device buffer into the float64 (models, models) device "
      "buffer out, overwritten.");

  m.def(
      "rashomon_workspace_per_sample",
      [](int64_t models, int64_t classes) {
        return mmkern::rashomon_workspace_per_sample(as_count(models, "models"), as_count(classes, "classes"));
      },
      py::arg("models"), py::arg("classes"), "Doubles of device workspace rashomon_capacity needs per sample (MC + 3M + C).");

  m.def(
      "rashomon_capacity",
      [](uintptr_t probs, int dtype, int64_t models, int64_t n, int64_t classes, double tol, int max_iter,
         uintptr_t out, uintptr_t gap, uintptr_t workspace, int64_t workspace_size, uintptr_t stream) {
        const mmkern::DType dt = dtype_code(dtype, "probs");
        const int M = as_count(models, "models"), C = as_count(classes, "classes");
        mmkern::dispatch_float(dt, "probs", [&](auto tag) {
          using T = decltype(tag);
          py::gil_scoped_release release;
          mmkern::rashomon_capacity_cuda(device_ptr<const T>(probs), M, n, C, tol, max_iter, device_ptr<double>(out),
                                         device_ptr<double>(gap), device_ptr<double>(workspace), workspace_size,
                                         as_stream(stream));
        });
      },
      py::arg("probs"), py::arg("dtype"), py::arg("models"), py::arg("n"), py::arg("classes"), py::arg("tol"),
      py::arg("max_iter"), py::arg("out"), py::arg("gap") = 0, py::arg("workspace") = 0,
      py::arg("workspace_size") = 0, py::arg("stream") = 0,
      "Per-sample Blahut-Arimoto capacity in nats (its lower bound) of a C-contiguous "
      "(models, n, classes) float32/float64 device buffer into out (n float64) and, unless 0, "
      "the final bound gap in nats into gap (n float64); workspace: workspace_size float64 of "
      "device scratch, at least rashomon_workspace_per_sample(models, classes).");

  // ---- linear mode connectivity (connectivity_cuda.h) ---------------------------------------

  m.def(
      "lerp_many",
      [](uintptr_t a, uintptr_t b, int dtype, int64_t p, uintptr_t alphas, int64_t k, uintptr_t out,
         uintptr_t stream) {
        const mmkern::DType dt = dtype_code(dtype, "a");
        if (p < 0 || k < 0) throw std::invalid_argument("p and k must be non-negative");
        mmkern::dispatch_float(dt, "a", [&](auto tag) {
          using T = decltype(tag);
          py::gil_scoped_release release;
          mmkern::lerp_many_cuda(device_ptr<const T>(a), device_ptr<const T>(b), p, device_ptr<const double>(alphas),
                                 k, device_ptr<T>(out), as_stream(stream));
        });
      },
      py::arg("a"), py::arg("b"), py::arg("dtype"), py::arg("p"), py::arg("alphas"), py::arg("k"), py::arg("out"),
      py::arg("stream") = 0,
      "Interpolated parameter vectors: a, b contiguous (p,) float32/float64 device buffers, "
      "alphas a (k,) float64 device buffer; out a contiguous (k, p) device buffer of the same "
      "dtype, overwritten with (1 - alphas[j]) * a + alphas[j] * b (float64, rounded once).");
}
