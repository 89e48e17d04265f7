// mmkern._C_cuda: bindings of the CUDA twins (csrc/cuda/kernels.h).
//
// The kernels work on memory owned by the caller's array library (torch or CuPy), so device
// buffers cross this boundary as raw pointers passed as Python ints (``tensor.data_ptr()``,
// ``cupy_array.data.ptr``; 0 means "none"), with shapes and element strides alongside, and the
// CUDA stream as an int (``torch.cuda.current_stream().cuda_stream``; 0 = the legacy default
// stream). Launches are asynchronous on that stream; the GIL is released around them. The
// caller must make the target device current (e.g. ``with torch.cuda.device(t.device)``).
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cuda_runtime_api.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

#include "common/view.h"
#include "cuda/kernels.h"

#ifndef MMKERN_VERSION
#define MMKERN_VERSION "unknown"
#endif
#ifndef MMKERN_CUDA_ARCHITECTURES
#define MMKERN_CUDA_ARCHITECTURES "unknown"
#endif

namespace py = pybind11;

namespace {

// (data_ptr, rows, cols, row_stride, col_stride, dtype): strides in elements, dtype 0 = float32,
// 1 = float64 (mmkern::DType).
using ViewTuple = std::tuple<uintptr_t, int64_t, int64_t, int64_t, int64_t, int>;

template <typename T>
T* device_ptr(uintptr_t p) {
  return reinterpret_cast<T*>(p);
}

cudaStream_t as_stream(uintptr_t s) { return reinterpret_cast<cudaStream_t>(s); }

std::vector<mmkern::MatrixView> to_views(const std::vector<ViewTuple>& tuples) {
  std::vector<mmkern::MatrixView> views;
  views.reserve(tuples.size());
  for (size_t i = 0; i < tuples.size(); ++i) {
    const auto& [ptr, rows, cols, row_stride, col_stride, dtype] = tuples[i];
    if (dtype != 0 && dtype != 1)
      throw std::invalid_argument("view " + std::to_string(i) + ": dtype code must be 0 (float32) or 1 (float64)");
    if (rows < 0 || cols < 0)
      throw std::invalid_argument("view " + std::to_string(i) + ": negative shape");
    views.push_back(mmkern::MatrixView{device_ptr<const void>(ptr), rows, cols, row_stride, col_stride,
                                       static_cast<mmkern::DType>(dtype)});
  }
  return views;
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
      "pack_rows",
      [](const std::vector<ViewTuple>& views, int64_t row_begin, int64_t rows, uintptr_t shift,
         uintptr_t out, int64_t ld, uintptr_t stream) {
        auto v = to_views(views);
        py::gil_scoped_release release;
        mmkern::pack_rows_cuda(v.data(), static_cast<int>(v.size()), row_begin, rows,
                               device_ptr<const double>(shift), device_ptr<double>(out), ld,
                               as_stream(stream));
      },
      py::arg("views"), py::arg("row_begin"), py::arg("rows"), py::arg("shift"), py::arg("out"),
      py::arg("ld"), py::arg("stream") = 0,
      "Rows [row_begin, row_begin + rows) of the stacked device views minus shift (D doubles) "
      "into the column-major float64 device buffer out (leading dimension ld). views: list of "
      "(data_ptr, rows, cols, row_stride, col_stride, dtype) with element strides and dtype "
      "0 = float32, 1 = float64.");

  m.def(
      "pair_summaries",
      [](int64_t npairs, int64_t kmax, uintptr_t rho, uintptr_t count, uintptr_t weights,
         uintptr_t mean, uintptr_t r2, uintptr_t weighted, uintptr_t stream) {
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
      [](int64_t npairs, int64_t models, double n, uintptr_t first, uintptr_t second,
         uintptr_t cross_fro2, uintptr_t self_fro2, uintptr_t trace, uintptr_t norm_products,
         uintptr_t cka, uintptr_t cka_debiased, uintptr_t stream) {
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
      py::arg("cross_fro2"), py::arg("self_fro2"), py::arg("trace") = 0,
      py::arg("norm_products") = 0, py::arg("cka") = 0, py::arg("cka_debiased") = 0,
      py::arg("stream") = 0,
      "Per-pair linear CKA and debiased CKA from cross/self Frobenius norms, traces and norm "
      "products (float64 device buffers; first/second int64 model indices).");
}
