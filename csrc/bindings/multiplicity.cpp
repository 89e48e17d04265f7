// Bindings of the predictive-multiplicity kernels: contiguous arrays in (checked, never copied),
// the GIL released around each kernel call, results into fresh NumPy arrays.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>
#include <stdexcept>
#include <string>

#include "bindings/arrays.h"
#include "multiplicity.h"

namespace py = pybind11;
using mmkern::bindings::c_contiguous;
using mmkern::bindings::input;
using mmkern::bindings::with_codes;
using mmkern::bindings::with_floats;
using mmkern::bindings::with_integers;

namespace {

// Shape (M, n, C) of a C-contiguous probability array, or an error (its dtype is checked by the
// dispatch).
void check_probs(const py::array& a) {
  if (a.ndim() != 3 || !c_contiguous(a)) throw std::invalid_argument("probs must be a C-contiguous (M, n, C) array");
}

void check_codes(const py::array& a) {
  if (a.ndim() != 2 || !c_contiguous(a)) throw std::invalid_argument("codes must be a C-contiguous (M, n) array");
}

py::array_t<uint8_t> new_codes(int64_t rows, int64_t cols) {
  return py::array_t<uint8_t>({static_cast<py::ssize_t>(rows), static_cast<py::ssize_t>(cols)});
}

}  // namespace

void bind_multiplicity(py::module_& m) {
  m.def(
      "pack_labels",
      [](const py::array& labels) -> py::tuple {
        if (labels.ndim() != 2) throw std::invalid_argument("labels must be 2-D (M, n)");
        const int64_t rows = labels.shape(0), cols = labels.shape(1);
        auto codes = new_codes(rows, cols);
        uint8_t* out = codes.mutable_data();
        const auto item = static_cast<int64_t>(labels.itemsize());
        if (labels.strides(0) % item || labels.strides(1) % item)
          throw std::invalid_argument("labels have strides that are not a multiple of the item size");
        const mmkern::LabelRange range = with_integers(labels, "labels", [&](const auto* data) {
          py::gil_scoped_release release;
          return mmkern::pack_labels(data, rows, cols, labels.strides(0) / item, labels.strides(1) / item, out);
        });
        return py::make_tuple(codes, range.min, range.max);
      },
      py::arg("labels"), "uint8 codes (valid when every label is in [0, 256)), smallest and largest label: one pass.");

  m.def(
      "argmax_codes",
      [](const py::array& probs, int bits) {
        check_probs(probs);
        if (bits != 8 && bits != 16) throw std::invalid_argument("bits must be 8 or 16");
        const int M = static_cast<int>(probs.shape(0));
        const int64_t n = probs.shape(1);
        const int C = static_cast<int>(probs.shape(2));
        const std::vector<py::ssize_t> shape{M, static_cast<py::ssize_t>(n)};
        py::array codes = bits == 8 ? py::array(py::array_t<uint8_t>(shape)) : py::array(py::array_t<uint16_t>(shape));
        void* out = codes.mutable_data();
        with_floats(probs, "probs", [&](const auto* p) {
          py::gil_scoped_release release;
          if (bits == 8) mmkern::argmax_codes(p, M, n, C, static_cast<uint8_t*>(out));
          else mmkern::argmax_codes(p, M, n, C, static_cast<uint16_t*>(out));
        });
        return codes;
      },
      py::arg("probs"), py::arg("bits"), "Hard labels (M, n) as uint8/uint16 codes: argmax over classes, lowest index on ties.");

  m.def(
      "disagreement_counts",
      [](const py::array& codes) {
        check_codes(codes);
        const int M = static_cast<int>(codes.shape(0));
        const int64_t n = codes.shape(1);
        py::array_t<int64_t> counts({static_cast<py::ssize_t>(M), static_cast<py::ssize_t>(M)});
        int64_t* out = counts.mutable_data();
        with_codes(codes, "codes", /*wide_ok=*/true, [&](const auto* c) {
          py::gil_scoped_release release;
          mmkern::disagreement_counts(c, M, n, out);
        });
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
        with_floats(probs, "probs", [&](const auto* p) {
          py::gil_scoped_release release;
          mmkern::soft_disagreement(p, M, n, C, static_cast<mmkern::SoftMetric>(metric), out);
        });
        return result;
      },
      py::arg("probs"), py::arg("metric"), "(M, M) mean per-sample soft disagreement (SOFT_METRICS codes).");

  m.def(
      "rashomon_capacity",
      [](const py::array& probs, double tol, int max_iter) {
        check_probs(probs);
        if (!(tol > 0.0) || max_iter < 1) throw std::invalid_argument("tol must be > 0 and max_iter >= 1");
        const int M = static_cast<int>(probs.shape(0));
        const int64_t n = probs.shape(1);
        const int C = static_cast<int>(probs.shape(2));
        py::array_t<double> capacity(n), gaps(n);
        double* v = capacity.mutable_data();
        double* g = gaps.mutable_data();
        with_floats(probs, "probs", [&](const auto* p) {
          py::gil_scoped_release release;
          mmkern::rashomon_capacity(p, M, n, C, tol, max_iter, v, g);
        });
        return py::make_tuple(capacity, gaps);
      },
      py::arg("probs"), py::arg("tol"), py::arg("max_iter"),
      "Per-sample Blahut-Arimoto capacity in nats (its lower bound; the Rashomon capacity is "
      "min(C, exp(.))) and the final gap between its bounds in nats, both (n,).");

  m.def(
      "check_probabilities",
      [](const py::array& probs) {
        check_probs(probs);
        const int64_t rows = probs.shape(0) * probs.shape(1);
        const int C = static_cast<int>(probs.shape(2));
        const mmkern::ProbabilityCheck r = with_floats(probs, "probs", [&](const auto* p) {
          py::gil_scoped_release release;
          return mmkern::check_probabilities(p, rows, C);
        });
        py::dict out;
        out["nonfinite"] = r.nonfinite;
        out["negative"] = r.negative;
        out["min_sum"] = r.min_sum;
        out["max_sum"] = r.max_sum;
        return out;
      },
      py::arg("probs"), "One validation pass: counts of non-finite and negative entries, smallest and largest row sum.");

  m.def(
      "sample_statistics",
      [](const py::array& probs, const py::array& codes, std::optional<py::array> target) {
        check_probs(probs);
        check_codes(codes);
        const int M = static_cast<int>(probs.shape(0));
        const int64_t n = probs.shape(1);
        const int C = static_cast<int>(probs.shape(2));
        if (codes.shape(0) != M || codes.shape(1) != n) throw std::invalid_argument("codes must be (M, n) like probs");
        const int64_t* t = target ? input<int64_t>(*target, "target", n) : nullptr;
        if (t)
          for (int64_t x = 0; x < n; ++x)
            if (t[x] < 0 || t[x] >= C) throw std::invalid_argument("target must hold class indices in [0, C)");
        py::array_t<double> vote(n), variance(n), range(n);
        py::array_t<int64_t> majority(n);
        py::array_t<uint8_t> agree(n);
        double *pv = vote.mutable_data(), *pvar = variance.mutable_data(), *pr = range.mutable_data();
        int64_t* pm = majority.mutable_data();
        uint8_t* pa = agree.mutable_data();
        with_floats(probs, "probs", [&](const auto* p) {
          with_codes(codes, "codes", /*wide_ok=*/false, [&](const auto* c) {
            py::gil_scoped_release release;
            mmkern::sample_statistics(p, c, M, n, C, t, pv, pm, pvar, pr, pa);
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
