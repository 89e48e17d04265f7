// Bindings of the Gram and similarity kernels: arrays -> views and pointers, the GIL released
// around each kernel call, results into fresh NumPy arrays. No computation happens here.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <algorithm>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "bindings/arrays.h"
#include "gram.h"
#include "similarity.h"

namespace py = pybind11;
using mmkern::MatrixView;
using mmkern::bindings::input;
using mmkern::bindings::matrix_view;
using mmkern::bindings::output;

namespace {

using F64Array = py::array_t<double>;

std::vector<MatrixView> to_views(const std::vector<py::array>& arrays) {
  std::vector<MatrixView> views;
  views.reserve(arrays.size());
  for (size_t i = 0; i < arrays.size(); ++i) views.push_back(matrix_view(arrays[i], "array " + std::to_string(i)));
  return views;
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
  acc.gram = output(gram, "gram", gram_size(offsets, blocks_only));
  acc.colsum = output(colsum, "colsum", D);
  const bool moments = row_moments.has_value();
  if (moments != norm_products.has_value() || moments != norm_sums.has_value())
    throw std::invalid_argument("row_moments, norm_products and norm_sums go together");
  if (moments && blocks_only) throw std::invalid_argument("debiased-CKA statistics need the full Gram layout");
  if (moments) {
    acc.row_moments = output(*row_moments, "row_moments", D * M);
    acc.norm_products = output(*norm_products, "norm_products", M * M);
    acc.norm_sums = output(*norm_sums, "norm_sums", M);
  }
  return acc;
}

// Views of equally long arrays whose widths match `offsets`.
std::vector<MatrixView> population_views(const std::vector<py::array>& arrays, const std::vector<int64_t>& offsets) {
  auto views = to_views(arrays);
  if (offsets.size() != views.size() + 1) throw std::invalid_argument("offsets must have one entry per array plus one");
  for (size_t i = 0; i < views.size(); ++i) {
    if (views[i].cols != offsets[i + 1] - offsets[i])
      throw std::invalid_argument("array " + std::to_string(i) + " width does not match offsets");
    if (views[i].rows != views[0].rows) throw std::invalid_argument("all arrays must have the same number of rows");
  }
  return views;
}

// The (first, second) model indices of the pairs: C-contiguous int64 arrays of one length, in
// [0, models).
py::ssize_t check_pairs(const py::array& first, const py::array& second, int64_t models) {
  const int64_t* f = input<int64_t>(first, "first");
  const int64_t* s = input<int64_t>(second, "second", first.size());
  for (py::ssize_t p = 0; p < first.size(); ++p)
    if (f[p] < 0 || f[p] >= models || s[p] < 0 || s[p] >= models)
      throw std::invalid_argument("pair index out of range");
  return first.size();
}

// Allocates one float64 array of `np` entries per requested metric into `result` and points the
// matching PairOutputs field at it. Names outside `allowed` (or unknown) are an error; names in
// `skip` are accepted but get no array (the caller handles them).
mmkern::PairOutputs allocate_outputs(const std::vector<std::string>& metrics, py::ssize_t np,
                                     const std::vector<std::string>& allowed, const std::vector<std::string>& skip,
                                     py::dict& result) {
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

// Optional float64 result arrays of one call, returned as a dict of the requested ones.
class NamedOutputs {
 public:
  // A fresh (size,) array under `name` when `wanted`, else nullptr.
  double* add(const char* name, bool wanted, py::ssize_t size) {
    if (!wanted) return nullptr;
    arrays_.emplace_back(name, F64Array(size));
    return arrays_.back().second.mutable_data();
  }
  py::dict dict() const {
    py::dict out;
    for (const auto& [name, array] : arrays_) out[name] = array;
    return out;
  }

 private:
  std::vector<std::pair<const char*, F64Array>> arrays_;
};

// The "correlations" output of a pair route: every pair's canonical correlations, when requested.
class CorrelationLists {
 public:
  CorrelationLists(const std::vector<std::string>& metrics, py::ssize_t np, mmkern::PairOutputs& out) {
    if (std::find(metrics.begin(), metrics.end(), "correlations") == metrics.end()) return;
    lists_.resize(np);
    out.correlations = &lists_;
    wanted_ = true;
  }
  void store(py::dict& result) const {
    if (!wanted_) return;
    py::list lists;
    for (const auto& c : lists_) lists.append(F64Array(static_cast<py::ssize_t>(c.size()), c.data()));
    result["correlations"] = lists;
  }

 private:
  std::vector<std::vector<double>> lists_;
  bool wanted_ = false;
};

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
        F64Array max_abs(static_cast<py::ssize_t>(views.size()));
        double* po = out.mutable_data();
        double* pm = max_abs.mutable_data();
        int bad;
        {
          py::gil_scoped_release release;
          bad = mmkern::column_sums(views.data(), static_cast<int>(views.size()), po, pm);
        }
        return py::make_tuple(out, bad, max_abs);
      },
      py::arg("arrays"),
      "(sums, bad, max_abs): the concatenated float64 column sums of 2-D arrays, the index of the "
      "first array holding a NaN or infinity (-1 if none) and each array's largest magnitude.");

  m.def(
      "gram_update",
      [](const std::vector<py::array>& arrays, std::vector<int64_t> offsets, bool blocks_only,
         const py::array& shift, const py::array& gram, const py::array& colsum,
         std::optional<py::array> row_moments, std::optional<py::array> norm_products,
         std::optional<py::array> norm_sums, int64_t chunk_rows, bool validate) {
        offsets = check_offsets(offsets);
        auto views = population_views(arrays, offsets);
        auto acc = make_accumulator(offsets, blocks_only, gram, colsum, row_moments, norm_products, norm_sums);
        acc.shift = input<double>(shift, "shift", acc.dim);
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
      [](std::vector<int64_t> offsets, bool blocks_only, const py::array& gram, const py::array& colsum,
         std::optional<py::array> row_moments, std::optional<py::array> norm_products,
         std::optional<py::array> norm_sums, int64_t n, const py::array& gram_out,
         std::optional<py::array> norm_products_out) {
        offsets = check_offsets(offsets);
        if (n <= 0) throw std::invalid_argument("n must be positive");
        auto acc = make_accumulator(offsets, blocks_only, gram, colsum, row_moments, norm_products, norm_sums);
        double* go = output(gram_out, "gram_out", gram_size(offsets, blocks_only));
        double* npo = nullptr;
        if (acc.row_moments && norm_products_out)
          npo = output(*norm_products_out, "norm_products_out", acc.models * acc.models);
        py::gil_scoped_release release;
        mmkern::center_gram(acc, n, go, npo);
      },
      py::arg("offsets"), py::arg("blocks_only"), py::arg("gram"), py::arg("colsum"),
      py::arg("row_moments"), py::arg("norm_products"), py::arg("norm_sums"), py::arg("n"),
      py::arg("gram_out"), py::arg("norm_products_out"),
      "Centered Gram (and centered norm products) from accumulated statistics (gram.h).");

  m.def(
      "sample_space_cka",
      [](const std::vector<py::array>& arrays, const py::array& mean, const py::array& first,
         const py::array& second, bool biased, bool debiased) {
        auto views = to_views(arrays);
        const auto M = static_cast<int64_t>(views.size());
        int64_t D = 0;
        for (const auto& v : views) {
          if (v.rows != views[0].rows) throw std::invalid_argument("all arrays must have the same number of rows");
          D += v.cols;
        }
        const double* mu = input<double>(mean, "mean", D);
        const py::ssize_t np = check_pairs(first, second, M);
        NamedOutputs outputs;
        double* c = outputs.add("cka", biased, np);
        double* cd = outputs.add("cka_debiased", debiased, np);
        double* tr = outputs.add("traces", true, M);
        const int64_t* f = input<int64_t>(first, "first");
        const int64_t* s = input<int64_t>(second, "second");
        {
          py::gil_scoped_release release;
          mmkern::sample_space_cka(views.data(), static_cast<int>(M), mu, f, s, np, c, cd, tr);
        }
        return outputs.dict();
      },
      py::arg("arrays"), py::arg("mean"), py::arg("first"), py::arg("second"), py::arg("biased"),
      py::arg("debiased"),
      "Linear CKA of pairs through n x n sample Gram matrices (similarity.h); also returns each "
      "model's trace ||Xc_i||_F^2.");

  m.def(
      "factor_counts",
      [](const py::array& evals, std::vector<int64_t> offsets, double rtol, double keep, int keep_mode) {
        offsets = check_offsets(offsets);
        if (keep_mode < 0 || keep_mode > 2) throw std::invalid_argument("keep_mode must be 0, 1 or 2");
        const double* e = input<double>(evals, "evals", static_cast<py::ssize_t>(offsets.back()));
        const auto M = static_cast<py::ssize_t>(offsets.size()) - 1;
        py::array_t<int> rank(M), kept(M);
        int* pr = rank.mutable_data();
        int* pk = kept.mutable_data();
        {
          py::gil_scoped_release release;
          mmkern::factor_counts(e, offsets.data(), static_cast<int>(M), rtol, keep,
                                static_cast<mmkern::KeepMode>(keep_mode), pr, pk);
        }
        return py::make_tuple(rank, kept);
      },
      py::arg("evals"), py::arg("offsets"), py::arg("rtol"), py::arg("keep"), py::arg("keep_mode"),
      "Numerical rank and SVCCA kept count of each model from its descending eigenvalues "
      "(evals: C-contiguous float64, model i at offsets[i]:offsets[i + 1]); two int arrays (M,).");

  m.def(
      "pair_summaries",
      [](const py::array& rho, const py::array& count, std::optional<py::array> weights, bool mean,
         bool r2, bool weighted) {
        if (rho.ndim() != 2) throw std::invalid_argument("rho must be 2-D (npairs, kmax)");
        mmkern::PairSummaryArgs a;
        a.npairs = rho.shape(0);
        a.kmax = rho.shape(1);
        a.rho = input<double>(rho, "rho");
        a.count = input<int64_t>(count, "count", a.npairs);
        if (weights) a.weights = input<double>(*weights, "weights", rho.size());
        NamedOutputs outputs;
        a.mean = outputs.add("mean", mean, a.npairs);
        a.r2 = outputs.add("r2", r2, a.npairs);
        a.weighted = outputs.add("weighted", weighted, a.npairs);
        {
          py::gil_scoped_release release;
          mmkern::pair_summaries(a);
        }
        return outputs.dict();
      },
      py::arg("rho"), py::arg("count"), py::arg("weights") = py::none(), py::arg("mean") = false,
      py::arg("r2") = false, py::arg("weighted") = false,
      "CPU twin of _C_cuda.pair_summaries: per-pair mean / mean square / weighted mean of the first "
      "count[p] canonical correlations of row p of rho (float64 (npairs, kmax); weights the same "
      "shape). Returns a dict of the requested (npairs,) float64 arrays.");

  m.def(
      "cka_from_norms",
      [](const py::array& first, const py::array& second, const py::array& cross_fro2,
         const py::array& self_fro2, double n, std::optional<py::array> trace,
         std::optional<py::array> norm_products, bool biased, bool debiased) {
        mmkern::CkaArgs a;
        a.models = self_fro2.size();
        a.npairs = check_pairs(first, second, a.models);
        a.n = n;
        a.first = input<int64_t>(first, "first");
        a.second = input<int64_t>(second, "second");
        a.cross_fro2 = input<double>(cross_fro2, "cross_fro2", a.npairs);
        a.self_fro2 = input<double>(self_fro2, "self_fro2");
        if (trace) a.trace = input<double>(*trace, "trace", a.models);
        if (norm_products) a.norm_products = input<double>(*norm_products, "norm_products", a.models * a.models);
        NamedOutputs outputs;
        a.cka = outputs.add("cka", biased, a.npairs);
        a.cka_debiased = outputs.add("cka_debiased", debiased, a.npairs);
        {
          py::gil_scoped_release release;
          mmkern::cka_from_norms(a);
        }
        return outputs.dict();
      },
      py::arg("first"), py::arg("second"), py::arg("cross_fro2"), py::arg("self_fro2"), py::arg("n"),
      py::arg("trace") = py::none(), py::arg("norm_products") = py::none(), py::arg("biased") = true,
      py::arg("debiased") = false,
      "CPU twin of _C_cuda.cka_from_norms: per-pair linear CKA (and debiased CKA) from ||X_i^T X_j||_F^2 "
      "of the pairs, ||X_i^T X_i||_F^2 per model and, for the debiased estimator, the traces and the "
      "M x M norm products. Returns a dict of (npairs,) float64 arrays.");

  py::class_<PyGramFactors>(m, "GramFactors", "Per-model eigendecompositions of a centered joint Gram (similarity.h).")
      .def(py::init([](const py::array& gram, std::vector<int64_t> offsets, bool blocks_only, int64_t n, double rtol,
                       double keep, int keep_mode, bool factor, bool loadings) {
             offsets = check_offsets(offsets);
             const double* g = input<double>(gram, "gram", gram_size(offsets, blocks_only));
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
                               for (int i = 0; i < f.factors->models(); ++i) r.push_back(f.factors->svcca_dim(i));
                               return r;
                             })
      .def(
          "pairs",
          [](const PyGramFactors& f, const py::array& first, const py::array& second,
             const std::vector<std::string>& metrics, std::optional<py::array> norm_products) {
            const int M = f.factors->models();
            const py::ssize_t np = check_pairs(first, second, M);
            py::dict result;
            mmkern::PairOutputs out = allocate_outputs(
                metrics, np, {"svcca", "cca_mean", "cca_r2", "pwcca", "cka", "cka_debiased"}, {}, result);
            if (out.cka_debiased) {
              if (!norm_products) throw std::invalid_argument("cka_debiased needs the M x M norm_products");
              out.norm_products = input<double>(*norm_products, "norm_products", static_cast<py::ssize_t>(M) * M);
            }
            const int64_t* pf = input<int64_t>(first, "first");
            const int64_t* ps = input<int64_t>(second, "second");
            {
              py::gil_scoped_release release;
              f.factors->pairs(pf, ps, np, out);
            }
            return result;
          },
          py::arg("first"), py::arg("second"), py::arg("metrics"), py::arg("norm_products") = py::none(),
          "Metrics for the pairs (first[p], second[p]) -> dict of float64 arrays.")
      .def(
          "project_pairs",
          [](const PyGramFactors& f, const std::vector<py::array>& arrays, std::vector<int64_t> offsets,
             const py::array& mean, const py::array& first, const py::array& second,
             const std::vector<std::string>& metrics, int64_t chunk_rows) {
            offsets = check_offsets(offsets);
            auto views = population_views(arrays, offsets);
            const int M = f.factors->models();
            if (static_cast<int>(views.size()) != M)
              throw std::invalid_argument("arrays must hold one array per factored model");
            const double* mu = input<double>(mean, "mean", offsets.back());
            const py::ssize_t np = check_pairs(first, second, M);
            py::dict result;
            mmkern::PairOutputs out =
                allocate_outputs(metrics, np, {"svcca", "cca_mean", "cca_r2", "pwcca"}, {"correlations"}, result);
            CorrelationLists correlations(metrics, np, out);
            const int64_t* pf = input<int64_t>(first, "first");
            const int64_t* ps = input<int64_t>(second, "second");
            {
              py::gil_scoped_release release;
              mmkern::projection_route(*f.factors, views.data(), offsets.data(), mu, pf, ps, np, out, chunk_rows);
            }
            correlations.store(result);
            return result;
          },
          py::arg("arrays"), py::arg("offsets"), py::arg("mean"), py::arg("first"), py::arg("second"),
          py::arg("metrics"), py::arg("chunk_rows") = 2048,
          "SVCCA / CCA / PWCCA of pairs by the projection route (similarity.h, projection_route): a "
          "second pass over the data onto each model's whitening basis, re-whitened by CholeskyQR2.")
      .def(
          "basis",
          [](const PyGramFactors& f, int i) {
            if (i < 0 || i >= f.factors->models()) throw std::invalid_argument("model index out of range");
            if (!f.factors->basis(i) || f.factors->rank(i) == 0)
              throw std::invalid_argument("these factors hold no whitening basis (factor=False)");
            const py::ssize_t d = f.factors->width(i), r = f.factors->rank(i);
            py::array_t<double, py::array::f_style> out({d, r});
            std::copy(f.factors->basis(i), f.factors->basis(i) + d * r, out.mutable_data());
            return out;
          },
          py::arg("i"),
          "Whitening basis B_i of model i (d_i, rank_i) float64: Xc_i B_i is orthonormal; its first "
          "svcca_dims[i] columns span the SVCCA subspace.");

  m.def(
      "projected_pairs",
      [](const py::array& gram, std::vector<int64_t> koffsets, const std::vector<int>& keep,
         const std::vector<int>& widths, std::optional<std::vector<py::array>> loadings, const py::array& first,
         const py::array& second, const std::vector<std::string>& metrics) {
        koffsets = check_offsets(koffsets);
        const int M = static_cast<int>(koffsets.size()) - 1;
        if (static_cast<int>(keep.size()) != M || static_cast<int>(widths.size()) != M)
          throw std::invalid_argument("keep and widths must have one entry per model");
        mmkern::Projection pr;
        const auto K = static_cast<py::ssize_t>(koffsets.back());
        pr.gram = input<double>(gram, "gram", K * K);
        pr.koffsets = koffsets;
        pr.keep = keep;
        pr.widths = widths;
        for (int i = 0; i < M; ++i)
          if (keep[i] < 0 || keep[i] > koffsets[i + 1] - koffsets[i] || widths[i] < 0)
            throw std::invalid_argument("model " + std::to_string(i) + ": keep must lie in [0, its columns]");
        if (loadings) {
          if (static_cast<int>(loadings->size()) != M) throw std::invalid_argument("loadings must hold one array per model");
          for (int i = 0; i < M; ++i)
            pr.loadings.push_back(output((*loadings)[i], "loadings " + std::to_string(i),
                                         static_cast<py::ssize_t>(widths[i]) * (koffsets[i + 1] - koffsets[i])));
        }
        const py::ssize_t np = check_pairs(first, second, M);
        py::dict result;
        mmkern::PairOutputs out =
            allocate_outputs(metrics, np, {"svcca", "cca_mean", "cca_r2", "pwcca"}, {"correlations"}, result);
        if (out.pwcca && !loadings) throw std::invalid_argument("pwcca needs the loadings");
        CorrelationLists correlations(metrics, np, out);
        const int64_t* pf = input<int64_t>(first, "first");
        const int64_t* ps = input<int64_t>(second, "second");
        {
          py::gil_scoped_release release;
          mmkern::projected_pairs(pr, pf, ps, np, out);
        }
        correlations.store(result);
        return result;
      },
      py::arg("gram"), py::arg("koffsets"), py::arg("keep"), py::arg("widths"), py::arg("loadings"),
      py::arg("first"), py::arg("second"), py::arg("metrics"),
      "SVCCA / CCA / PWCCA of pairs from a projected Gram P = U^T U (K x K float64) of whitened "
      "projections U = [Xc_i B_i] with koffsets[i + 1] - koffsets[i] columns per model "
      "(similarity.h, projected_pairs): the tail of the projection route, for projections made "
      "elsewhere (mmkern.distributed). `loadings` (per model, Xc_i^T U_i as a C-contiguous (c_i, d_i) "
      "array) are re-whitened in place; needed for pwcca only.");
}
