// Bindings of the predictive-multiplicity kernels: contiguous arrays in, GIL released around work.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>
#include <stdexcept>
#include <string>

#include "multiplicity.h"

namespace py = pybind11;

namespace {

// Shape (M, n, C) of a C-contiguous float32/float64 probability array, or an error.
void check_probs(const py::array& a) {
  if (a.ndim() != 3 || !(a.flags() & py::array::c_style))
    throw std::invalid_argument("probs must be a C-contiguous (M, n, C) array");
  if (!py::isinstance<py::array_t<float>>(a) && !py::isinstance<py::array_t<double>>(a))
    throw std::invalid_argument("probs must be float32 or float64");
}

void check_codes(const py::array& a, bool wide_ok = false) {
  if (a.ndim() != 2 || !(a.flags() & py::array::c_style))
    throw std::invalid_argument("codes must be a C-contiguous (M, n) array");
  const bool wide = wide_ok && py::isinstance<py::array_t<uint32_t>>(a);
  if (!py::isinstance<py::array_t<uint8_t>>(a) && !py::isinstance<py::array_t<uint16_t>>(a) && !wide)
    throw std::invalid_argument(wide_ok ? "codes must be uint8, uint16 or uint32" : "codes must be uint8 or uint16");
}

// Calls f(typed probs pointer) for a float32 or float64 array.
template <typename F>
auto with_probs(const py::array& a, F&& f) {
  if (py::isinstance<py::array_t<float>>(a)) return f(static_cast<const float*>(a.data()));
  return f(static_cast<const double*>(a.data()));
}

// Calls f(typed codes pointer) for a uint8 or uint16 array.
template <typename F>
auto with_codes(const py::array& a, F&& f) {
  if (py::isinstance<py::array_t<uint8_t>>(a)) return f(static_cast<const uint8_t*>(a.data()));
  return f(static_cast<const uint16_t*>(a.data()));
}

using I64Array = py::array_t<int64_t, py::array::c_style | py::array::forcecast>;

}  // namespace

void bind_multiplicity(py::module_& m) {
  m.def(
      "pack_labels",
      [](const py::array& labels) -> py::tuple {
        if (labels.ndim() != 2) throw std::invalid_argument("labels must be 2-D (M, n)");
        const int64_t rows = labels.shape(0), cols = labels.shape(1);
        py::array_t<uint8_t> codes({static_cast<py::ssize_t>(rows), static_cast<py::ssize_t>(cols)});
        uint8_t* out = codes.mutable_data();
        mmkern::LabelRange range;
        bool done = false;
        auto run = [&](auto tag) {
          using L = decltype(tag);
          if (done || !py::isinstance<py::array_t<L>>(labels)) return;
          const auto item = static_cast<int64_t>(sizeof(L));
          if (labels.strides(0) % item || labels.strides(1) % item)
            throw std::invalid_argument("labels have strides that are not a multiple of the item size");
          const L* data = static_cast<const L*>(labels.data());
          py::gil_scoped_release release;
          range = mmkern::pack_labels(data, rows, cols, labels.strides(0) / item, labels.strides(1) / item, out);
          done = true;
        };
        run(int8_t{}); run(int16_t{}); run(int32_t{}); run(int64_t{});
        run(uint8_t{}); run(uint16_t{}); run(uint32_t{}); run(uint64_t{});
        if (!done) throw std::invalid_argument("labels must have an integer dtype");
        return py::make_tuple(codes, range.min, range.max);
      },
      py::arg("labels"),
      "uint8 codes (valid when every label is in [0, 256)), smallest and largest label: one pass.");

  m.def(
      "argmax_codes",
      [](const py::array& probs, int bits) {
        check_probs(probs);
        if (bits != 8 && bits != 16) throw std::invalid_argument("bits must be 8 or 16");
        const int M = static_cast<int>(probs.shape(0));
        const int64_t n = probs.shape(1);
        const int C = static_cast<int>(probs.shape(2));
        py::array codes = bits == 8 ? py::array(py::array_t<uint8_t>({static_cast<py::ssize_t>(M), static_cast<py::ssize_t>(n)}))
                                    : py::array(py::array_t<uint16_t>({static_cast<py::ssize_t>(M), static_cast<py::ssize_t>(n)}));
        void* out = codes.mutable_data();
        with_probs(probs, [&](auto* p) {
          py::gil_scoped_release release;
          if (bits == 8) mmkern::argmax_codes(p, M, n, C, static_cast<uint8_t*>(out));
          else mmkern::argmax_codes(p, M, n, C, static_cast<uint16_t*>(out));
          return 0;
        });
        return codes;
      },
      py::arg("probs"), py::arg("bits"),
      "Hard labels (M, n) as uint8/uint16 codes: argmax over classes, lowest index on ties.");

  m.def(
      "disagreement_counts",
      [](const py::array& codes) {
        check_codes(codes, /*wide_ok=*/true);
        const int M = static_cast<int>(codes.shape(0));
        const int64_t n = codes.shape(1);
        py::array_t<int64_t> counts({static_cast<py::ssize_t>(M), static_cast<py::ssize_t>(M)});
        int64_t* out = counts.mutable_data();
        auto run = [&](auto* c) {
          py::gil_scoped_release release;
          mmkern::disagreement_counts(c, M, n, out);
          return 0;
        };
        if (py::isinstance<py::array_t<uint32_t>>(codes)) run(static_cast<const uint32_t*>(codes.data()));
        else with_codes(codes, run);
        return counts;
      },
      py::arg("codes"), "(M, M) int64 counts of samples on which each pair of models disagrees.");

  m.def(
      "soft_disagreement",
      [](const py::array& probs, int metric) {
        check_probs(probs);
        if (metric < 0 || metric > 3) throw std::invalid_argument("metric must be 0..3");
        const int M = static_cast<int>(probs.shape(0));
        const int64_t n = probs.shape(1);
        const int C = static_cast<int>(probs.shape(2));
        py::array_t<double> result({static_cast<py::ssize_t>(M), static_cast<py::ssize_t>(M)});
        double* out = result.mutable_data();
        with_probs(probs, [&](auto* p) {
          py::gil_scoped_release release;
          mmkern::soft_disagreement(p, M, n, C, static_cast<mmkern::SoftMetric>(metric), out);
          return 0;
        });
        return result;
      },
      py::arg("probs"), py::arg("metric"),
      "(M, M) mean per-sample soft disagreement (0 TV, 1 JS, 2 Hellinger, 3 KL).");

  m.def(
      "rashomon_capacity",
      [](const py::array& probs, double tol, int max_iter) {
        check_probs(probs);
        if (!(tol > 0.0) || max_iter < 1) throw std::invalid_argument("tol must be > 0 and max_iter >= 1");
        const int M = static_cast<int>(probs.shape(0));
        const int64_t n = probs.shape(1);
        const int C = static_cast<int>(probs.shape(2));
        py::array_t<double> values(n), gaps(n);
        double* v = values.mutable_data();
        double* g = gaps.mutable_data();
        with_probs(probs, [&](auto* p) {
          py::gil_scoped_release release;
          mmkern::rashomon_capacity(p, M, n, C, tol, max_iter, v, g);
          return 0;
        });
        return py::make_tuple(values, gaps);
      },
      py::arg("probs"), py::arg("tol"), py::arg("max_iter"),
      "Per-sample Rashomon capacity (n,) and the final gap between its bounds in nats (n,).");

  m.def(
      "check_probabilities",
      [](const py::array& probs) {
        check_probs(probs);
        const int64_t rows = probs.shape(0) * probs.shape(1);
        const int C = static_cast<int>(probs.shape(2));
        return with_probs(probs, [&](auto* p) {
          mmkern::ProbabilityCheck r;
          {
            py::gil_scoped_release release;
            r = mmkern::check_probabilities(p, rows, C);
          }
          py::dict out;
          out["nonfinite"] = r.nonfinite;
          out["negative"] = r.negative;
          out["min_sum"] = r.min_sum;
          out["max_sum"] = r.max_sum;
          return out;
        });
      },
      py::arg("probs"),
      "One validation pass: counts of non-finite and negative entries, smallest and largest row sum.");

  m.def(
      "sample_statistics",
      [](const py::array& probs, const py::array& codes, std::optional<I64Array> target) {
        check_probs(probs);
        check_codes(codes);
        const int M = static_cast<int>(probs.shape(0));
        const int64_t n = probs.shape(1);
        const int C = static_cast<int>(probs.shape(2));
        if (codes.shape(0) != M || codes.shape(1) != n)
          throw std::invalid_argument("codes must be (M, n) like probs");
        if (target) {
          if (target->size() != n) throw std::invalid_argument("target must have n entries");
          for (py::ssize_t x = 0; x < n; ++x)
            if (target->data()[x] < 0 || target->data()[x] >= C)
              throw std::invalid_argument("target must hold class indices in [0, C)");
        }
        py::array_t<double> vote(n), variance(n), range(n);
        py::array_t<int64_t> majority(n);
        py::array_t<uint8_t> agree(n);
        const int64_t* t = target ? target->data() : nullptr;
        double *pv = vote.mutable_data(), *pvar = variance.mutable_data(), *pr = range.mutable_data();
        int64_t* pm = majority.mutable_data();
        uint8_t* pa = agree.mutable_data();
        with_probs(probs, [&](auto* p) {
          return with_codes(codes, [&](auto* c) {
            py::gil_scoped_release release;
            mmkern::sample_statistics(p, c, M, n, C, t, pv, pm, pvar, pr, pa);
            return 0;
          });
        });
        py::dict out;
        out["vote_disagreement"] = vote;
        out["majority"] = majority;
        out["variance"] = variance;
        out["range"] = range;
        out["all_agree"] = agree;
        return out;
      },
      py::arg("probs"), py::arg("codes"), py::arg("target") = py::none(),
      "Per-sample statistics of a population (multiplicity.h, sample_statistics).");
}
