// NumPy array checks of the CPU bindings: every argument is taken as it is (no py::array::forcecast,
// so nothing is copied behind the caller's back) or rejected with std::invalid_argument (which
// pybind11 turns into ValueError) naming it.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include "common/dispatch.h"
#include "common/view.h"

namespace mmkern::bindings {

namespace py = pybind11;

inline std::string dtype_name(const py::array& a) { return py::str(a.dtype()).cast<std::string>(); }

inline std::string shape_of(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t d = 0; d < a.ndim(); ++d)
    s += std::to_string(a.shape(d)) + (a.ndim() == 1 ? "," : d + 1 < a.ndim() ? ", " : "");
  return s + ")";
}

// The DType of a float32/float64 array (isinstance<array_t<T>> compares dtypes by equivalence,
// so a native-order dtype of the right kind matches).
inline DType float_dtype(const py::array& a, const std::string& what) {
  if (py::isinstance<py::array_t<float>>(a)) return DType::Float32;
  if (py::isinstance<py::array_t<double>>(a)) return DType::Float64;
  throw py::type_error(what + " must be float32 or float64, got " + dtype_name(a));
}

// Calls f(typed pointer) for a float32/float64 array: the dispatch of every float kernel.
template <typename F>
decltype(auto) with_floats(const py::array& a, const std::string& what, F&& f) {
  return dispatch_float(float_dtype(a, what), what,
                        [&](auto tag) { return f(static_cast<const decltype(tag)*>(a.data())); });
}

// The bit width of a uint8/uint16/uint32 code array.
inline int code_bits(const py::array& a, const std::string& what, bool wide_ok) {
  if (py::isinstance<py::array_t<uint8_t>>(a)) return 8;
  if (py::isinstance<py::array_t<uint16_t>>(a)) return 16;
  if (wide_ok && py::isinstance<py::array_t<uint32_t>>(a)) return 32;
  throw py::type_error(what + (wide_ok ? " must be uint8, uint16 or uint32" : " must be uint8 or uint16") +
                              ", got " + dtype_name(a));
}

// Calls f(typed pointer) for a class-code array.
template <typename F>
decltype(auto) with_codes(const py::array& a, const std::string& what, bool wide_ok, F&& f) {
  return dispatch_code(code_bits(a, what, wide_ok), what,
                       [&](auto tag) { return f(static_cast<const decltype(tag)*>(a.data())); });
}

// Calls f(typed pointer) for an array of any integer dtype (labels).
template <typename F>
decltype(auto) with_integers(const py::array& a, const std::string& what, F&& f) {
  auto as = [&](auto tag) { return f(static_cast<const decltype(tag)*>(a.data())); };
  if (py::isinstance<py::array_t<int8_t>>(a)) return as(int8_t{});
  if (py::isinstance<py::array_t<int16_t>>(a)) return as(int16_t{});
  if (py::isinstance<py::array_t<int32_t>>(a)) return as(int32_t{});
  if (py::isinstance<py::array_t<int64_t>>(a)) return as(int64_t{});
  if (py::isinstance<py::array_t<uint8_t>>(a)) return as(uint8_t{});
  if (py::isinstance<py::array_t<uint16_t>>(a)) return as(uint16_t{});
  if (py::isinstance<py::array_t<uint32_t>>(a)) return as(uint32_t{});
  if (py::isinstance<py::array_t<uint64_t>>(a)) return as(uint64_t{});
  throw py::type_error(what + " must have an integer dtype, got " + dtype_name(a));
}

inline bool c_contiguous(const py::array& a) { return (a.flags() & py::array::c_style) != 0; }

// A C-contiguous array of T with exactly `size` elements (size < 0: any size), read-only use.
template <typename T>
const T* input(const py::array& a, const std::string& what, py::ssize_t size = -1) {
  if (!py::isinstance<py::array_t<T>>(a))
    throw py::type_error(what + " must be a " + py::str(py::dtype::of<T>()).cast<std::string>() + " array, got " +
                         dtype_name(a));
  if (!c_contiguous(a) || (size >= 0 && a.size() != size))
    throw std::invalid_argument(what + " must be a C-contiguous " + py::str(py::dtype::of<T>()).cast<std::string>() +
                                " array" + (size >= 0 ? " of " + std::to_string(size) + " elements" : "") +
                                ", got " + dtype_name(a) + " of shape " + shape_of(a));
  return static_cast<const T*>(a.data());
}

// A writable C-contiguous float64 buffer of exactly `size` elements.
inline double* output(const py::array& a, const std::string& what, py::ssize_t size) {
  if (!py::isinstance<py::array_t<double>>(a) || !c_contiguous(a) || !a.writeable() || a.size() != size)
    throw std::invalid_argument(what + " must be a writable C-contiguous float64 array of " + std::to_string(size) +
                                " elements");
  return static_cast<double*>(const_cast<void*>(a.data()));
}

// A strided 2-D float32/float64 view of an array (no copy).
inline MatrixView matrix_view(const py::array& a, const std::string& what) {
  if (a.ndim() != 2) throw std::invalid_argument(what + " must be 2-D, got " + std::to_string(a.ndim()) + "-D");
  const DType dt = float_dtype(a, what);
  const auto item = static_cast<py::ssize_t>(a.itemsize());
  if (a.strides(0) % item != 0 || a.strides(1) % item != 0)
    throw std::invalid_argument(what + " has strides that are not a multiple of its item size");
  return MatrixView{a.data(), a.shape(0), a.shape(1), a.strides(0) / item, a.strides(1) / item, dt};
}

}  // namespace mmkern::bindings
