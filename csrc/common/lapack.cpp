#include "common/lapack.h"

#include <algorithm>
#include <stdexcept>
#include <vector>

namespace mmkern::lapack {

Routines& routines() {
  static Routines table;
  return table;
}

void set_routine(const std::string& name, void* fn) {
  Routines& r = routines();
  if (name == "dsyrk") r.dsyrk = reinterpret_cast<dsyrk_t*>(fn);
  else if (name == "dgemm") r.dgemm = reinterpret_cast<dgemm_t*>(fn);
  else if (name == "dsyevd") r.dsyevd = reinterpret_cast<dsyevd_t*>(fn);
  else if (name == "dgesdd") r.dgesdd = reinterpret_cast<dgesdd_t*>(fn);
  else if (name == "dgesvd") r.dgesvd = reinterpret_cast<dgesvd_t*>(fn);
  else if (name == "dpotrf") r.dpotrf = reinterpret_cast<dpotrf_t*>(fn);
  else if (name == "dtrsm") r.dtrsm = reinterpret_cast<dtrsm_t*>(fn);
  else if (name == "openblas_get_num_threads") r.get_threads = reinterpret_cast<int (*)()>(fn);
  else if (name == "openblas_set_num_threads") r.set_threads = reinterpret_cast<void (*)(int)>(fn);
  else throw std::invalid_argument("unknown BLAS/LAPACK routine: " + name);
}

void require_all() {
  const Routines& r = routines();
  if (!r.dsyrk || !r.dgemm || !r.dsyevd || !r.dgesdd || !r.dgesvd || !r.dpotrf || !r.dtrsm)
    throw std::runtime_error("mmkern: BLAS/LAPACK routines were not loaded from SciPy");
}

bool can_pin_threads() { return routines().get_threads && routines().set_threads; }

SingleThreadedBlas::SingleThreadedBlas() {
  if (!can_pin_threads()) return;
  previous_ = routines().get_threads();
  if (previous_ != 1) routines().set_threads(1);
}

SingleThreadedBlas::~SingleThreadedBlas() {
  if (can_pin_threads() && previous_ != 1) routines().set_threads(previous_);
}

void syrk_upper_t(int n, int k, double alpha, const double* a, int lda, double beta, double* c,
                  int ldc) {
  if (n == 0) return;
  routines().dsyrk("U", "T", &n, &k, &alpha, a, &lda, &beta, c, &ldc);
}

void syrk_upper_n(int n, int k, double alpha, const double* a, int lda, double beta, double* c,
                  int ldc) {
  if (n == 0) return;
  routines().dsyrk("U", "N", &n, &k, &alpha, a, &lda, &beta, c, &ldc);
}

void gemm(char transa, char transb, int m, int n, int k, double alpha, const double* a, int lda,
          const double* b, int ldb, double beta, double* c, int ldc) {
  if (m == 0 || n == 0) return;
  routines().dgemm(&transa, &transb, &m, &n, &k, &alpha, a, &lda, b, &ldb, &beta, c, &ldc);
}

void syevd(bool vectors, int n, double* a, int lda, double* w) {
  if (n == 0) return;
  const char jobz = vectors ? 'V' : 'N';
  int lwork = -1, liwork = -1, info = 0, iwork_query = 0;
  double work_query = 0.0;
  routines().dsyevd(&jobz, "U", &n, a, &lda, w, &work_query, &lwork, &iwork_query, &liwork, &info);
  lwork = std::max(1, static_cast<int>(work_query));
  liwork = std::max(1, iwork_query);
  std::vector<double> work(lwork);
  std::vector<int> iwork(liwork);
  routines().dsyevd(&jobz, "U", &n, a, &lda, w, work.data(), &lwork, iwork.data(), &liwork, &info);
  if (info != 0)
    throw std::runtime_error("LAPACK dsyevd failed to converge (info=" + std::to_string(info) + ")");
}

void gesdd(int m, int n, double* a, int lda, double* s, double* u) {
  const int mn = std::min(m, n);
  if (mn == 0) return;
  const char jobz = u ? 'S' : 'N';
  std::vector<double> vt(u ? static_cast<size_t>(mn) * n : 1);
  const int ldu = std::max(1, m), ldvt = std::max(1, u ? mn : 1);
  double dummy = 0.0;
  double* uptr = u ? u : &dummy;
  int lwork = -1, info = 0;
  double work_query = 0.0;
  std::vector<int> iwork(8 * static_cast<size_t>(mn));
  routines().dgesdd(&jobz, &m, &n, a, &lda, s, uptr, &ldu, vt.data(), &ldvt, &work_query, &lwork,
                    iwork.data(), &info);
  lwork = std::max(1, static_cast<int>(work_query));
  std::vector<double> work(lwork);
  routines().dgesdd(&jobz, &m, &n, a, &lda, s, uptr, &ldu, vt.data(), &ldvt, work.data(), &lwork,
                    iwork.data(), &info);
  if (info != 0)
    throw std::runtime_error("LAPACK dgesdd failed to converge (info=" + std::to_string(info) + ")");
}

void gesvd_left(int m, int n, double* a, int lda, double* s, double* u) {
  const int mn = std::min(m, n);
  if (mn == 0) return;
  double vt_dummy = 0.0;
  const int ldu = std::max(1, m), ldvt = 1;
  int lwork = -1, info = 0;
  double work_query = 0.0;
  routines().dgesvd("S", "N", &m, &n, a, &lda, s, u, &ldu, &vt_dummy, &ldvt, &work_query, &lwork,
                    &info);
  lwork = std::max(1, static_cast<int>(work_query));
  std::vector<double> work(lwork);
  routines().dgesvd("S", "N", &m, &n, a, &lda, s, u, &ldu, &vt_dummy, &ldvt, work.data(), &lwork,
                    &info);
  if (info != 0)
    throw std::runtime_error("LAPACK dgesvd failed to converge (info=" + std::to_string(info) + ")");
}

bool potrf_upper(int n, double* a, int lda) {
  if (n == 0) return true;
  int info = 0;
  routines().dpotrf("U", &n, a, &lda, &info);
  if (info < 0) throw std::runtime_error("LAPACK dpotrf: bad argument " + std::to_string(-info));
  return info == 0;
}

void trsm_upper(char side, char transa, int m, int n, double alpha, const double* a, int lda,
                double* b, int ldb) {
  if (m == 0 || n == 0) return;
  routines().dtrsm(&side, "U", &transa, "N", &m, &n, &alpha, a, &lda, b, &ldb);
}

}  // namespace mmkern::lapack
