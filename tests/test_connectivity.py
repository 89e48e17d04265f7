"""Tests of the connectivity API, run against both :mod:`mmkern.connectivity` (the fast path)
and :mod:`mmkern.reference.connectivity` (the plain loop), and of the fast path against the
reference: same curves to 1e-5 on MLPs and CNNs with BatchNorm, LayerNorm/GroupNorm, Dropout,
with and without biases."""

from __future__ import annotations

import copy
import math
import re

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

import mmkern.connectivity as fast  # noqa: E402
import mmkern.reference.connectivity as conn  # noqa: E402
from _connectivity_cases import (  # noqa: E402
    LOSS_RTOL,
    MODELS,
    barriers_by_definition,
    entries,
    own_metrics,
)
from _models import (  # noqa: E402
    assert_unchanged,
    classification_data,
    cnn_batchnorm,
    image_data,
    mlp,
    mlp_batchnorm_dropout,
    snapshot,
)


# ------------------------------------------------------------------------------------ interpolate


def test_interpolate_endpoints_midpoint_and_integer_buffers(impl, setup):
    model_a, model_b, _, _ = setup
    ea, eb = entries(model_a), entries(model_b)
    for alpha, expected in ((0.0, ea), (1, eb), (np.float64(0.0), ea), (torch.tensor(1.0), eb)):
        got = entries(impl.interpolate(model_a, model_b, alpha))
        for name, tensor in got.items():
            if tensor.is_floating_point():
                assert torch.equal(tensor, expected[name]), (alpha, name)
            else:  # integer buffers always come from model_a
                assert torch.equal(tensor, ea[name]), (alpha, name)
    mid = entries(impl.interpolate(model_a, model_b, 0.5))
    for name, tensor in mid.items():
        if tensor.is_floating_point():
            assert torch.equal(tensor, ((ea[name].double() + eb[name].double()) / 2).float())
            torch.testing.assert_close(tensor, (ea[name] + eb[name]) / 2, rtol=1e-6, atol=1e-7)


def test_interpolate_integer_buffers_from_a_and_extrapolation(impl):
    model_a, model_b = cnn_batchnorm(1), cnn_batchnorm(2)
    with torch.no_grad():
        model_b[1].num_batches_tracked.fill_(99)
    for alpha in (0.0, 0.3, 1.0, -0.5, 1.5):
        model = impl.interpolate(model_a, model_b, alpha)
        assert model[1].num_batches_tracked.item() == 7
        assert model[1].num_batches_tracked.dtype == torch.long
        expected = (1 - alpha) * model_a[0].weight.double() + alpha * model_b[0].weight.double()
        assert torch.equal(model[0].weight, expected.float())
        torch.testing.assert_close(
            model[1].running_var,
            ((1 - alpha) * model_a[1].running_var.double()
             + alpha * model_b[1].running_var.double()).float(),
        )


def test_interpolate_returns_a_new_model_and_keeps_inputs(impl, setup):
    model_a, model_b, _, _ = setup
    model_a.train()
    model_b.eval()
    before_a, before_b = snapshot(model_a), snapshot(model_b)
    model = impl.interpolate(model_a, model_b, 0.25)
    assert model is not model_a and model.training  # a deep copy of A, A's mode
    for tensor in entries(model).values():
        assert all(tensor is not t for t in entries(model_a).values())
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    assert_unchanged(model_a, before_a)
    assert_unchanged(model_b, before_b)


def test_interpolate_architecture_mismatch_names_first_difference(impl):
    with pytest.raises(ValueError, match=r"model_b has no entry '0\.bias'"):
        impl.interpolate(mlp(1), mlp(2, bias=False), 0.5)
    with pytest.raises(ValueError, match=r"model_a has no entry '0\.bias'"):
        impl.interpolate(mlp(1, bias=False), mlp(2), 0.5)
    with pytest.raises(ValueError, match=re.escape(
            "'0.weight' has shape (16, 8) in model_a but (32, 8) in model_b")):
        impl.interpolate(mlp(1), mlp(2, hidden=32), 0.5)
    with pytest.raises(ValueError, match=re.escape(
            "'0.weight' has shape (4, 3, 3, 3) in model_a but (5, 3, 3, 3) in model_b")):
        impl.interpolate(cnn_batchnorm(1), cnn_batchnorm(2, channels=5), 0.5)
    with pytest.raises(ValueError, match="dtype torch.float32 in model_a but torch.float64"):
        impl.interpolate(mlp(1), mlp(2).double(), 0.5)
    with pytest.raises(ValueError, match="has no entry"):
        impl.interpolation_curve(mlp(1), mlp(2, bias=False), classification_data(10, 0))
    with pytest.raises(TypeError, match="model_b"):
        impl.interpolate(mlp(1), "model", 0.5)


@pytest.mark.parametrize("alpha, error", [
    (float("nan"), ValueError), (float("inf"), ValueError), (-math.inf, ValueError),
    ("0.5", TypeError), (True, TypeError), (None, TypeError), (1 + 2j, TypeError),
])
def test_interpolate_alpha_validation(impl, alpha, error):
    with pytest.raises(error, match="alpha"):
        impl.interpolate(mlp(1), mlp(2), alpha)


def test_curve_endpoints_reproduce_each_models_own_metrics(impl, setup):
    model_a, model_b, data, bn_data = setup
    curve = impl.interpolation_curve(model_a, model_b, data, alphas=[0.0, 0.5, 1.0],
                                     bn_data=bn_data, batch_size=32)
    for k, model in ((0, model_a), (2, model_b)):
        loss, accuracy = own_metrics(model, data, bn_data, batch_size=32)
        assert curve.loss[k] == pytest.approx(loss, rel=LOSS_RTOL)
        assert curve.accuracy[k] == accuracy
    mid_loss, mid_accuracy = own_metrics(impl.interpolate(model_a, model_b, 0.5), data,
                                         bn_data, batch_size=32)
    assert curve.loss[1] == pytest.approx(mid_loss, rel=LOSS_RTOL)
    assert curve.accuracy[1] == mid_accuracy


def test_curve_fields_and_barriers_follow_the_definitions(impl, setup):
    model_a, model_b, data, bn_data = setup
    before_a, before_b = snapshot(model_a), snapshot(model_b)
    curve = impl.interpolation_curve(model_a, model_b, data, alphas=5, bn_data=bn_data)
    assert_unchanged(model_a, before_a)
    assert_unchanged(model_b, before_b)
    assert isinstance(curve, conn.InterpolationCurve)
    np.testing.assert_array_equal(curve.alphas, np.linspace(0, 1, 5))
    for field in (curve.alphas, curve.loss, curve.accuracy):
        assert field.dtype == np.float64 and field.shape == (5,)
    assert np.all(np.isfinite(curve.loss))
    assert np.all((0 <= curve.accuracy) & (curve.accuracy <= 1))
    chord, mean = barriers_by_definition(curve.alphas, curve.loss)
    assert curve.loss_barrier == pytest.approx(chord, abs=1e-15)
    assert curve.loss_barrier_mean == pytest.approx(mean, abs=1e-15)
    chord, mean = barriers_by_definition(curve.alphas, 1 - curve.accuracy)
    assert curve.error_barrier == pytest.approx(chord, abs=1e-15)
    assert curve.error_barrier_mean == pytest.approx(mean, abs=1e-15)
    assert curve.loss_barrier >= 0 and curve.error_barrier >= 0  # the endpoints give exactly 0
    for barrier in (curve.loss_barrier, curve.error_barrier):
        assert isinstance(barrier, float)


def test_curve_unsorted_extrapolated_alphas_and_missing_endpoints(impl):
    model_a, model_b, data = mlp(1), mlp(2), classification_data(40, 3)
    alphas = [1.0, -0.25, 0.5, 0.0, 1.25]
    curve = impl.interpolation_curve(model_a, model_b, data, alphas=np.array(alphas))
    np.testing.assert_array_equal(curve.alphas, alphas)
    chord, mean = barriers_by_definition(curve.alphas, curve.loss)
    assert curve.loss_barrier == pytest.approx(chord)
    assert curve.loss_barrier_mean == pytest.approx(mean)
    single = impl.interpolation_curve(model_a, model_b, data, alphas=[-0.25])
    assert single.loss[0] == curve.loss[1]
    partial = impl.interpolation_curve(model_a, model_b, data, alphas=torch.tensor([0.0, 0.5]))
    assert partial.loss_barrier is None and partial.loss_barrier_mean is None
    assert partial.error_barrier is None and partial.error_barrier_mean is None


def test_curve_dataloader_equals_tensor_pair(impl):
    model_a, model_b = cnn_batchnorm(1), cnn_batchnorm(2)
    (x, y), (bx, by) = image_data(50, 1), image_data(40, 2)
    pair = impl.interpolation_curve(model_a, model_b, (x, y), alphas=3, bn_data=(bx, by),
                                    batch_size=16)
    loader = impl.interpolation_curve(
        model_a, model_b, DataLoader(TensorDataset(x, y), batch_size=16), alphas=3,
        bn_data=DataLoader(TensorDataset(bx, by), batch_size=16))
    np.testing.assert_array_equal(pair.loss, loader.loss)
    np.testing.assert_array_equal(pair.accuracy, loader.accuracy)


def test_curve_is_deterministic_with_dropout(impl):
    model_a, model_b = mlp_batchnorm_dropout(1), mlp_batchnorm_dropout(2)
    data, bn_data = classification_data(40, 1), classification_data(40, 2)
    torch.manual_seed(0)
    first = impl.interpolation_curve(model_a, model_b, data, alphas=3, bn_data=bn_data)
    torch.manual_seed(123)
    second = impl.interpolation_curve(model_a, model_b, data, alphas=3, bn_data=bn_data)
    np.testing.assert_array_equal(first.loss, second.loss)


def test_curve_custom_loss_fn(impl):
    model_a, model_b, data = mlp(1), mlp(2), classification_data(30, 1)
    base = impl.interpolation_curve(model_a, model_b, data, alphas=3)
    doubled = impl.interpolation_curve(
        model_a, model_b, data, alphas=3,
        loss_fn=lambda logits, y: 2 * F.cross_entropy(logits.double(), y, reduction="none"))
    np.testing.assert_allclose(doubled.loss, 2 * base.loss, rtol=1e-15)
    np.testing.assert_array_equal(doubled.accuracy, base.accuracy)
    with pytest.raises(ValueError, match="loss_fn"):
        impl.interpolation_curve(model_a, model_b, data, alphas=3,
                                 loss_fn=lambda logits, y: F.cross_entropy(logits, y))


def test_curve_input_errors(impl):
    model_a, model_b = mlp(1), mlp(2)
    x, y = classification_data(20, 1)
    bn_a, bn_b = cnn_batchnorm(1), cnn_batchnorm(2)
    with pytest.raises(ValueError, match="bn_data"):
        impl.interpolation_curve(bn_a, bn_b, image_data(10, 0))
    with pytest.raises(ValueError, match="bn_data is empty"):
        impl.interpolation_curve(bn_a, bn_b, image_data(10, 0), bn_data=image_data(0, 1))
    with pytest.raises(ValueError, match="data is empty"):
        impl.interpolation_curve(model_a, model_b, (x[:0], y[:0]))
    with pytest.raises(ValueError, match="data is empty"):
        impl.interpolation_curve(model_a, model_b, DataLoader(TensorDataset(x[:0], y[:0])))
    with pytest.raises(ValueError, match="empty dict"):
        impl.interpolation_curve(model_a, model_b, {})
    with pytest.raises(ValueError, match=r"data\['b'\] is empty"):
        impl.interpolation_curve(model_a, model_b, {"a": (x, y), "b": (x[:0], y[:0])})
    with pytest.raises(TypeError, match="data"):
        impl.interpolation_curve(model_a, model_b, x)
    with pytest.raises(TypeError, match="labels"):
        impl.interpolation_curve(model_a, model_b, (x, y.float()))
    with pytest.raises(ValueError, match="y must have shape"):
        impl.interpolation_curve(model_a, model_b, (x, y[:-1]))
    for alphas in (1, 0, -3, [], [[0.0, 1.0]], [0.0, float("nan")], [0.0, float("inf"), 1.0]):
        with pytest.raises(ValueError, match="alphas"):
            impl.interpolation_curve(model_a, model_b, (x, y), alphas=alphas)
    for alphas in (True, "abc", [0.0, "x"]):
        with pytest.raises(TypeError, match="alphas"):
            impl.interpolation_curve(model_a, model_b, (x, y), alphas=alphas)
    with pytest.raises(ValueError, match="batch_size"):
        impl.interpolation_curve(model_a, model_b, (x, y), batch_size=0)


def test_pairwise_barriers_symmetric_zero_diagonal_and_match_curves(impl):
    models = [cnn_batchnorm(seed) for seed in (1, 2, 3)]
    before = [snapshot(m) for m in models]
    data, bn_data = image_data(30, 1), image_data(30, 2)
    result = impl.pairwise_barriers(models, data, alphas=3, bn_data=bn_data)
    for model, snap in zip(models, before):
        assert_unchanged(model, snap)
    assert isinstance(result, conn.PairwiseBarriers)
    fields = ("loss_barrier", "loss_barrier_mean", "error_barrier", "error_barrier_mean")
    for field in fields:
        matrix = getattr(result, field)
        assert matrix.dtype == np.float64 and matrix.shape == (3, 3)
        np.testing.assert_array_equal(matrix, matrix.T)
        np.testing.assert_array_equal(np.diag(matrix), 0.0)
    curve = impl.interpolation_curve(models[0], models[2], data, alphas=3, bn_data=bn_data)
    for field in fields:
        assert getattr(result, field)[0, 2] == getattr(curve, field)
    several = impl.pairwise_barriers(models[:2], {"a": data, "b": image_data(20, 5)},
                                     alphas=3, bn_data=bn_data)
    assert list(several) == ["a", "b"]
    np.testing.assert_array_equal(several["a"].loss_barrier, result.loss_barrier[:2, :2])


def test_pairwise_barriers_input_errors(impl):
    data = classification_data(10, 1)
    with pytest.raises(ValueError, match="at least 2"):
        impl.pairwise_barriers([mlp(1)], data)
    with pytest.raises(TypeError, match="models"):
        impl.pairwise_barriers(mlp(1), data)
    with pytest.raises(ValueError, match=r"models\[0\] and models\[2\] differ"):
        impl.pairwise_barriers([mlp(1), mlp(2), mlp(3, bias=False)], data)
    with pytest.raises(ValueError, match="both 0 and 1"):
        impl.pairwise_barriers([mlp(1), mlp(2)], data, alphas=[0.0, 0.5])




# ------------------------------------------------------------------- fast path against reference


def test_conftest_case_names_match_the_models():
    from conftest import CONNECTIVITY_CASES

    assert sorted(CONNECTIVITY_CASES) == sorted(MODELS)


def assert_same_curve(got, want, rtol=LOSS_RTOL):
    np.testing.assert_array_equal(got.alphas, want.alphas)
    np.testing.assert_allclose(got.loss, want.loss, rtol=rtol, atol=rtol)
    np.testing.assert_array_equal(got.accuracy, want.accuracy)
    for field in ("loss_barrier", "loss_barrier_mean", "error_barrier", "error_barrier_mean"):
        if getattr(want, field) is None:
            assert getattr(got, field) is None
        else:
            assert getattr(got, field) == pytest.approx(getattr(want, field), rel=rtol, abs=rtol)


@pytest.mark.parametrize("alphas", [5, [1.0, -0.5, 0.25, 0.0, 1.5]], ids=["grid", "unsorted"])
def test_fast_curve_matches_reference(setup, alphas):
    model_a, model_b, data, bn_data = setup
    sets = {"iid": data, "other": (data[0][:23] * 1.5, data[1][:23])}
    kwargs = dict(alphas=alphas, bn_data=bn_data, batch_size=16)
    want = conn.interpolation_curve(model_a, model_b, sets, **kwargs)
    got = fast.interpolation_curve(model_a, model_b, sets, eval_batch_size=7, **kwargs)
    assert list(got) == ["iid", "other"]
    for key in sets:
        assert_same_curve(got[key], want[key])


@pytest.mark.parametrize("budget", [1, 10**9], ids=["one-alpha-per-chunk", "one-chunk"])
def test_fast_curve_chunking_and_bn_passes(monkeypatch, budget):
    from mmkern.connectivity._engine import CurveEngine

    model_a, model_b = cnn_batchnorm(1), cnn_batchnorm(2)
    data, bn_data = image_data(40, 1), image_data(30, 2)
    passes = []
    original = CurveEngine._estimate_batchnorm
    monkeypatch.setattr(CurveEngine, "_estimate_batchnorm",
                        lambda self, models: passes.append(len(models)) or original(self, models))
    got = fast.interpolation_curve(model_a, model_b, {"a": data, "b": data}, alphas=6,
                                   bn_data=bn_data, batch_size=8, memory_budget=budget)
    want = conn.interpolation_curve(model_a, model_b, data, alphas=6, bn_data=bn_data,
                                    batch_size=8)
    # one BatchNorm pass per chunk of alphas, shared by both evaluation sets
    assert passes == ([1] * 6 if budget == 1 else [6])
    assert_same_curve(got["a"], want)
    np.testing.assert_array_equal(got["a"].loss, got["b"].loss)


def test_fast_curve_float64_models_agree_to_rounding():
    model_a, model_b = cnn_batchnorm(1).double(), cnn_batchnorm(2).double()
    (x, y), (bx, by) = image_data(50, 1), image_data(40, 2)
    data, bn_data = (x.double(), y), (bx.double(), by)
    want = conn.interpolation_curve(model_a, model_b, data, alphas=7, bn_data=bn_data)
    got = fast.interpolation_curve(model_a, model_b, data, alphas=7, bn_data=bn_data)
    assert_same_curve(got, want, rtol=1e-12)


def test_fast_curve_dataloaders_match_reference():
    model_a, model_b = cnn_batchnorm(1), cnn_batchnorm(2)
    (x, y), (bx, by) = image_data(50, 1), image_data(40, 2)
    loaders = (DataLoader(TensorDataset(x, y), batch_size=16),
               DataLoader(TensorDataset(bx, by), batch_size=16))
    want = conn.interpolation_curve(model_a, model_b, (x, y), alphas=4, bn_data=(bx, by),
                                    batch_size=16)
    got = fast.interpolation_curve(model_a, model_b, loaders[0], alphas=4, bn_data=loaders[1])
    assert_same_curve(got, want)


class ViewFlatten(nn.Module):
    """A CNN that flattens with ``.view``, which a channels-last activation cannot take."""

    def __init__(self, seed):
        super().__init__()
        self.body = cnn_batchnorm(seed)[:3]
        self.head = cnn_batchnorm(seed)[4]

    def forward(self, x):
        h = self.body(x)
        return self.head(h.view(h.shape[0], -1))


def test_fast_curve_model_that_cannot_take_channels_last():
    from mmkern.connectivity._engine import CurveEngine
    from mmkern.connectivity._weight_layout import WeightLayout

    model_a, model_b = ViewFlatten(1), ViewFlatten(2)
    data, bn_data = image_data(30, 1), image_data(30, 2)
    engine = CurveEngine(model_a, WeightLayout(model_a), {None: data}, bn_data, None, 256, 128)
    assert not engine.channels_last
    plain = cnn_batchnorm(1)
    engine = CurveEngine(plain, WeightLayout(plain), {None: data}, bn_data, None, 256, 128)
    assert engine.channels_last
    loader = DataLoader(TensorDataset(*bn_data), batch_size=8)  # probed with its first batch
    engine = CurveEngine(plain, WeightLayout(plain), {None: data}, loader, None, 256, 128)
    assert engine.channels_last
    want = conn.interpolation_curve(model_a, model_b, data, alphas=3, bn_data=bn_data)
    assert_same_curve(fast.interpolation_curve(model_a, model_b, data, alphas=3,
                                               bn_data=bn_data), want)


def test_fast_options_validation():
    model_a, model_b, data = mlp(1), mlp(2), classification_data(10, 1)
    for name in ("eval_batch_size", "memory_budget"):
        with pytest.raises(ValueError, match=name):
            fast.interpolation_curve(model_a, model_b, data, **{name: 0})
        with pytest.raises(TypeError, match=name):
            fast.pairwise_barriers([model_a, model_b], data, **{name: 1.5})


def test_fast_curve_progress_bar_on_a_terminal(monkeypatch):
    import io
    import sys

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    for stream, expected in ((Terminal(), True), (io.StringIO(), False)):  # no bar in logs
        monkeypatch.setattr(sys, "stderr", stream)
        fast.interpolation_curve(mlp(1), mlp(2), classification_data(10, 1), alphas=3,
                                 progress=True)
        assert ("interpolation curve" in stream.getvalue()) == expected


@pytest.mark.parametrize("share", [True, False], ids=["shared-endpoints", "per-pair"])
def test_fast_pairwise_matches_reference_and_shares_endpoints(monkeypatch, share):
    from mmkern.connectivity._engine import CurveEngine

    models = [cnn_batchnorm(seed) for seed in (1, 2, 3, 4)]
    if not share:  # different integer buffers: each pair takes its first model's
        with torch.no_grad():
            models[2][1].num_batches_tracked.fill_(3)
    data, bn_data = image_data(30, 1), image_data(30, 2)
    before = [snapshot(m) for m in models]
    evaluated = []
    original = CurveEngine.run
    monkeypatch.setattr(CurveEngine, "run",
                        lambda self, rows: evaluated.append(rows[0].shape[0]) or original(self, rows))
    got = fast.pairwise_barriers(models, {"a": data}, alphas=5, bn_data=bn_data)["a"]
    want = conn.pairwise_barriers(models, data, alphas=5, bn_data=bn_data)
    for model, snap in zip(models, before):
        assert_unchanged(model, snap)
    pairs = 4 * 3 // 2
    assert sum(evaluated) == (4 + pairs * 3 if share else pairs * 5)
    for field in ("loss_barrier", "loss_barrier_mean", "error_barrier", "error_barrier_mean"):
        np.testing.assert_allclose(getattr(got, field), getattr(want, field),
                                   rtol=LOSS_RTOL, atol=LOSS_RTOL)
        np.testing.assert_array_equal(getattr(got, field), getattr(got, field).T)


def test_fast_pairwise_two_alphas_only_endpoints():
    models = [mlp(1), mlp(2), mlp(3)]
    data = classification_data(25, 1)
    got = fast.pairwise_barriers(models, data, alphas=2)
    want = conn.pairwise_barriers(models, data, alphas=2)
    np.testing.assert_allclose(got.loss_barrier, want.loss_barrier, atol=1e-12)
    np.testing.assert_array_equal(got.loss_barrier, 0.0)  # two points: no interior


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="torch.cuda is not available")
def test_fast_path_on_cuda_matches_cpu_reference():
    device = "cuda"
    model_a, model_b = cnn_batchnorm(1), cnn_batchnorm(2)
    data, bn_data = image_data(40, 1), image_data(30, 2)
    want = conn.interpolation_curve(model_a, model_b, data, alphas=5, bn_data=bn_data)
    got = fast.interpolation_curve(model_a.to(device), model_b.to(device), data, alphas=5,
                                   bn_data=bn_data)
    assert_same_curve(got, want, rtol=1e-4)  # cuDNN convolutions round differently


# ------------------------------------------------------------------------- building blocks


class MixedDtypes(nn.Module):
    """Float32, float64 and float16 parameters, a complex buffer and an integer buffer."""

    def __init__(self, seed):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.a = nn.Parameter(torch.randn(3, 4, generator=g))
        self.b = nn.Parameter(torch.randn(5, generator=g, dtype=torch.float64))
        self.c = nn.Parameter(torch.randn(2, 2, generator=g).half())
        self.register_buffer("z", torch.randn(3, generator=g, dtype=torch.complex64))
        self.register_buffer("count", torch.tensor(seed))

    def forward(self, x):
        return x


@pytest.mark.parametrize("alpha", [0.0, 0.3, 1.0, -0.7, 1.9])
def test_fast_interpolate_is_bitwise_the_reference_for_every_dtype(alpha):
    model_a, model_b = MixedDtypes(1), MixedDtypes(2)
    got, want = entries(fast.interpolate(model_a, model_b, alpha)), entries(
        conn.interpolate(model_a, model_b, alpha))
    for name, tensor in want.items():
        assert got[name].dtype == tensor.dtype and torch.equal(got[name], tensor), name
    assert got["count"].item() == 1


def test_weight_layout_groups_and_round_trip():
    from mmkern.connectivity._weight_layout import WeightLayout

    model_a, model_b = MixedDtypes(1), MixedDtypes(2)
    layout = WeightLayout(model_a)
    assert [dtype for _, dtype in layout.groups] == [torch.float32, torch.float64]
    assert layout.sizes == [12 + 6, 5 + 4]  # complex64 as float32 pairs; half widened
    flat = layout.flatten(model_b)
    layout.load(model_a, flat)
    for name, tensor in entries(model_b).items():
        if name != "count":
            assert torch.equal(entries(model_a)[name], tensor), name
    assert model_a.count.item() == 1
    assert layout.nbytes == 18 * 4 + 9 * 8


class Untraceable(nn.Module):
    """Data-dependent control flow: torch.fx cannot trace it."""

    def __init__(self, seed):
        super().__init__()
        self.net = cnn_batchnorm(seed)

    def forward(self, x):
        if x.sum() > 0:
            return self.net(x)
        return self.net(-x)


@pytest.mark.parametrize("conv_bias, affine", [(True, True), (False, True), (True, False)])
def test_folded_batchnorm_equals_the_model_in_eval_mode(conv_bias, affine):
    from mmkern.connectivity._inference_graph import FoldedBatchNorm

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, bias=conv_bias), nn.BatchNorm2d(4, affine=affine),
                          nn.ReLU(), nn.Flatten(), nn.Linear(64, 3)).eval()
    with torch.no_grad():
        model[1].running_mean.normal_()
        model[1].running_var.uniform_(0.5, 2.0)
    folded = FoldedBatchNorm(model)
    assert len(folded.pairs) == 1
    x = image_data(20, 1)[0]
    with torch.no_grad():
        torch.testing.assert_close(folded.refresh()(x), model(x), rtol=1e-5, atol=1e-6)
        model[1].running_mean.add_(1.0)  # refresh follows the model's new statistics
        torch.testing.assert_close(folded.refresh()(x), model(x), rtol=1e-5, atol=1e-6)


def test_folded_batchnorm_leaves_unfoldable_models_alone():
    from mmkern.connectivity._inference_graph import FoldedBatchNorm

    untraceable = Untraceable(1)
    assert FoldedBatchNorm(untraceable).refresh() is untraceable
    hooked = cnn_batchnorm(1)
    hooked[2].register_forward_hook(lambda module, args, out: out * 2)
    assert FoldedBatchNorm(hooked).refresh() is hooked
    shared = nn.Sequential(nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3))  # conv output used twice
    traced = FoldedBatchNorm(Residual(shared))
    assert traced.pairs == []
    x = image_data(5, 1)[0]
    untraceable.eval()
    with torch.no_grad():
        want = untraceable(x)
    data = (x, torch.zeros(5, dtype=torch.long))
    curve = fast.interpolation_curve(untraceable, Untraceable(2), data, alphas=[0.0],
                                     bn_data=data)
    assert np.isfinite(curve.loss[0]) and want.shape == (5, 3)


class Residual(nn.Module):
    def __init__(self, inner):
        super().__init__()
        self.conv, self.bn = inner[0], inner[1]

    def forward(self, x):
        h = self.conv(x)
        return self.bn(h) + h


class ReluCases(nn.Module):
    """ReLUs that may run in place (after a conv, after an addition) and that may not (on the
    input, on a tensor used twice, on a view, after Flatten)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.safe_conv, self.safe_add = nn.ReLU(), nn.ReLU()
        self.on_input, self.used_twice, self.on_view, self.after_flatten = (
            nn.ReLU(), nn.ReLU(), nn.ReLU(), nn.ReLU())
        self.flatten = nn.Flatten()
        self.head = nn.Linear(4 * 6 * 6, 3)

    def forward(self, x):
        h = self.safe_conv(self.conv(self.on_input(x)))
        g = self.conv2(h)
        h = self.safe_add(h + g) + self.used_twice(g) + g
        h = h + self.on_view(h[:, :2]).sum()
        return self.head(self.after_flatten(self.flatten(h)))


def test_make_relus_inplace_only_where_nothing_else_sees_the_input():
    from mmkern.connectivity._inference_graph import make_relus_inplace

    model = ReluCases()
    x = image_data(4, 1)[0]
    with torch.no_grad():
        want = model(x)
        assert make_relus_inplace(model) == 2
        assert model.safe_conv.inplace and model.safe_add.inplace
        assert not any(m.inplace for m in (model.on_input, model.used_twice, model.on_view,
                                           model.after_flatten))
        x_before = x.clone()
        torch.testing.assert_close(model(x), want, rtol=0, atol=0)
        assert torch.equal(x, x_before)
    assert make_relus_inplace(Untraceable(1)) == 0


# --------------------------------------------------------------------- BatchNorm re-estimation


def _bn_case(layout, dtype, rng_seed=0):
    g = torch.Generator().manual_seed(rng_seed)
    shape = {"nchw": (6, 5, 4, 3), "channels_last": (6, 5, 4, 3), "ncl": (7, 5, 9), "nc": (9, 5)}[layout]
    x = (torch.randn(shape, generator=g, dtype=dtype) * 3 + 2)
    if layout == "channels_last":
        x = x.contiguous(memory_format=torch.channels_last)
    bn = {2: nn.BatchNorm1d, 3: nn.BatchNorm1d, 4: nn.BatchNorm2d}[x.ndim](5).to(dtype)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5, generator=g)
        bn.bias.normal_(generator=g)
    return x, bn


@pytest.mark.parametrize("layout", ["nchw", "channels_last", "ncl", "nc"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
@pytest.mark.parametrize("relu", [False, True], ids=["bn", "bn-relu"])
def test_fused_batchnorm_train_matches_torch(layout, dtype, relu):
    from mmkern.connectivity._batchnorm_pass import FusedBatchNormTrain

    x, bn = _bn_case(layout, dtype)
    reference = copy.deepcopy(bn).train()
    reference.momentum = None
    bn.train()
    bn.momentum = None
    fused = FusedBatchNormTrain(bn, relu)
    tol = dict(rtol=1e-5, atol=1e-5) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-12)
    with torch.no_grad():
        for step in range(3):
            xs = x * (1 + step)
            want = reference(xs.clone())
            want = torch.relu(want) if relu else want
            data = xs.clone(memory_format=torch.preserve_format)
            got = fused(data)
            assert got.data_ptr() == data.data_ptr()  # normalised in place
            torch.testing.assert_close(got, want, **tol)
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        torch.testing.assert_close(getattr(bn, name), getattr(reference, name), **tol)


def test_fused_batchnorm_train_falls_back_where_the_kernel_does_not_apply():
    from mmkern.connectivity._batchnorm_pass import FusedBatchNormTrain

    x, bn = _bn_case("nchw", torch.float32)
    sliced = x[:, :, :, ::2]  # not contiguous in either layout: torch's BatchNorm runs
    reference = copy.deepcopy(bn).train()
    bn.train()
    with torch.no_grad():
        got = FusedBatchNormTrain(bn, relu=True)(sliced)
        torch.testing.assert_close(got, torch.relu(reference(sliced)))
    assert torch.equal(bn.running_mean, reference.running_mean)
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        FusedBatchNormTrain(nn.BatchNorm1d(5).train(), relu=False)(torch.randn(1, 5))


class BatchNormGraphs(nn.Module):
    """A BatchNorm on the input (may not be in place), one whose conv output is read twice, a
    fusable conv -> BN -> ReLU, and a head after the last BatchNorm (dropped from the pass)."""

    def __init__(self):
        super().__init__()
        self.bn_input = nn.BatchNorm2d(3)
        self.conv1, self.bn1, self.relu1 = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU()
        self.conv2, self.bn2 = nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(4 * 6 * 6, 3))

    def forward(self, x):
        h = self.relu1(self.bn1(self.conv1(self.bn_input(x))))
        g = self.conv2(h)
        return self.head(self.bn2(g) + g)


def test_batchnorm_pass_module_rewrites_only_safe_batchnorms():
    from mmkern.connectivity._batchnorm_pass import FusedBatchNormTrain, batchnorm_pass_module

    model = BatchNormGraphs()
    reference = copy.deepcopy(model)
    for m in (model, reference):
        m.train()
        for bn in (m.bn_input, m.bn1, m.bn2):
            bn.momentum = None
    pass_module = batchnorm_pass_module(model)
    fused = [m for m in pass_module.modules() if isinstance(m, FusedBatchNormTrain)]
    assert [(f.bn, f.relu) for f in fused] == [(model.bn1, True)]
    assert "head" not in dict(pass_module.named_modules())  # nothing after the last BatchNorm
    x = image_data(8, 1)[0]
    x_before = x.clone()
    with torch.no_grad():
        for _ in range(2):
            pass_module(x)
            reference(x)
    assert torch.equal(x, x_before)
    for name in ("bn_input", "bn1", "bn2"):
        for stat in ("running_mean", "running_var"):
            torch.testing.assert_close(getattr(getattr(model, name), stat),
                                       getattr(getattr(reference, name), stat),
                                       rtol=1e-5, atol=1e-6)
    assert batchnorm_pass_module(Untraceable(1)) is not None  # untraceable: the model itself


def test_batchnorm_kernel_rejects_bad_arrays():
    from mmkern import _C

    good = np.ones((4, 3, 2), dtype=np.float32)
    with pytest.raises(ValueError, match="3-D"):
        _C.batchnorm_train_(np.ones((4, 3), np.float32), None, None, 1e-5, False)
    with pytest.raises(TypeError, match="float32 or float64"):
        _C.batchnorm_train_(good.astype(np.int32), None, None, 1e-5, False)
    with pytest.raises(ValueError, match="C-contiguous"):
        _C.batchnorm_train_(np.ones((4, 3, 4), np.float32)[:, :, ::2], None, None, 1e-5, False)
    with pytest.raises(ValueError, match="at least 2 values"):
        _C.batchnorm_train_(np.ones((1, 3, 1), np.float32), None, None, 1e-5, False)
    with pytest.raises(ValueError, match="weight"):
        _C.batchnorm_train_(good, np.ones(2, np.float32), None, 1e-5, False)
    with pytest.raises(ValueError, match="bias"):
        _C.batchnorm_train_(good, None, np.ones(3, np.float64), 1e-5, False)
    mean, var = _C.batchnorm_train_(good, None, None, 1e-5, True)
    np.testing.assert_array_equal(mean, 1.0)
    np.testing.assert_array_equal(var, 0.0)
    np.testing.assert_array_equal(good, 0.0)  # constant channels normalise to 0


def test_tf32_is_off_during_the_passes_unless_allowed():
    """Float32 products and convolutions on CUDA use TF32 only with allow_tf32=True; torch's
    settings are restored afterwards (read here from inside the model's forward)."""
    import torch
    from torch import nn

    from mmkern.connectivity._engine import float32_precision

    def current():
        conv = getattr(torch.backends.cudnn, "conv", None)
        if hasattr(conv, "fp32_precision"):
            return torch.backends.cuda.matmul.fp32_precision, conv.fp32_precision
        return torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32

    seen = []

    class Recording(nn.Linear):
        def forward(self, x):
            seen.append(current())
            return super().forward(x)

    torch.manual_seed(0)
    a, b = Recording(4, 3), Recording(4, 3)
    data = (torch.randn(20, 4), torch.randint(0, 3, (20,)))
    before = current()
    with float32_precision(True):
        allowed = current()
    with float32_precision(False):
        strict = current()
    assert current() == before and allowed != strict
    fast.interpolation_curve(a, b, data, alphas=3)
    assert seen and set(seen) == {strict} and current() == before
    seen.clear()
    fast.pairwise_barriers([a, b], data, alphas=3, allow_tf32=True)
    assert seen and set(seen) == {allowed} and current() == before
    with pytest.raises(TypeError, match=r"allow_tf32 must be a bool \(True or False\)"):
        fast.interpolation_curve(a, b, data, alphas=3, allow_tf32="yes")


def test_losses_are_summed_on_the_models_device(monkeypatch):
    """Per micro-batch the engine adds device tensors; it reads the sums back once per pass."""
    import torch
    from torch import nn

    reads = []
    real = torch.Tensor.cpu
    monkeypatch.setattr(torch.Tensor, "cpu", lambda self, *a, **k: reads.append(tuple(self.shape)) or real(self, *a, **k))
    torch.manual_seed(0)
    a, b = nn.Linear(4, 3), nn.Linear(4, 3)
    data = (torch.randn(300, 4), torch.randint(0, 3, (300,)))
    curve = fast.interpolation_curve(a, b, data, alphas=5, batch_size=64, eval_batch_size=16)
    want = conn.interpolation_curve(a, b, data, alphas=5, batch_size=64)
    np.testing.assert_allclose(curve.loss, want.loss, rtol=1e-12)
    np.testing.assert_array_equal(curve.accuracy, want.accuracy)
    assert reads.count((5,)) == 2  # loss sums and correct counts, once each for the one pass
