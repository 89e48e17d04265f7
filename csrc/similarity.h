// Pairwise representational similarity from a centered joint Gram matrix (see gram.h).
//
// Each model i (columns offsets[i] .. offsets[i+1] of the D x D Gram) is factored once:
//   G_ii = V diag(lambda) V^T  (eigenvalues descending; lambda_l <= rtol * lambda_0 dropped),
//   basis    B_i = V_r diag(lambda_r)^{-1/2}   (d_i x r_i; X_i B_i is orthonormal),
//   loadings L_i = V_r diag(lambda_r)^{1/2}    (d_i x r_i; X_i^T (X_i B_i), for PWCCA).
// A pair (i, j) then needs only d x d work: W = B_i^T G_ij B_j (r_i x r_j) is Q_i^T Q_j, whose
// singular values are the canonical correlations (CCA); its leading k_i x k_j block gives SVCCA.
// CKA uses the Gram blocks directly. Pairs are processed in parallel (OpenMP, with BLAS set to
// one thread for the loop where possible). This "Gram route" needs one pass over the data, so the
// streaming accumulator uses it; its whitening is exact only up to ~eps cond(X)^2.
//
// In memory, the CCA family takes the "projection route" instead: a second pass over the data
// (gram.h, projected_gram_update) projects each model onto its basis; only the diagonal Gram
// blocks are needed to factor the models, the Gram of the projected data U = [X_i B_i] holds
// every pair's whitened cross product at once, and re-whitening each model by the Cholesky factor
// of its own block (projected_pairs) restores the accuracy of an SVD of the data. A pair then
// costs small triangular solves and one SVD, and SVCCA projects onto only k_i <= d_i directions.
#pragma once

#include <cstdint>
#include <vector>

#include "common/similarity_math.h"
#include "common/view.h"

namespace mmkern {

struct SimilarityOptions {
  double rtol = 1e-10;   // relative variance tolerance for the numerical rank
  double keep = 0.99;    // SVCCA `keep` (fraction, or count when keep_mode == Count)
  KeepMode keep_mode = KeepMode::VarianceFraction;
  bool factor = true;    // eigendecompose the models (needed by SVCCA, CCA, PWCCA; not CKA)
  bool loadings = false;  // also store loadings (needed by PWCCA)
};

// Per-pair outputs; a null pointer means "not requested". Each array has npairs entries.
struct PairOutputs {
  double* svcca = nullptr;
  double* cca_mean = nullptr;
  double* cca_r2 = nullptr;
  double* pwcca = nullptr;          // weights from the neurons of the first model of the pair
  double* cka = nullptr;            // linear CKA
  double* cka_debiased = nullptr;   // needs norm_products
  const double* norm_products = nullptr;  // M x M centered sum_s |x_s|^2 |y_s|^2 (gram.h)
  // All canonical correlations of each pair (descending), when requested: npairs vectors.
  std::vector<std::vector<double>>* correlations = nullptr;
};

class GramFactors {
 public:
  // `gram`: centered Gram that must outlive this object, either the full D x D matrix
  // (upper triangle read, column-major) or, with `blocks_only`, its diagonal blocks one after
  // another (gram.h); `offsets`: M + 1 increasing column offsets; `n`: sample count.
  GramFactors(const double* gram, std::vector<int64_t> offsets, bool blocks_only, int64_t n,
              const SimilarityOptions& options);

  int models() const { return static_cast<int>(offsets_.size()) - 1; }
  int rank(int i) const { return rank_[i]; }
  int svcca_dim(int i) const { return keep_[i]; }
  int width(int i) const { return static_cast<int>(offsets_[i + 1] - offsets_[i]); }

  // Whitening basis of model i: d_i x rank(i), column-major; its first svcca_dim(i) columns span
  // the SVCCA subspace.
  const double* basis(int i) const { return basis_[i].data(); }

  // Metrics for pairs (first[p], second[p]); pairs with first == second give the self value.
  // Needs the full Gram layout (throws std::invalid_argument for blocks_only).
  void pairs(const int64_t* first, const int64_t* second, int64_t npairs,
             const PairOutputs& out) const;

 private:
  // Diagonal block of model i and its leading dimension.
  const double* diagonal_block(int i, int64_t* ld) const;
  // W = B_i[:, :ci]^T G_ij B_j[:, :cj] into `w` (ci x cj, column-major); `t` is scratch.
  void whitened_cross(int i, int j, int ci, int cj, std::vector<double>& t,
                      std::vector<double>& w) const;

  const double* gram_;
  bool blocks_only_;
  int64_t dim_;
  std::vector<int64_t> offsets_;
  int64_t n_;
  SimilarityOptions opt_;
  std::vector<int> rank_, keep_;
  std::vector<std::vector<double>> evals_, basis_, loadings_;
  std::vector<double> fro_, trace_;  // ||G_ii||_F and tr(G_ii)
};

// The projection route (in memory): canonical statistics of pairs from the projected Gram
// P = U^T U (K x K, upper triangle, column-major; gram.h, projected_gram_update) of
// U = [Xc_0 B_0 | ... ] with c_i columns per model, ordered by decreasing variance. The bases
// B_i = V Lambda^{-1/2} whiten X_i only up to the rounding of the Gram eigendecomposition
// (orthonormality error ~ eps cond(X_i)^2), so each model is re-whitened with the Cholesky factor
// of its own block, P_ii = R_i^T R_i, and a pair uses W_ij = R_i^{-T} P_ij R_j^{-1}
// (CholeskyQR2): canonical correlations then carry an error ~ eps cond(X_i), as an SVD of the
// data would. SVCCA takes the leading k_i x k_j block of W_ij.
struct Projection {
  const double* gram = nullptr;             // P, K x K
  std::vector<int64_t> koffsets;            // M + 1 offsets of the c_i in U
  std::vector<int> keep;                    // k_i <= c_i, the SVCCA dimension of each model
  std::vector<double*> loadings;            // per model Xc_i^T U_i (d_i x c_i), or empty
  std::vector<int> widths;                  // d_i
};

// Fills the SVCCA / CCA / PWCCA outputs of `out` (CKA outputs must be null) for the pairs
// (first[p], second[p]). Re-whitens `projection.loadings` in place. Throws std::runtime_error
// when a model's block is not positive definite (its directions are not numerically independent).
void projected_pairs(Projection& projection, const int64_t* first, const int64_t* second,
                     int64_t npairs, const PairOutputs& out);

// The whole projection route for the CCA family in memory, after the first pass: the second pass
// over the data (gram.h, projected_gram_update) onto the bases of `factors` (blocks-only,
// factored; all rank(i) directions when CCA, PWCCA or the correlation vectors are requested,
// svcca_dim(i) for SVCCA alone), then projected_pairs. `views` are the M models' activations
// (equally long, widths offsets[i + 1] - offsets[i]), `mean` their exact column means (D).
void projection_route(const GramFactors& factors, const MatrixView* views, const int64_t* offsets,
                      const double* mean, const int64_t* first, const int64_t* second,
                      int64_t npairs, const PairOutputs& out, int64_t chunk_rows);

// Per-model counts of SVCCA's rule for M models whose descending eigenvalues lie one model after
// another in `evals` (model i at evals + offsets[i], offsets[i + 1] - offsets[i] values):
// rank[i] = numerical_rank, kept[i] = svcca_keep_count (common/similarity_math.h). The device
// route calls this on its eigenvalues, so both routes choose the same ranks.
void factor_counts(const double* evals, const int64_t* offsets, int m, double rtol, double keep,
                   KeepMode mode, int* rank, int* kept);

// CPU twins of pair_summaries_cuda and cka_from_norms_cuda (similarity_cuda.h): the per-pair
// tails of the device route where mmkern._C_cuda cannot serve it, on host buffers. Same checks
// (check_pair_summary_args, check_cka_args) and the same per-pair bodies (pair_summary_at, cka_at).
void pair_summaries(const PairSummaryArgs& args);
void cka_from_norms(const CkaArgs& args);

// Linear CKA of pairs through the n x n sample Gram matrices K_i = Xc_i Xc_i^T (Xc_i = X_i minus
// its column means `mean`, D values): ||Xc_i^T Xc_j||_F^2 = <K_i, K_j>_F. Uses M n^2 doubles
// instead of the D x D feature-space Gram, so it is the route for wide layers and few samples.
// Writes the biased and/or debiased CKA of each pair (null outputs are skipped) and each model's
// trace(K_i) = ||Xc_i||_F^2 into `traces` (M).
void sample_space_cka(const MatrixView* views, int m, const double* mean, const int64_t* first,
                      const int64_t* second, int64_t npairs, double* cka, double* cka_debiased,
                      double* traces);

}  // namespace mmkern
