// CPU label packing: any integer labels to uint8 class codes, with their range, in one pass.
#include <algorithm>
#include <cstdint>
#include <limits>
#include <type_traits>

#include "multiplicity.h"

namespace mmkern {

template <typename L>
LabelRange pack_labels(const L* labels, int64_t rows, int64_t cols, int64_t rs, int64_t cs,
                       uint8_t* out) {
  // Unsigned 64-bit labels beyond int64 are reported as int64 max (still out of any range).
  auto widen = [](L v) -> int64_t {
    if constexpr (std::is_same_v<L, uint64_t>)
      return v > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())
                 ? std::numeric_limits<int64_t>::max()
                 : static_cast<int64_t>(v);
    else
      return static_cast<int64_t>(v);
  };
  int64_t lo = std::numeric_limits<int64_t>::max(), hi = std::numeric_limits<int64_t>::min();
#pragma omp parallel for schedule(static) reduction(min : lo) reduction(max : hi)
  for (int64_t r = 0; r < rows; ++r) {
    const L* row = labels + r * rs;
    uint8_t* dst = out + r * cols;
    for (int64_t c = 0; c < cols; ++c) {
      const int64_t v = widen(row[c * cs]);
      lo = std::min(lo, v);
      hi = std::max(hi, v);
      dst[c] = static_cast<uint8_t>(v);
    }
  }
  return LabelRange{lo, hi};
}

#define MMKERN_INSTANTIATE(L) \
  template LabelRange pack_labels<L>(const L*, int64_t, int64_t, int64_t, int64_t, uint8_t*);
MMKERN_INSTANTIATE(int8_t)
MMKERN_INSTANTIATE(int16_t)
MMKERN_INSTANTIATE(int32_t)
MMKERN_INSTANTIATE(int64_t)
MMKERN_INSTANTIATE(uint8_t)
MMKERN_INSTANTIATE(uint16_t)
MMKERN_INSTANTIATE(uint32_t)
MMKERN_INSTANTIATE(uint64_t)
#undef MMKERN_INSTANTIATE

}  // namespace mmkern
