// BLAS/LAPACK routines used by the CPU kernels, reached through function pointers.
//
// The pointers come from SciPy's published Cython capsules (scipy.linalg.cython_blas and
// cython_lapack): the bindings look them up once at import and call `set_routine`. This keeps
// `pip install` self-contained (no link-time BLAS) and uses SciPy's optimised OpenBLAS. Nothing
// here knows about Python. All matrices are column-major (Fortran convention).
#pragma once

#include <string>

namespace mmkern::lapack {

using dsyrk_t = void(const char* uplo, const char* trans, const int* n, const int* k,
                     const double* alpha, const double* a, const int* lda, const double* beta,
                     double* c, const int* ldc);
using dgemm_t = void(const char* transa, const char* transb, const int* m, const int* n,
                     const int* k, const double* alpha, const double* a, const int* lda,
                     const double* b, const int* ldb, const double* beta, double* c,
                     const int* ldc);
using dsyevd_t = void(const char* jobz, const char* uplo, const int* n, double* a, const int* lda,
                      double* w, double* work, const int* lwork, int* iwork, const int* liwork,
                      int* info);
using dgesvd_t = void(const char* jobu, const char* jobvt, const int* m, const int* n, double* a,
                      const int* lda, double* s, double* u, const int* ldu, double* vt,
                      const int* ldvt, double* work, const int* lwork, int* info);
using dgesdd_t = void(const char* jobz, const int* m, const int* n, double* a, const int* lda,
                      double* s, double* u, const int* ldu, double* vt, const int* ldvt,
                      double* work, const int* lwork, int* iwork, int* info);

using dpotrf_t = void(const char* uplo, const int* n, double* a, const int* lda, int* info);
using dtrsm_t = void(const char* side, const char* uplo, const char* transa, const char* diag,
                     const int* m, const int* n, const double* alpha, const double* a,
                     const int* lda, double* b, const int* ldb);

struct Routines {
  dsyrk_t* dsyrk = nullptr;
  dgemm_t* dgemm = nullptr;
  dsyevd_t* dsyevd = nullptr;
  dgesdd_t* dgesdd = nullptr;
  dgesvd_t* dgesvd = nullptr;
  dpotrf_t* dpotrf = nullptr;
  dtrsm_t* dtrsm = nullptr;
  // OpenBLAS's thread-count getter and setter, when the BLAS is an OpenBLAS. Both act on the
  // whole process (OpenBLAS's "_local" setter is process-wide too in its pthreads build).
  int (*get_threads)() = nullptr;
  void (*set_threads)(int) = nullptr;
};

// The process-wide table. Filled by the bindings before any kernel runs.
Routines& routines();

// Stores the pointer for `name` (one of: dsyrk, dgemm, dsyevd, dgesdd, dgesvd, dpotrf, dtrsm,
// openblas_get_num_threads, openblas_set_num_threads). Throws
// std::invalid_argument for an unknown name.
void set_routine(const std::string& name, void* fn);

// Throws std::runtime_error when a routine was never set (a packaging error, not user error).
void require_all();

// True when the BLAS thread count can be set. Kernels that call BLAS on many small problems
// parallelise over the problems (OpenMP) only then, with BLAS set to one thread for the loop;
// otherwise each BLAS call runs multi-threaded and the problems run one after another. Either way
// the machine's cores are never oversubscribed.
bool can_pin_threads();

// RAII: while alive, BLAS runs single-threaded (process-wide; no-op without the hooks). Meant to
// wrap one OpenMP loop of small BLAS problems, from the thread that starts the loop.
class SingleThreadedBlas {
 public:
  SingleThreadedBlas();
  ~SingleThreadedBlas();
  SingleThreadedBlas(const SingleThreadedBlas&) = delete;
  SingleThreadedBlas& operator=(const SingleThreadedBlas&) = delete;

 private:
  int previous_ = 1;
};

// --- thin, typed wrappers (column-major, int dimensions as LAPACK expects) -------------------

// C (upper triangle) = alpha * A^T A + beta * C; A is k x n with leading dimension lda.
void syrk_upper_t(int n, int k, double alpha, const double* a, int lda, double beta, double* c,
                  int ldc);

// C (upper triangle) = alpha * A A^T + beta * C; A is n x k with leading dimension lda.
void syrk_upper_n(int n, int k, double alpha, const double* a, int lda, double beta, double* c,
                  int ldc);

// C = alpha * op(A) op(B) + beta * C with op given by 'N' or 'T'.
void gemm(char transa, char transb, int m, int n, int k, double alpha, const double* a, int lda,
          const double* b, int ldb, double beta, double* c, int ldc);

// Eigen-decomposition of the symmetric n x n matrix `a` (upper triangle read). On return `w`
// holds the eigenvalues in ascending order and, if `vectors`, `a` holds the eigenvectors.
void syevd(bool vectors, int n, double* a, int lda, double* w);

// Singular values of the m x n matrix `a` (destroyed), descending, into `s` (min(m, n)).
// With `u` non-null, also the first min(m, n) left singular vectors (m x min(m,n), ld m).
void gesdd(int m, int n, double* a, int lda, double* s, double* u);

// Singular values (descending) and the first min(m, n) left singular vectors (m x min(m, n),
// leading dimension m) of `a` (destroyed); right vectors are not formed.
void gesvd_left(int m, int n, double* a, int lda, double* s, double* u);

// Cholesky factor of the symmetric positive definite n x n `a` (upper triangle read): on return
// its upper triangle holds R with a = R^T R. Returns false when `a` is not positive definite.
bool potrf_upper(int n, double* a, int lda);

// B = alpha * op(A)^{-1} B (side 'L') or alpha * B op(A)^{-1} (side 'R'), A upper triangular
// (non-unit), op given by 'N' or 'T'; B is m x n.
void trsm_upper(char side, char transa, int m, int n, double alpha, const double* a, int lda,
                double* b, int ldb);

}  // namespace mmkern::lapack
