// Bindings of the Gram and similarity kernels: array -> view conversion and the GIL release.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "gram.h"
#include "similarity.h"

namespace py = pybind11;
using mmkern::DType;
using mmkern::MatrixView;

namespace {

using F64Array = py::array_t<double, py::array::forcecast>;

MatrixView to_view(const py::array& a, const std::string& what) {
  if (a.ndim() != 2)
    throw std::invalid_argument(what + " must be 2-D, got " + std::to_string(a.ndim()) + "-D");
  DType dt;
  // isinstance<array_t<T>> compares dtypes by equivalence (native byte order), not identity.
  if (py::isinstance<py::array_t<float>>(a)) dt = DType::Float32;
  else if (py::isinstance<py::array_t<double>>(a)) dt = DType::Float64;
  else throw std::invalid_argument(what + " must be float32 or float64");
  const auto item = static_cast<py::ssize_t>(a.itemsize());
  if (a.strides(0) % item != 0 || a.strides(1) % item != 0)
    throw std::invalid_argument(what + " has strides that are not a multiple of its item size");
  return MatrixView{a.data(), a.shape(0), a.shape(1), a.strides(0) / item, a.strides(1) / item, dt};
}

std::vector<MatrixView> to_views(const std::vector<py::array>& arrays) {
  std::vector<MatrixView> views;
  views.reserve(arrays.size());
  for (size_t i = 0; i < arrays.size(); ++i)
    views.push_back(to_view(arrays[i], "array " + std::to_string(i)));
  return views;
}

// A writable, C-contiguous float64 buffer of exactly `size` elements, or an error naming it.
double* writable(const py::array& a, py::ssize_t size, const char* what) {
  if (!py::isinstance<py::array_t<double>>(a) || !(a.flags() & py::array::c_style) ||
      !a.writeable() || a.size() != size)
    throw std::invalid_argument(std::string(what) + " must be a writable contiguous float64 array of " +
                                std::to_string(size) + " elements");
  return static_cast<double*>(const_cast<void*>(a.data()));
}

std::vector<int64_t> check_offsets(const std::vector<int64_t>& offsets) {
  if (offsets.size() < 2 || offsets[0] != 0)
    throw std::invalid_argument("offsets must start at 0 and name at least one model");
  for (size_t i = 1; i < offsets.size(); ++i)
    if (offsets[i] < offsets[i - 1]) throw std::invalid_argument("offsets must be non-decreasing");
  return offsets;
}

py::ssize_t gram_size(const std::vector<int64_t>& offsets, bool blocks_only) {
  const auto D = static_cast<py::ssize_t>(offsets.back());
  if (!blocks_only) return D * D;
  return static_cast<py::ssize_t>(
      mmkern::diagonal_block_offset(offsets.data(), static_cast<int>(offsets.size()) - 1));
}

// An accumulator over caller-owned NumPy buffers, each checked for dtype, layout and size.
mmkern::GramAccumulator make_accumulator(const std::vector<int64_t>& offsets, bool blocks_only,
                                         const py::array& gram, const py::array& colsum,
                                         const std::optional<py::array>& row_moments,
                                         const std::optional<py::array>& norm_products,
                                         const std::optional<py::array>& norm_sums) {
  const auto D = static_cast<py::ssize_t>(offsets.back());
  const auto M = static_cast<py::ssize_t>(offsets.size()) - 1;
  mmkern::GramAccumulator acc;
  acc.dim = D;
  acc.models = static_cast<int>(M);
  acc.offsets = offsets.data();
  acc.blocks_only = blocks_only;
  acc.gram = writable(gram, gram_size(offsets, blocks_only), "gram");
  acc.colsum = writable(colsum, D, "colsum");
  const bool moments = row_moments.has_value();
  if (moments != norm_products.has_value() || moments != norm_sums.has_value())
    throw std::invalid_argument("row_moments, norm_products and norm_sums go together");
  if (moments && blocks_only)
    throw std::invalid_argument("debiased-CKA statistics need the full Gram layout");
  if (moments) {
    acc.row_moments = writable(*row_moments, D * M, "row_moments");
    acc.norm_products = writable(*norm_products, M * M, "norm_products");
    acc.norm_sums = writable(*norm_sums, M, "norm_sums");
  }
  return acc;
}

// Views of equally long arrays whose widths match `offsets`.
std::vector<MatrixView> population_views(const std::vector<py::array>& arrays,
                                         const std::vector<int64_t>& offsets) {
  auto views = to_views(arrays);
  if (offsets.size() != views.size() + 1)
    throw std::invalid_argument("offsets must have one entry per array plus one");
  for (size_t i = 0; i < views.size(); ++i) {
    if (views[i].cols != offsets[i + 1] - offsets[i])
      throw std::invalid_argument("array " + std::to_string(i) + " width does not match offsets");
    if (views[i].rows != views[0].rows)
      throw std::invalid_argument("all arrays must have the same number of rows");
  }
  return views;
}

using IndexArray = py::array_t<int64_t, py::array::c_style | py::array::forcecast>;

void check_pairs(const IndexArray& first, const IndexArray& second, int64_t models) {
  if (second.size() != first.size()) throw std::invalid_argument("first and second differ in length");
  for (py::ssize_t p = 0; p < first.size(); ++p)
    if (first.data()[p] < 0 || first.data()[p] >= models || second.data()[p] < 0 ||
        second.data()[p] >= models)
      throw std::invalid_argument("pair index out of range");
}

// Allocates one float64 array of `np` entries per requested metric into `result` and points the
// matching PairOutputs field at it. Names outside `allowed` (or unknown) are an error; names in
// `skip` are accepted but get no array (the caller handles them).
mmkern::PairOutputs allocate_outputs(const std::vector<std::string>& metrics, py::ssize_t np,
                                     const std::vector<std::string>& allowed,
                                     const std::vector<std::string>& skip, py::dict& result) {
  mmkern::PairOutputs out;
  for (const auto& name : metrics) {
    if (std::find(skip.begin(), skip.end(), name) != skip.end()) continue;
    if (std::find(allowed.begin(), allowed.end(), name) == allowed.end())
      throw std::invalid_argument("metric " + name + " is not computed by this route");
    F64Array a(np);
    double* ptr = a.mutable_data();
    if (name == "svcca") out.svcca = ptr;
    else if (name == "cca_mean") out.cca_mean = ptr;
    else if (name == "cca_r2") out.cca_r2 = ptr;
    else if (name == "pwcca") out.pwcca = ptr;
    else if (name == "cka") out.cka = ptr;
    else if (name == "cka_debiased") out.cka_debiased = ptr;
    result[py::str(name)] = a;
  }
  return out;
}

// Holds the Gram array alive for as long as its factors are used.
struct PyGramFactors {
  py::array gram;
  std::unique_ptr<mmkern::GramFactors> factors;
};

}  // namespace

void bind_similarity(py::module_& m) {
  m.def(
      "column_sums",
      [](const std::vector<py::array>& arrays) {
        auto views = to_views(arrays);
        py::ssize_t D = 0;
        for (const auto& v : views) D += v.cols;
        F64Array out(D);
        int bad;
        {
          py::gil_scoped_release release;
          bad = mmkern::column_sums(views.data(), static_cast<int>(views.size()), out.mutable_data());
        }
        return py::make_tuple(out, bad);
      },
      py::arg("arrays"),
      "Concatenated float64 column sums of 2-D arrays and the index of the first array holding "
      "a NaN or infinity (-1 if none).");

  m.def(
      "gram_update",
      [](const std::vector<py::array>& arrays, std::vector<int64_t> offsets, bool blocks_only,
         const py::array& shift, const py::array& gram, const py::array& colsum,
         std::optional<py::array> row_moments, std::optional<py::array> norm_products,
         std::optional<py::array> norm_sums, int64_t chunk_rows, bool validate) {
        offsets = check_offsets(offsets);
        auto views = population_views(arrays, offsets);
        auto acc = make_accumulator(offsets, blocks_only, gram, colsum, row_moments, norm_products, norm_sums);
        acc.shift = writable(shift, acc.dim, "shift");
        py::gil_scoped_release release;
        return mmkern::gram_update(views.data(), acc.models, acc, chunk_rows, validate);
      },
      py::arg("arrays"), py::arg("offsets"), py::arg("blocks_only"), py::arg("shift"),
      py::arg("gram"), py::arg("colsum"), py::arg("row_moments") = py::none(),
      py::arg("norm_products") = py::none(), py::arg("norm_sums") = py::none(),
      py::arg("chunk_rows") = 2048, py::arg("validate") = true,
      "Accumulate the shifted joint Gram statistics of equally long arrays in place (gram.h). "
      "Returns the index of the first array holding a NaN or infinity (nothing is added), or -1; "
      "validate=False skips that check for arrays already validated by column_sums.");

  m.def(
      "center_gram",
      [](std::vector<int64_t> offsets, bool blocks_only, const py::array& gram,
         const py::array& colsum, std::optional<py::array> row_moments,
         std::optional<py::array> norm_products, std::optional<py::array> norm_sums, int64_t n,
         const py::array& gram_out, std::optional<py::array> norm_products_out) {
        offsets = check_offsets(offsets);
        if (n <= 0) throw std::invalid_argument("n must be positive");
        auto acc = make_accumulator(offsets, blocks_only, gram, colsum, row_moments, norm_products, norm_sums);
        double* go = writable(gram_out, gram_size(offsets, blocks_only), "gram_out");
        double* npo = nullptr;
        if (acc.row_moments && norm_products_out)
          npo = writable(*norm_products_out, acc.models * acc.models, "norm_products_out");
        py::gil_scoped_release release;
        mmkern::center_gram(acc, n, go, npo);
      },
      py::arg("offsets"), py::arg("blocks_only"), py::arg("gram"), py::arg("colsum"),
      py::arg("row_moments"), py::arg("norm_products"), py::arg("norm_sums"), py::arg("n"),
      py::arg("gram_out"), py::arg("norm_products_out"),
      "Centered Gram (and centered norm products) from accumulated statistics (gram.h).");

  m.def(
      "sample_space_cka",
      [](const std::vector<py::array>& arrays, const py::array& mean,
         const IndexArray& first,
         const IndexArray& second,
         bool biased, bool debiased) {
        auto views = to_views(arrays);
        const auto M = static_cast<int64_t>(views.size());
        int64_t D = 0;
        for (const auto& v : views) {
          if (v.rows != views[0].rows) throw std::invalid_argument("all arrays must have the same number of rows");
          D += v.cols;
        }
        const double* mu = writable(mean, D, "mean");
        const py::ssize_t np = first.size();
        check_pairs(first, second, M);
        F64Array cka(biased ? np : 0), cka_debiased(debiased ? np : 0), traces(M);
        double* c = biased ? cka.mutable_data() : nullptr;
        double* cd = debiased ? cka_debiased.mutable_data() : nullptr;
        double* tr = traces.mutable_data();
        {
          py::gil_scoped_release release;
          mmkern::sample_space_cka(views.data(), static_cast<int>(M), mu, first.data(), second.data(), np, c, cd, tr);
        }
        py::dict out;
        if (biased) out["cka"] = cka;
        if (debiased) out["cka_debiased"] = cka_debiased;
        out["traces"] = traces;
        return out;
      },
      py::arg("arrays"), py::arg("mean"), py::arg("first"), py::arg("second"), py::arg("biased"),
      py::arg("debiased"),
      "Linear CKA of pairs through n x n sample Gram matrices (similarity.h); also returns each "
      "model's trace ||Xc_i||_F^2.");

  py::class_<PyGramFactors>(m, "GramFactors",
                            "Per-model eigendecompositions of a centered joint Gram (similarity.h).")
      .def(py::init([](const py::array& gram, std::vector<int64_t> offsets, bool blocks_only,
                       int64_t n, double rtol, double keep, int keep_mode, bool factor,
                       bool loadings) {
             offsets = check_offsets(offsets);
             const double* g = writable(gram, gram_size(offsets, blocks_only), "gram");
             if (keep_mode < 0 || keep_mode > 2) throw std::invalid_argument("keep_mode must be 0, 1 or 2");
             mmkern::SimilarityOptions opt;
             opt.rtol = rtol;
             opt.keep = keep;
             opt.keep_mode = static_cast<mmkern::KeepMode>(keep_mode);
             opt.factor = factor;
             opt.loadings = loadings;
             auto out = std::make_unique<PyGramFactors>();
             out->gram = gram;
             {
               py::gil_scoped_release release;
               out->factors = std::make_unique<mmkern::GramFactors>(g, offsets, blocks_only, n, opt);
             }
             return out;
           }),
           py::arg("gram"), py::arg("offsets"), py::arg("blocks_only"), py::arg("n"), py::arg("rtol"), py::arg("keep"),
           py::arg("keep_mode"), py::arg("factor") = true, py::arg("loadings") = false)
      .def_property_readonly("ranks",
                             [](const PyGramFactors& f) {
                               std::vector<int> r;
                               for (int i = 0; i < f.factors->models(); ++i) r.push_back(f.factors->rank(i));
                               return r;
                             })
      .def_property_readonly("svcca_dims",
                             [](const PyGramFactors& f) {
                               std::vector<int> r;
                               for (int i = 0; i < f.factors->models(); ++i)
                                 r.push_back(f.factors->svcca_dim(i));
                               return r;
                             })
      .def(
          "pairs",
          [](const PyGramFactors& f, const IndexArray& first,
             const IndexArray& second,
             const std::vector<std::string>& metrics, std::optional<F64Array> norm_products) {
            const py::ssize_t np = first.size();
            const int M = f.factors->models();
            check_pairs(first, second, M);
            py::dict result;
            mmkern::PairOutputs out = allocate_outputs(
                metrics, np, {"svcca", "cca_mean", "cca_r2", "pwcca", "cka", "cka_debiased"}, {}, result);
            if (out.cka_debiased) {
              if (!norm_products || norm_products->size() != static_cast<py::ssize_t>(M) * M)
                throw std::invalid_argument("cka_debiased needs the M x M norm_products");
              out.norm_products = norm_products->data();
            }
            {
              py::gil_scoped_release release;
              f.factors->pairs(first.data(), second.data(), np, out);
            }
            return result;
          },
          py::arg("first"), py::arg("second"), py::arg("metrics"), py::arg("norm_products") = py::none(),
          "Metrics for the pairs (first[p], second[p]) -> dict of float64 arrays.")
      .def(
          "project_pairs",
          [](const PyGramFactors& f, const std::vector<py::array>& arrays, std::vector<int64_t> offsets,
             const py::array& mean, const IndexArray& first,
             const IndexArray& second,
             const std::vector<std::string>& metrics, int64_t chunk_rows) {
            offsets = check_offsets(offsets);
            auto views = population_views(arrays, offsets);
            const int M = f.factors->models();
            if (static_cast<int>(views.size()) != M)
              throw std::invalid_argument("arrays must hold one array per factored model");
            const double* mu = writable(mean, offsets.back(), "mean");
            const py::ssize_t np = first.size();
            check_pairs(first, second, M);
            py::dict result;
            mmkern::PairOutputs out = allocate_outputs(
                metrics, np, {"svcca", "cca_mean", "cca_r2", "pwcca"}, {"correlations"}, result);
            std::vector<std::vector<double>> correlations;
            const bool want_correlations =
                std::find(metrics.begin(), metrics.end(), "correlations") != metrics.end();
            if (want_correlations) {
              correlations.resize(np);
              out.correlations = &correlations;
            }
            // All numerically non-zero directions for CCA / PWCCA, only the SVCCA ones otherwise.
            const bool full = out.cca_mean || out.cca_r2 || out.pwcca || want_correlations;
            mmkern::Projection pr;
            pr.koffsets.assign(M + 1, 0);
            std::vector<const double*> bases(M);
            for (int i = 0; i < M; ++i) {
              pr.koffsets[i + 1] = pr.koffsets[i] + (full ? f.factors->rank(i) : f.factors->svcca_dim(i));
              pr.keep.push_back(f.factors->svcca_dim(i));
              pr.widths.push_back(static_cast<int>(offsets[i + 1] - offsets[i]));
              bases[i] = f.factors->basis(i);
            }
            const int64_t K = pr.koffsets[M];
            std::vector<double> proj(static_cast<size_t>(K) * K, 0.0);
            std::vector<std::vector<double>> loadings(out.pwcca ? M : 0);
            for (size_t i = 0; i < loadings.size(); ++i) {
              loadings[i].assign(static_cast<size_t>(pr.widths[i]) * (pr.koffsets[i + 1] - pr.koffsets[i]), 0.0);
              pr.loadings.push_back(loadings[i].data());
            }
            pr.gram = proj.data();
            {
              py::gil_scoped_release release;
              mmkern::projected_gram_update(views.data(), M, offsets.data(), mu, bases.data(),
                                            pr.koffsets.data(), proj.data(),
                                            pr.loadings.empty() ? nullptr : pr.loadings.data(), chunk_rows);
              mmkern::projected_pairs(pr, first.data(), second.data(), np, out);
            }
            if (want_correlations) {
              py::list lists;
              for (const auto& c : correlations) lists.append(F64Array(static_cast<py::ssize_t>(c.size()), c.data()));
              result["correlations"] = lists;
            }
            return result;
          },
          py::arg("arrays"), py::arg("offsets"), py::arg("mean"), py::arg("first"), py::arg("second"),
          py::arg("metrics"), py::arg("chunk_rows") = 2048,
          "SVCCA / CCA / PWCCA of pairs by a second pass over the data projected onto each model's "
          "whitening basis, re-whitened by CholeskyQR2 (similarity.h, projected_pairs).");
}
