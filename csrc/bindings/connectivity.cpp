// Bindings of the linear-mode-connectivity kernels (connectivity.h): contiguous NumPy arrays in
// without copies, a fresh (k, p) array out, GIL released around the kernel.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <stdexcept>
#include <string>

#include "bindings/arrays.h"
#include "connectivity.h"

namespace py = pybind11;
using mmkern::bindings::dtype_name;
using mmkern::bindings::float_dtype;
using mmkern::bindings::shape_of;

namespace {

// A C-contiguous 1-D float32/float64 endpoint, or an error naming it.
void check_endpoint(const py::array& x, const char* name) {
  if (x.ndim() != 1)
    throw std::invalid_argument(std::string(name) + " must be 1-D (p,), got shape " + shape_of(x));
  float_dtype(x, name);
  if (!(x.flags() & py::array::c_style))
    throw std::invalid_argument(std::string(name) + " must be C-contiguous (no hidden copies)");
}

template <typename T>
py::array_t<T> run(const py::array& a, const py::array& b, const py::array& alphas) {
  const int64_t p = a.shape(0), k = alphas.shape(0);
  py::array_t<T> out({static_cast<py::ssize_t>(k), static_cast<py::ssize_t>(p)});
  const T* pa = static_cast<const T*>(a.data());
  const T* pb = static_cast<const T*>(b.data());
  const double* pal = static_cast<const double*>(alphas.data());
  T* po = out.mutable_data();
  {
    py::gil_scoped_release release;
    mmkern::lerp_many(pa, pb, p, pal, k, po);
  }
  return out;
}

// weight or bias of batchnorm_train_: None, or a C-contiguous (c,) array of x's dtype.
const void* channel_params(const py::object& obj, const py::array& x, const char* name) {
  if (obj.is_none()) return nullptr;
  if (!py::isinstance<py::array>(obj)) throw std::invalid_argument(std::string(name) + " must be an array or None");
  const py::array a = obj.cast<py::array>();
  if (a.ndim() != 1 || a.shape(0) != x.shape(1) || !a.dtype().is(x.dtype()) || !(a.flags() & py::array::c_style))
    throw std::invalid_argument(std::string(name) + " must be a C-contiguous (" + std::to_string(x.shape(1)) +
                                ",) array of x's dtype, got " + dtype_name(a) + " of shape " + shape_of(a));
  return a.data();
}

template <typename T>
py::tuple run_batchnorm(py::array& x, const py::object& weight, const py::object& bias, double eps, bool relu) {
  const int64_t outer = x.shape(0), c = x.shape(1), inner = x.shape(2);
  const T* w = static_cast<const T*>(channel_params(weight, x, "weight"));
  const T* b = static_cast<const T*>(channel_params(bias, x, "bias"));
  py::array_t<double> mean(static_cast<py::ssize_t>(c)), var(static_cast<py::ssize_t>(c));
  T* px = static_cast<T*>(x.mutable_data());
  double* pm = mean.mutable_data();
  double* pv = var.mutable_data();
  {
    py::gil_scoped_release release;
    mmkern::batchnorm_train_inplace(px, outer, c, inner, w, b, eps, relu, pm, pv);
  }
  return py::make_tuple(mean, var);
}

}  // namespace

void bind_connectivity(py::module_& m) {
  m.def(
      "lerp_many",
      [](const py::array& a, const py::array& b, const py::array& alphas) -> py::array {
        check_endpoint(a, "a");
        check_endpoint(b, "b");
        if (!a.dtype().is(b.dtype()))
          throw py::type_error("a and b must have the same dtype, got " + dtype_name(a) + " and " +
                                      dtype_name(b));
        if (a.shape(0) != b.shape(0))
          throw std::invalid_argument("a and b must have the same shape, got " + shape_of(a) + " and " +
                                      shape_of(b));
        if (!py::isinstance<py::array_t<double>>(alphas))
          throw py::type_error("alphas must be a float64 array, got " + dtype_name(alphas));
        if (alphas.ndim() != 1 || !(alphas.flags() & py::array::c_style))
          throw std::invalid_argument("alphas must be a C-contiguous 1-D float64 array, got " +
                                      dtype_name(alphas) + " of shape " + shape_of(alphas));
        const double* al = static_cast<const double*>(alphas.data());
        for (py::ssize_t j = 0; j < alphas.shape(0); ++j)
          if (!std::isfinite(al[j]))
            throw std::invalid_argument("alphas must be finite, got " + std::to_string(al[j]) + " at index " +
                                        std::to_string(j));
        return mmkern::dispatch_float(float_dtype(a, "a"), "a", [&](auto tag) -> py::array {
          return run<decltype(tag)>(a, b, alphas);
        });
      },
      py::arg("a"), py::arg("b"), py::arg("alphas"),
      "Interpolated parameter vectors: a, b C-contiguous 1-D (p,) float32/float64 arrays of the "
      "same dtype, alphas a C-contiguous 1-D (k,) finite float64 array; returns the (k, p) array "
      "of a's dtype with out[j] = (1 - alphas[j]) * a + alphas[j] * b computed in float64 and "
      "rounded once.");

  m.def(
      "batchnorm_train_",
      [](py::array x, const py::object& weight, const py::object& bias, double eps, bool relu) -> py::tuple {
        if (x.ndim() != 3)
          throw std::invalid_argument("x must be 3-D (outer, c, inner), got shape " + shape_of(x));
        const mmkern::DType dtype = float_dtype(x, "x");
        if (!(x.flags() & py::array::c_style) || !x.writeable())
          throw std::invalid_argument("x must be a writeable C-contiguous array (it is normalised in place)");
        if (x.shape(0) * x.shape(2) < 2)
          throw std::invalid_argument("x needs at least 2 values per channel, got shape " + shape_of(x));
        if (!(eps >= 0)) throw std::invalid_argument("eps must be >= 0");
        return mmkern::dispatch_float(dtype, "x", [&](auto tag) {
          return run_batchnorm<decltype(tag)>(x, weight, bias, eps, relu);
        });
      },
      py::arg("x"), py::arg("weight"), py::arg("bias"), py::arg("eps"), py::arg("relu"),
      "Batch normalisation in training mode, in place: x a writeable C-contiguous (outer, c, inner) "
      "float32/float64 array normalised per channel c with the batch statistics over outer and "
      "inner, scaled by weight and shifted by bias ((c,) arrays of x's dtype, or None), then ReLU "
      "if relu. Returns (mean, var): the float64 batch means and biased variances, shape (c,).");
}
