// The one dtype dispatch of the bindings (the idea of SciPy's DISPATCH_DTYPE): a runtime element
// code in, f(T{}) called with the matching C++ type.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

#include "common/view.h"

namespace mmkern {

// f(float{}) or f(double{}) for DType::Float32 / Float64; anything else is an error naming `what`.
template <typename F>
decltype(auto) dispatch_float(DType dtype, const std::string& what, F&& f) {
  switch (dtype) {
    case DType::Float32: return f(float{});
    case DType::Float64: return f(double{});
  }
  throw std::invalid_argument(what + ": dtype code must be 0 (float32) or 1 (float64)");
}

// f(uint8_t{}), f(uint16_t{}) or f(uint32_t{}) for class codes of 8, 16 or 32 bits.
template <typename F>
decltype(auto) dispatch_code(int bits, const std::string& what, F&& f) {
  switch (bits) {
    case 8: return f(uint8_t{});
    case 16: return f(uint16_t{});
    case 32: return f(uint32_t{});
  }
  throw std::invalid_argument(what + ": bits must be 8 (uint8 codes), 16 (uint16 codes) or 32 (uint32 codes)");
}

}  // namespace mmkern
