// CPU batch normalisation in training mode, in place, fused with ReLU (connectivity.h).
#include <algorithm>
#include <cstdint>
#include <stdexcept>
#include <vector>

#include "common/batchnorm_math.h"
#include "common/macros.h"
#include "common/parallel.h"
#include "connectivity.h"

namespace mmkern {
namespace {

// acc[ch] += f(x[o, ch, i]) over rows o in [o0, o1): a loop over contiguous values that
// vectorises over channels (inner == 1) or over positions (inner > 1).
template <typename T, typename F>
MMKERN_TARGET_CLONES void accumulate(const T* __restrict x, int64_t o0, int64_t o1, int64_t c, int64_t inner,
                                     const double* __restrict centre, double* __restrict acc, F f) {
  for (int64_t o = o0; o < o1; ++o) {
    const T* row = x + o * c * inner;
    if (inner == 1) {
      for (int64_t ch = 0; ch < c; ++ch) acc[ch] += f(static_cast<double>(row[ch]) - centre[ch]);
    } else {
      for (int64_t ch = 0; ch < c; ++ch) {
        const T* v = row + ch * inner;
        const double m = centre[ch];
        double s0 = 0, s1 = 0, s2 = 0, s3 = 0;  // lanes, so the float64 sum vectorises
        int64_t i = 0;
        for (; i + 4 <= inner; i += 4) {
          s0 += f(static_cast<double>(v[i]) - m);
          s1 += f(static_cast<double>(v[i + 1]) - m);
          s2 += f(static_cast<double>(v[i + 2]) - m);
          s3 += f(static_cast<double>(v[i + 3]) - m);
        }
        for (; i < inner; ++i) s0 += f(static_cast<double>(v[i]) - m);
        acc[ch] += (s0 + s1) + (s2 + s3);
      }
    }
  }
}

// Per-channel sums of f(x - centre), reduced over threads in thread order.
template <typename T, typename F>
void channel_sums(const T* x, int64_t outer, int64_t c, int64_t inner, const double* centre, double* out, F f) {
  // One block of rows per thread, a fixed split: the sum order depends only on the thread count.
  const int threads = max_threads();
  std::vector<double> partial(static_cast<size_t>(threads) * c, 0.0);
#pragma omp parallel for schedule(static, 1) num_threads(threads)
  for (int t = 0; t < threads; ++t)
    accumulate(x, outer * t / threads, outer * (t + 1) / threads, c, inner, centre,
               partial.data() + static_cast<size_t>(t) * c, f);
  std::fill(out, out + c, 0.0);
  for (int t = 0; t < threads; ++t)
    for (int64_t ch = 0; ch < c; ++ch) out[ch] += partial[static_cast<size_t>(t) * c + ch];
}

template <typename T>
MMKERN_TARGET_CLONES void transform(T* __restrict x, int64_t o0, int64_t o1, int64_t c, int64_t inner,
                                    const T* __restrict scale, const T* __restrict shift, bool relu) {
  for (int64_t o = o0; o < o1; ++o) {
    T* row = x + o * c * inner;
    if (inner == 1) {
      for (int64_t ch = 0; ch < c; ++ch) row[ch] = batchnorm_apply(row[ch], scale[ch], shift[ch], relu);
    } else {
      for (int64_t ch = 0; ch < c; ++ch) {
        T* v = row + ch * inner;
        const T a = scale[ch], b = shift[ch];
        for (int64_t i = 0; i < inner; ++i) v[i] = batchnorm_apply(v[i], a, b, relu);
      }
    }
  }
}

}  // namespace

template <typename T>
void batchnorm_train_inplace(T* x, int64_t outer, int64_t c, int64_t inner, const T* weight, const T* bias,
                             double eps, bool relu, double* mean, double* var) {
  if (outer < 0 || c < 0 || inner < 0) throw std::invalid_argument("batchnorm_train_inplace: negative size");
  const int64_t count = outer * inner;
  if (count < 2) throw std::invalid_argument("batchnorm_train_inplace: needs at least 2 values per channel");
  if (c == 0) return;
  const std::vector<double> zero(c, 0.0);
  channel_sums(x, outer, c, inner, zero.data(), mean, [](double d) { return d; });
  for (int64_t ch = 0; ch < c; ++ch) mean[ch] /= static_cast<double>(count);
  channel_sums(x, outer, c, inner, mean, var, [](double d) { return d * d; });
  std::vector<T> scale(c), shift(c);
  for (int64_t ch = 0; ch < c; ++ch) {
    var[ch] /= static_cast<double>(count);
    double s, b;
    batchnorm_affine(mean[ch], var[ch], eps, weight ? static_cast<double>(weight[ch]) : 1.0,
                     bias ? static_cast<double>(bias[ch]) : 0.0, &s, &b);
    scale[ch] = static_cast<T>(s);
    shift[ch] = static_cast<T>(b);
  }
  const int threads = max_threads();
#pragma omp parallel for schedule(static, 1) num_threads(threads)
  for (int t = 0; t < threads; ++t)
    transform(x, outer * t / threads, outer * (t + 1) / threads, c, inner, scale.data(), shift.data(), relu);
}

template void batchnorm_train_inplace<float>(float*, int64_t, int64_t, int64_t, const float*, const float*, double,
                                             bool, double*, double*);
template void batchnorm_train_inplace<double>(double*, int64_t, int64_t, int64_t, const double*, const double*,
                                              double, bool, double*, double*);

}  // namespace mmkern
