"""The GPU path of the similarity metrics (mmkern._gpu) and the CUDA module (mmkern._C_cuda).

Three groups:

(a) The torch implementation in :mod:`mmkern._gpu.similarity` run on CPU tensors against
    :mod:`mmkern.reference` (same values widened to float64), for all six metrics, the SVCCA keep
    modes, rank-deficient, ill-conditioned and n = d + 1 inputs and constant columns, with
    ``tests/tolerances.py``'s table (strict: no widening for the condition number). The
    pointer wiring of the CUDA kernels is checked on the host with stand-ins that implement the
    contract of ``csrc/cuda/kernels.h`` in NumPy.
(b) The public API on real CUDA tensors (and CuPy arrays): results stay on the device and match
    the CPU results within ``tolerances.CUDA_VS_CPU``. Skipped without a GPU.
(c) ``mmkern._C_cuda``: import, ``build_info`` and argument checks that run without a GPU.
    Skipped when the module was not built.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import io
import sys

import numpy as np
import pytest
from numpy.testing import assert_allclose

torch = pytest.importorskip("torch")

import mmkern  # noqa: E402
from _data import latent_activations, with_layout  # noqa: E402
from mmkern import reference as ref  # noqa: E402
from mmkern._gpu import similarity as gpu  # noqa: E402
from tolerances import CUDA_VS_CPU, condition_number, tol  # noqa: E402

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="torch.cuda is not available")

METRICS = ("svcca", "cca_mean", "cca_r2", "pwcca", "cka", "cka_debiased")

#: metric -> reference pairwise function (options as keyword arguments).
REFERENCE_PAIRWISE = {
    "svcca": lambda acts, **kw: ref.pairwise_svcca(acts, **kw),
    "cca_mean": lambda acts, **kw: ref.pairwise_cca(acts, statistic="mean", **kw),
    "cca_r2": lambda acts, **kw: ref.pairwise_cca(acts, statistic="r2", **kw),
    "pwcca": lambda acts, **kw: ref.pairwise_pwcca(acts, **kw),
    "cka": lambda acts, **kw: ref.pairwise_cka(acts),
    "cka_debiased": lambda acts, **kw: ref.pairwise_cka(acts, debiased=True),
}


def _tensors(arrays, device="cpu"):
    return [torch.from_numpy(a).to(device) for a in arrays]


def _all_pairs(m):
    """Every ordered pair (i, j), diagonal included, as (first, second)."""
    first, second = np.indices((m, m)).reshape(2, -1)
    return first, second


def _gpu_matrix(arrays, metric, **kwargs):
    """(M, M) matrix of ``metric`` from mmkern._gpu.similarity.pair_metrics on every pair."""
    m = len(arrays)
    first, second = _all_pairs(m)
    values = gpu.pair_metrics(arrays, [f"acts[{i}]" for i in range(m)], first, second, [metric], **kwargs)[metric]
    assert isinstance(values, torch.Tensor) and values.dtype == torch.float64
    assert values.device == arrays[0].device and values.shape == (m * m,)
    return values.cpu().numpy().reshape(m, m)


def _ref_kwargs(metric, rtol=None, keep=None, keep_by=None):
    kw = {}
    if metric != "cka" and metric != "cka_debiased" and rtol is not None:
        kw["rtol"] = rtol
    if metric == "svcca" and keep is not None:
        kw["keep"] = keep
        kw["keep_by"] = keep_by
    return kw


def _gpu_kwargs(metric, rtol=1e-10, keep=0.99, keep_by="variance"):
    if metric.startswith("cka"):
        return {}
    kw = {"rtol": rtol}
    if metric == "svcca":
        if isinstance(keep, int):
            kw.update(keep=float(keep), keep_mode=2)
        else:
            kw.update(keep=float(keep), keep_mode={"variance": 0, "singular_values": 1}[keep_by])
    return kw


def _check_against_reference(acts, metric, dtype, **opts):
    """The torch path on ``acts`` (NumPy) vs the reference, with the dtype's strict tolerance:
    the CCA family re-whitens (CholeskyQR2), so its error is ~eps * cond(X) like the reference's
    SVD, and ill-conditioned inputs need no widening."""
    got = _gpu_matrix(_tensors(acts), metric, **_gpu_kwargs(metric, **opts))
    want = REFERENCE_PAIRWISE[metric](acts, **_ref_kwargs(metric, **opts))
    assert np.all(np.isfinite(got))
    assert_allclose(got, want, err_msg=metric, **tol(dtype))
    return got


# ---------------------------------------------------------------------------------------------
# (a) the torch path on CPU tensors vs the reference
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("metric", METRICS)
def test_torch_path_matches_reference(rng, dtype, layout, metric):
    acts = latent_activations(rng, 90, [5, 9, 1, 7], dtype=dtype)
    acts = [with_layout(a, layout) for a in acts]
    got = _check_against_reference(acts, metric, dtype)
    if metric != "pwcca":
        assert_allclose(got, got.T, rtol=1e-12, atol=1e-14)
    if metric != "cka_debiased":
        assert_allclose(np.diag(got), 1.0, rtol=1e-9)


@pytest.mark.parametrize("keep, keep_by", [
    (0.99, "variance"), (0.5, "variance"), (1.0, "variance"), (0.8, "singular_values"),
    (0.3, "singular_values"), (1, "variance"), (3, "variance"), (50, "variance"),
])
def test_torch_path_svcca_keep_modes(rng, dtype, keep, keep_by):
    acts = latent_activations(rng, 120, [6, 10, 8], dtype=dtype, latent_dim=4)
    # keep=50 exceeds every rank: the count is capped at the rank, as in the reference
    got = _gpu_matrix(_tensors(acts), "svcca", **_gpu_kwargs("svcca", keep=keep, keep_by=keep_by))
    want = ref.pairwise_svcca(acts, keep, keep_by=keep_by)
    assert_allclose(got, want, **tol(dtype))


def test_torch_path_keep_slack_boundary(rng):
    """A cumulative variance fraction equal to ``keep`` up to rounding keeps that many directions
    (KEEP_SLACK), as on the CPU and in the reference."""
    n = 200
    q = rng.standard_normal((n, 3))
    q, _ = np.linalg.qr(q - q.mean(axis=0))  # orthonormal, centered columns
    rot, _ = np.linalg.qr(rng.standard_normal((3, 3)))
    x = (q * np.sqrt([0.5, 0.49, 0.01])) @ rot + 3.0  # variance fractions 0.5, 0.49, 0.01
    y = latent_activations(rng, n, [4])[0]
    for keep in (0.99, 0.5, 0.49 + 0.5, 0.8):
        first, second = [0], [1]
        got = gpu.pair_metrics(_tensors([x, y]), ["x", "y"], first, second, ["svcca"], keep=keep)["svcca"]
        assert float(got[0]) == pytest.approx(ref.svcca(x, y, keep), rel=1e-9)
        assert float(got[0]) == pytest.approx(mmkern.svcca(x, y, keep), rel=1e-9)
    factors = gpu._factor(gpu._joint(_tensors([x]), ["x"], False, False), 1e-10, 0.99, 0)
    assert factors.rank == [3] and factors.keep == [2]


def test_keep_count_rule_mirrors_the_kernels():
    rule = gpu._svcca_keep_count
    evals = [4.0, 3.0, 2.0, 1.0]
    assert rule(evals, 4, 0.7, 0) == 2          # 7/10 reaches 0.7
    assert rule(evals, 4, 0.7 + 1e-11, 0) == 2  # within KEEP_SLACK
    assert rule(evals, 4, 0.7 + 1e-9, 0) == 3
    assert rule(evals, 4, 1.0, 0) == 4
    assert rule(evals, 3, 1.0, 0) == 3          # capped at the rank
    assert rule(evals, 4, 2.0, 2) == 2 and rule(evals, 2, 3.0, 2) == 2
    assert rule([4.0, 1.0], 2, 2.0 / 3.0, 1) == 1  # by singular values: 2 / (2 + 1)
    assert rule(evals, 0, 0.5, 0) == 0
    assert gpu._numerical_rank([1.0, 1e-9, 1e-11, 0.0], 1e-10) == 2
    assert gpu._numerical_rank([0.0, 0.0], 1e-10) == 0


@pytest.mark.parametrize("metric", METRICS)
def test_torch_path_cross_pairs(rng, dtype, metric):
    acts = latent_activations(rng, 80, [4, 9, 6, 3], dtype=dtype)
    a, b = acts[:2], acts[2:]
    first, second = (np.indices((2, 2)).reshape(2, -1) + np.array([[0], [2]]))
    got = gpu.pair_metrics(_tensors(acts), ["a0", "a1", "b0", "b1"], first, second, [metric],
                           **_gpu_kwargs(metric, keep=0.9))[metric]
    calls = {
        "svcca": lambda: ref.cross_svcca(a, b, 0.9),
        "cca_mean": lambda: ref.cross_cca(a, b),
        "cca_r2": lambda: ref.cross_cca(a, b, statistic="r2"),
        "pwcca": lambda: ref.cross_pwcca(a, b),
        "cka": lambda: ref.cross_cka(a, b),
        "cka_debiased": lambda: ref.cross_cka(a, b, debiased=True),
    }
    assert_allclose(got.numpy().reshape(2, 2), calls[metric](), **tol(dtype))


def test_torch_path_several_metrics_at_once(rng):
    acts = latent_activations(rng, 70, [5, 8, 5])
    first, second = _all_pairs(3)
    together = gpu.pair_metrics(_tensors(acts), ["a", "b", "c"], first, second, list(METRICS), keep=0.9)
    assert list(together) == list(METRICS)
    for metric in METRICS:
        kw = {"keep": 0.9} if metric == "svcca" else {}
        alone = gpu.pair_metrics(_tensors(acts), ["a", "b", "c"], first, second, [metric], **kw)[metric]
        assert_allclose(together[metric].numpy(), alone.numpy(), rtol=1e-12, atol=1e-14)


def _degenerate_cases(rng):
    n = 120
    x, y = latent_activations(rng, n, [6, 5])
    z = rng.standard_normal((n, 3))
    return {
        "constant-columns": np.hstack([x[:, :2], np.full((n, 1), 1e3), x[:, 2:], np.zeros((n, 1))]),
        "duplicated-columns": np.hstack([x, x[:, :3]]),
        "dependent-columns": np.hstack([x, x[:, :1] - 2.5 * x[:, 4:5]]),
        "low-rank": z @ rng.standard_normal((3, 10)) + 4.0,
        "one-variable-column": np.hstack([np.full((n, 3), -2.0), x[:, :1]]),
    }, y


@pytest.mark.parametrize("case", ["constant-columns", "duplicated-columns", "dependent-columns",
                                  "low-rank", "one-variable-column"])
@pytest.mark.parametrize("metric", METRICS)
def test_torch_path_degenerate_inputs(rng, case, metric):
    cases, y = _degenerate_cases(rng)
    acts = [cases[case], y, cases[case][:, ::-1].copy()]
    _check_against_reference(acts, metric, np.float64)
    if metric == "svcca":
        for keep in (1.0, 3):
            _check_against_reference(acts, metric, np.float64, keep=keep, keep_by="variance")


@pytest.mark.parametrize("case", ["constant-columns", "duplicated-columns", "low-rank"])
def test_torch_path_correlations(rng, dtype, case):
    cases, y = _degenerate_cases(rng)
    x = cases[case].astype(dtype)
    y = y.astype(dtype)
    for a, b in ((x, y), (y, x)):
        got = gpu.correlations(torch.from_numpy(a), torch.from_numpy(b))
        want = ref.cca(a, b).correlations
        assert isinstance(got, torch.Tensor) and got.dtype == torch.float64
        assert got.shape == want.shape
        assert_allclose(got.numpy(), want, **tol(dtype))


def test_torch_path_edge_shapes(rng, edge_shape, layout):
    n, d = edge_shape
    acts = [with_layout(a, layout) for a in latent_activations(rng, n, [d, d, max(1, d - 1)])]
    for metric in METRICS:
        if metric == "cka_debiased" and n < 4:
            continue
        _check_against_reference(acts, metric, np.float64)


def _ill_conditioned_cases(rng, dtype):
    """Inputs with cond(X) = 3e4, where the plain Gram route's error bound eps * cond(X)^2 ~ 2e-7
    exceeds the table's rtol while no direction falls below the rank rule (cond < 1e5): shared-
    signal activations whose centered singular values are replaced by a geometric spectrum (their
    column spaces, hence their canonical correlations, are unchanged). Two shapes: n = 200, and
    n = d + 1 (barely more samples than features)."""
    def respectrum(a):
        mean = a.mean(axis=0)
        u, s, vt = np.linalg.svd(a - mean, full_matrices=False)
        return ((u * (s[0] * np.geomspace(1.0, 1.0 / 3e4, s.size))) @ vt + mean).astype(dtype)

    return {
        "n-200": [respectrum(a) for a in latent_activations(rng, 200, [8, 11, 6])],
        # widths 20 + 15 < n - 1: the pair's subspaces meet only generically (no forced rho = 1)
        "n-equals-d-plus-1": [respectrum(a) for a in latent_activations(rng, 41, [40, 20, 15])],
    }


@pytest.mark.parametrize("case", ["n-200", "n-equals-d-plus-1"])
@pytest.mark.parametrize("metric", ["svcca", "cca_mean", "cca_r2", "pwcca"])
def test_torch_path_ill_conditioned_inputs_need_no_widening(rng, dtype, case, metric):
    acts = _ill_conditioned_cases(rng, dtype)[case]
    kappa = max(condition_number(a) for a in acts)
    assert np.finfo(np.float64).eps * kappa**2 > 10 * tol(dtype)["rtol"]  # the case is hard
    _check_against_reference(acts, metric, dtype)
    if metric == "svcca":
        _check_against_reference(acts, metric, dtype, keep=1.0, keep_by="variance")
        _check_against_reference(acts, metric, dtype, keep=3, keep_by="variance")


@pytest.mark.parametrize("case", ["n-200", "n-equals-d-plus-1"])
def test_torch_path_ill_conditioned_correlations(rng, dtype, case):
    x, y, _ = _ill_conditioned_cases(rng, dtype)[case]
    for a, b in ((x, y), (y, x)):
        got = gpu.correlations(torch.from_numpy(a), torch.from_numpy(b))
        want = ref.cca(a, b).correlations
        assert got.shape == want.shape
        assert_allclose(got.numpy(), want, **tol(dtype))


def test_torch_path_projection_rejects_dependent_directions(rng):
    """A model whose projected block is not positive definite: RuntimeError naming it, as on the
    CPU (csrc/cpu/projected_pairs.cpp)."""
    tensors = _tensors(latent_activations(rng, 50, [4, 3]))
    joint = gpu._joint(tensors, ["x", "y"], False, False)
    fac = gpu._factor(joint, 1e-10, 1.0, 0)
    bases = [fac.basis[0], torch.cat([fac.basis[1], fac.basis[1][:, :1]], dim=1)]  # a repeated column
    with pytest.raises(RuntimeError, match=r"^y: projected directions are not numerically independent"):
        gpu._project(tensors, ["x", "y"], joint, bases, loadings=False)


def test_torch_path_rtol_changes_the_rank(rng):
    x, y = latent_activations(rng, 100, [6, 5])
    x = np.hstack([x, x[:, :1] + 1e-4 * rng.standard_normal((100, 1))])  # a tiny extra direction
    for rtol in (1e-10, 1e-6):
        got = gpu.correlations(torch.from_numpy(x), torch.from_numpy(y), rtol=rtol)
        want = ref.cca(x, y, rtol=rtol).correlations
        assert got.shape == want.shape
        assert_allclose(got.numpy(), want, **tol(np.float64))


def test_torch_path_half_precision_is_upcast(rng):
    x, y = latent_activations(rng, 60, [4, 6], dtype=np.float32)
    tx = torch.from_numpy(x).half()
    got = gpu.pair_metrics([tx, torch.from_numpy(y)], ["x", "y"], [0], [1], ["cka"])["cka"]
    assert float(got[0]) == pytest.approx(ref.cka(tx.double().numpy(), y), rel=1e-9)


def test_torch_path_large_n_uses_several_row_chunks(rng, monkeypatch):
    monkeypatch.setattr(gpu, "_CHUNK_BYTES", 8 * 30 * 64)  # 64-row chunks of 30 columns
    acts = latent_activations(rng, 301, [10, 12, 8])
    for metric in ("svcca", "pwcca", "cka_debiased"):
        _check_against_reference(acts, metric, np.float64)


@pytest.mark.parametrize("metric", ["cka", "cka_debiased"])
def test_torch_path_cka_sample_space_route(rng, dtype, metric, monkeypatch):
    """Wide layers, few samples (M n^2 < D^2): CKA through n x n sample Grams, as on the host."""
    acts = latent_activations(rng, 12, [40, 55, 30], dtype=dtype)
    assert gpu._use_sample_space([metric], 12, [40, 55, 30])
    got = _check_against_reference(acts, metric, dtype)
    monkeypatch.setattr(gpu, "_CHUNK_BYTES", 8 * 12 * 7)  # 7-column chunks of each model
    assert_allclose(_gpu_matrix(_tensors(acts), metric), got, rtol=1e-12, atol=1e-14)
    # the feature-space route on the same data agrees
    monkeypatch.setattr(gpu, "_use_sample_space", lambda *args: False)
    assert_allclose(_gpu_matrix(_tensors(acts), metric), got, rtol=1e-10, atol=1e-12)


def test_torch_path_zero_variance_on_every_route(rng):
    x = rng.standard_normal((10, 30))
    const = np.full((10, 30), 0.1)
    with pytest.raises(ValueError, match=r"b has no variance"):
        gpu.pair_metrics(_tensors([x, const]), ["a", "b"], [0], [1], ["cka"])  # sample route
    with pytest.raises(ValueError, match=r"b has no variance"):
        gpu.pair_metrics(_tensors([x[:, :3], const[:, :3]]), ["a", "b"], [0], [1], ["cka"])


# -- rejected inputs: ValueError / TypeError naming the argument -------------------------------


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_torch_path_rejects_non_finite(rng, bad):
    x, y = latent_activations(rng, 30, [4, 3])
    y[7, 1] = bad
    with pytest.raises(ValueError, match=r"acts\[1\] contains NaN or infinity"):
        gpu.pair_metrics(_tensors([x, y]), ["acts[0]", "acts[1]"], [0], [1], ["cka"])
    with pytest.raises(ValueError, match=r"\by\b.*NaN"):
        gpu.correlations(torch.from_numpy(x), torch.from_numpy(y))


def test_torch_path_rejects_constant_input(rng):
    x = latent_activations(rng, 30, [4])[0]
    c = np.full((30, 3), 2.5)
    with pytest.raises(ValueError, match=r"\bmodel_b\b.*no variance"):
        gpu.pair_metrics(_tensors([x, c]), ["model_a", "model_b"], [0], [1], ["svcca"])


def test_torch_path_rejects_bad_dtypes_and_shapes(rng):
    x, y = _tensors(latent_activations(rng, 30, [4, 3]))
    with pytest.raises(TypeError, match=r"\by\b.*int32"):
        gpu.pair_metrics([x, y.to(torch.int32)], ["x", "y"], [0], [1], ["cka"])
    with pytest.raises(TypeError, match=r"\bx\b.*bool"):
        gpu.correlations(x > 0, y)
    with pytest.raises(TypeError, match=r"\bx\b"):
        gpu.pair_metrics([x.numpy(), y], ["x", "y"], [0], [1], ["cka"])
    with pytest.raises(ValueError, match=r"\by\b.*29 samples"):
        gpu.pair_metrics([x, y[1:]], ["x", "y"], [0], [1], ["cka"])
    with pytest.raises(ValueError, match=r"\by\b.*2-D"):
        gpu.pair_metrics([x, y[None]], ["x", "y"], [0], [1], ["cka"])
    with pytest.raises(ValueError, match=r"\by\b.*empty"):
        gpu.pair_metrics([x, y[:, :0]], ["x", "y"], [0], [1], ["cka"])
    with pytest.raises(ValueError, match="unknown metric"):
        gpu.pair_metrics([x, y], ["x", "y"], [0], [1], ["cosine"])
    with pytest.raises(ValueError, match="second"):
        gpu.pair_metrics([x, y], ["x", "y"], [0], [2], ["cka"])
    with pytest.raises(ValueError, match="4 samples"):
        gpu.pair_metrics([x[:3], y[:3]], ["x", "y"], [0], [1], ["cka_debiased"])


def test_gpu_module_needs_torch(monkeypatch):
    """Without torch the GPU path raises an ImportError that says what is missing."""
    monkeypatch.delitem(sys.modules, "mmkern._gpu.similarity")
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now raises ImportError
    with pytest.raises(ImportError, match="needs PyTorch"):
        importlib.import_module("mmkern._gpu.similarity")


def test_to_numpy_and_as_kind():
    a = np.arange(6.0).reshape(2, 3)
    t = gpu.as_kind(a, mmkern._backend.Kind("torch", "cpu"))
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float64
    assert_allclose(gpu.to_numpy(t), a, rtol=0)
    assert_allclose(gpu.to_numpy(a.T), a.T, rtol=0)


# -- the kernel wiring, on the host ------------------------------------------------------------


def _host_view(ptr, shape, strides, dtype):
    """A NumPy view of host memory at ``ptr`` with element ``strides`` (non-negative)."""
    dtype = np.dtype(dtype)
    extent = 1 + sum((s - 1) * st for s, st in zip(shape, strides)) if all(shape) else 0
    buf = (ctypes.c_char * (max(extent, 1) * dtype.itemsize)).from_address(ptr)
    base = np.frombuffer(buf, dtype=dtype)
    return np.lib.stride_tricks.as_strided(base, shape, [st * dtype.itemsize for st in strides])


class _HostKernels:
    """The contract of csrc/cuda/kernels.h implemented in NumPy on host pointers: stands in for
    mmkern._C_cuda to check what the torch code passes (pointers, layouts, counts)."""

    def __init__(self):
        self.calls = []

    def pack_rows(self, views, row_begin, rows, shift, out, ld, stream):
        self.calls.append("pack_rows")
        assert ld >= rows and stream == 0
        widths = [v[2] for v in views]
        d = sum(widths)
        shift_a = _host_view(shift, (d,), (1,), np.float64)
        out_a = _host_view(out, (d, ld), (ld, 1), np.float64)  # column-major rows x D
        off = 0
        for ptr, nrows, cols, rs, cs, code in views:
            assert nrows >= row_begin + rows and code in (0, 1)
            src = _host_view(ptr, (nrows, cols), (rs, cs), np.float32 if code == 0 else np.float64)
            block = src[row_begin : row_begin + rows].astype(np.float64) - shift_a[off : off + cols]
            out_a[off : off + cols, :rows] = block.T
            off += cols

    def pair_summaries(self, npairs, kmax, rho, count, weights, mean, r2, weighted, stream):
        self.calls.append("pair_summaries")
        rho_a = _host_view(rho, (npairs, kmax), (kmax, 1), np.float64)
        cnt = _host_view(count, (npairs,), (1,), np.int64)
        for p in range(npairs):
            c = np.clip(rho_a[p, : cnt[p]], 0.0, 1.0)
            if mean:
                _host_view(mean, (npairs,), (1,), np.float64)[p] = c.mean()
            if r2:
                _host_view(r2, (npairs,), (1,), np.float64)[p] = (c * c).mean()
            if weighted:
                w = _host_view(weights, (npairs, kmax), (kmax, 1), np.float64)[p, : cnt[p]]
                _host_view(weighted, (npairs,), (1,), np.float64)[p] = (w * c).sum() / w.sum()

    def cka_from_norms(self, npairs, models, n, first, second, cross_fro2, self_fro2, trace,
                       norm_products, cka, cka_debiased, stream):
        self.calls.append("cka_from_norms")
        def f64(ptr, shape):  # C-ordered float64
            return _host_view(ptr, shape, (shape[1], 1) if len(shape) == 2 else (1,), np.float64)

        fi = _host_view(first, (npairs,), (1,), np.int64)
        se = _host_view(second, (npairs,), (1,), np.int64)
        cross, sf = f64(cross_fro2, (npairs,)), f64(self_fro2, (models,))

        def ratio(a, b, c):
            return 0.0 if not (b > 0 and c > 0) else float(np.clip(a / np.sqrt(b * c), -1, 1))

        for p in range(npairs):
            i, j = fi[p], se[p]
            if cka:
                f64(cka, (npairs,))[p] = ratio(cross[p], sf[i], sf[j])
            if cka_debiased:
                tr, npr = f64(trace, (models,)), f64(norm_products, (models, models))
                h = lambda c, q, a, b: c - n / (n - 2) * q + a * b / ((n - 1) * (n - 2))
                f64(cka_debiased, (npairs,))[p] = ratio(
                    h(cross[p], npr[i, j], tr[i], tr[j]), h(sf[i], npr[i, i], tr[i], tr[i]),
                    h(sf[j], npr[j, j], tr[j], tr[j]))


def test_kernel_wiring_on_host(rng, monkeypatch):
    kernels = _HostKernels()
    monkeypatch.setattr(gpu, "_kernels_for", lambda device: kernels)
    monkeypatch.setattr(gpu, "_cuda_launch", lambda device: contextlib.nullcontext(0))
    x, y, z = latent_activations(rng, 70, [5, 8, 3])
    # mixed dtypes and layouts: float32 Fortran order, a sliced view, a transposed torch view
    tensors = [torch.from_numpy(with_layout(x.astype(np.float32), "F")),
               torch.from_numpy(with_layout(y, "sliced")),
               torch.from_numpy(np.ascontiguousarray(z.T)).T]
    acts = [x.astype(np.float32).astype(np.float64), y, z]
    first, second = _all_pairs(3)
    got = gpu.pair_metrics(tensors, ["x", "y", "z"], first, second, list(METRICS), keep=0.9)
    assert set(kernels.calls) == {"pack_rows", "pair_summaries", "cka_from_norms"}
    wants = {
        "svcca": ref.pairwise_svcca(acts, 0.9), "cca_mean": ref.pairwise_cca(acts),
        "cca_r2": ref.pairwise_cca(acts, statistic="r2"), "pwcca": ref.pairwise_pwcca(acts),
        "cka": ref.pairwise_cka(acts), "cka_debiased": ref.pairwise_cka(acts, debiased=True),
    }
    for metric, want in wants.items():
        assert_allclose(got[metric].numpy().reshape(3, 3), want, err_msg=metric, **tol(np.float64))
    # the sample-space CKA route (column slices of strided inputs through pack_rows)
    kernels.calls.clear()
    wide = [torch.from_numpy(with_layout(a, "sliced")) for a in latent_activations(rng, 9, [30, 41])]
    got = gpu.pair_metrics(wide, ["a", "b"], [0, 0, 1], [0, 1, 1], ["cka", "cka_debiased"])
    assert set(kernels.calls) == {"pack_rows", "cka_from_norms"}
    host = [w.numpy() for w in wide]
    assert_allclose(got["cka"].numpy(), ref.pairwise_cka(host)[[0, 0, 1], [0, 1, 1]], **tol(np.float64))
    assert_allclose(got["cka_debiased"].numpy(), ref.pairwise_cka(host, debiased=True)[[0, 0, 1], [0, 1, 1]],
                    **tol(np.float64))


# ---------------------------------------------------------------------------------------------
# (b) real CUDA tensors through the public API
# ---------------------------------------------------------------------------------------------

PUBLIC_CALLS = {
    "svcca": lambda m, x, y, z: m.svcca(x, y),
    "svcca-sv-int": lambda m, x, y, z: m.svcca(x, y, 2),
    "pwcca": lambda m, x, y, z: m.pwcca(x, y),
    "cka": lambda m, x, y, z: m.cka(x, y),
    "cka-debiased": lambda m, x, y, z: m.cka(x, y, debiased=True),
    "cca-mean": lambda m, x, y, z: m.cca(x, y).mean,
    "cca-r2": lambda m, x, y, z: m.cca(x, y).r2,
    "cca-correlations": lambda m, x, y, z: m.cca(x, y).correlations,
    "batched-svcca": lambda m, x, y, z: m.svcca(_stack(x, z), _stack(y, y)),
    "pairwise-svcca": lambda m, x, y, z: m.pairwise_svcca([x, y, z], 0.9),
    "pairwise-cca-r2": lambda m, x, y, z: m.pairwise_cca([x, y, z], statistic="r2"),
    "pairwise-pwcca": lambda m, x, y, z: m.pairwise_pwcca([x, y, z]),
    "pairwise-cka": lambda m, x, y, z: m.pairwise_cka([x, y, z]),
    "pairwise-cka-debiased": lambda m, x, y, z: m.pairwise_cka([x, y, z], debiased=True),
    "cross-svcca": lambda m, x, y, z: m.cross_svcca([x], [y, z]),
    "cross-cka": lambda m, x, y, z: m.cross_cka([x, z], [y]),
}


def _stack(a, b):
    return torch.stack([a, b]) if isinstance(a, torch.Tensor) else np.stack([a, b])


def _host(v):
    return v.cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)


@needs_cuda
@pytest.mark.cuda
@pytest.mark.parametrize("call", list(PUBLIC_CALLS))
def test_cuda_public_api_matches_cpu(rng, dtype, call):
    x, y, z = latent_activations(rng, 150, [6, 9, 6], dtype=dtype)
    # a transposed (column-major) view of z: the pack kernel's other read orientation
    cx, cy = torch.from_numpy(x).cuda(), torch.from_numpy(y).cuda()
    cz = torch.from_numpy(np.ascontiguousarray(z.T)).cuda().T
    got = PUBLIC_CALLS[call](mmkern, cx, cy, cz)
    want = PUBLIC_CALLS[call](mmkern, x, y, z)
    if isinstance(want, np.ndarray):
        assert isinstance(got, torch.Tensor) and got.is_cuda and got.dtype == torch.float64
    else:
        assert isinstance(got, float)
    assert_allclose(_host(got), want, **CUDA_VS_CPU[dtype])


@needs_cuda
@pytest.mark.cuda
@pytest.mark.parametrize("debiased", [False, True])
def test_cuda_cka_sample_space_route_matches_cpu(rng, dtype, debiased):
    acts = latent_activations(rng, 12, [40, 55, 30], dtype=dtype)  # M n^2 < D^2
    got = mmkern.pairwise_cka([torch.from_numpy(a).cuda() for a in acts], debiased=debiased)
    assert isinstance(got, torch.Tensor) and got.is_cuda
    assert_allclose(got.cpu().numpy(), mmkern.pairwise_cka(acts, debiased=debiased), **CUDA_VS_CPU[dtype])


@needs_cuda
@pytest.mark.cuda
def test_cuda_torch_path_without_kernels_matches(rng, monkeypatch):
    """The torch expressions on CUDA tensors agree with the _C_cuda kernels' results."""
    acts = latent_activations(rng, 100, [5, 7, 4])
    tensors = _tensors(acts, "cuda")
    first, second = _all_pairs(3)
    with_kernels = gpu.pair_metrics(tensors, ["a", "b", "c"], first, second, list(METRICS))
    monkeypatch.setattr(gpu, "_kernels_for", lambda device: None)
    without = gpu.pair_metrics(tensors, ["a", "b", "c"], first, second, list(METRICS))
    for metric in METRICS:
        assert_allclose(with_kernels[metric].cpu().numpy(), without[metric].cpu().numpy(),
                        rtol=1e-12, atol=1e-14, err_msg=metric)


@needs_cuda
@pytest.mark.cuda
def test_cuda_rejects_non_finite_and_mixed_devices(rng):
    x, y = latent_activations(rng, 30, [4, 3])
    y[3, 0] = np.nan
    with pytest.raises(ValueError, match=r"\by\b"):
        mmkern.svcca(torch.from_numpy(x).cuda(), torch.from_numpy(y).cuda())
    with pytest.raises(ValueError, match=r"\by\b"):
        mmkern.cka(torch.from_numpy(x).cuda(), torch.from_numpy(x))


@needs_cuda
@pytest.mark.cuda
def test_cupy_inputs_return_cupy(rng):
    cupy = pytest.importorskip("cupy")
    x, y, z = latent_activations(rng, 80, [5, 6, 4])
    cx, cy, cz = (cupy.asarray(a) for a in (x, y, z))
    assert mmkern.svcca(cx, cy) == pytest.approx(mmkern.svcca(x, y), rel=1e-9)
    result = mmkern.cca(cx, cy)
    assert isinstance(result.correlations, cupy.ndarray)
    pw = mmkern.pairwise_pwcca([cx, cy, cz])
    assert isinstance(pw, cupy.ndarray)
    assert_allclose(cupy.asnumpy(pw), mmkern.pairwise_pwcca([x, y, z]), rtol=1e-9)


# ---------------------------------------------------------------------------------------------
# (c) the CUDA module itself (built whenever nvcc was found; runs without a GPU)
# ---------------------------------------------------------------------------------------------


def _cuda_module():
    return pytest.importorskip("mmkern._C_cuda", reason="mmkern._C_cuda was not built")


def test_cuda_module_build_info():
    module = _cuda_module()
    info = module.build_info()
    assert isinstance(info["cuda_version"], int) and info["cuda_version"] >= 11000
    assert isinstance(info["device_count"], int) and info["device_count"] >= 0
    assert info["version"] in (mmkern.__version__, "")
    if CUDA:
        assert info["device_count"] == torch.cuda.device_count()
    config = mmkern._config.config()
    assert config["cuda_module"] is True and config["cuda"]["cuda_version"] == info["cuda_version"]
    out = io.StringIO()
    mmkern.show_config(file=out)
    assert "CUDA module:  built" in out.getvalue()


def test_cuda_module_rejects_bad_arguments_before_launching():
    module = _cuda_module()
    with pytest.raises(ValueError, match="ld"):
        module.pack_rows([(0, 10, 3, 3, 1, 1)], 0, 10, 0, 0, 5)
    with pytest.raises(ValueError, match="dtype"):
        module.pack_rows([(0, 10, 3, 3, 1, 7)], 0, 10, 0, 0, 10)
    with pytest.raises(ValueError, match="rows"):
        module.pack_rows([(0, 10, 3, 3, 1, 0)], 5, 10, 0, 0, 10)
    with pytest.raises(ValueError, match="weights"):
        module.pair_summaries(4, 2, 0, 0, weighted=16)
    with pytest.raises(ValueError, match="norm_products"):
        module.cka_from_norms(4, 2, 10.0, 0, 0, 0, 0, cka_debiased=16)
    # nothing to do: returns without touching the device
    module.pack_rows([(16, 10, 3, 3, 1, 1)], 0, 0, 0, 0, 0)
    module.pair_summaries(0, 3, 0, 0, mean=16)
    module.cka_from_norms(0, 2, 10.0, 0, 0, 0, 0, cka=16)
