"""Tests of the plain reference connectivity evaluation (:mod:`mmkern.reference.connectivity`)."""

from __future__ import annotations

import math
import re
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

import mmkern.reference.connectivity as conn  # noqa: E402
from _models import (  # noqa: E402
    assert_unchanged,
    classification_data,
    cnn_batchnorm,
    cnn_layer_group_norm,
    image_data,
    mlp,
    mlp_batchnorm_dropout,
    mlp_dropout,
    snapshot,
)

#: float32 logits evaluated in different batchings (batched conv/matmul may round differently):
#: losses agree to a few float32 ulps of the logits.
LOSS_RTOL = 1e-5

#: Each builder: (model factory, data factory, needs bn_data).
MODELS = {
    "mlp": (mlp, classification_data, False),
    "mlp-nobias": (lambda seed: mlp(seed, bias=False), classification_data, False),
    "mlp-dropout": (mlp_dropout, classification_data, False),
    "mlp-bn-dropout": (mlp_batchnorm_dropout, classification_data, True),
    "cnn-bn": (cnn_batchnorm, image_data, True),
    "cnn-ln-gn": (cnn_layer_group_norm, image_data, False),
}


@pytest.fixture(params=sorted(MODELS))
def setup(request):
    build, make_data, needs_bn = MODELS[request.param]
    model_a, model_b = build(1), build(2)
    data = make_data(70, seed=10)
    bn_data = make_data(50, seed=11) if needs_bn else None
    return model_a, model_b, data, bn_data


def entries(model):
    return dict(list(model.named_parameters()) + list(model.named_buffers()))


def own_metrics(model, data, bn_data, batch_size=conn.BN_BATCH_SIZE):
    """A model's own loss and accuracy, computed directly (BN re-estimated on a copy)."""
    import copy

    model = copy.deepcopy(model)
    if bn_data is not None:
        conn.reset_and_estimate_batchnorm(model, bn_data, batch_size)
    model.eval()
    x, y = data
    with torch.no_grad():
        logits = model(x)
    loss = F.cross_entropy(logits.double(), y).item()
    return loss, (logits.argmax(1) == y).double().mean().item()


# ------------------------------------------------------------------------------------ interpolate


def test_interpolate_endpoints_midpoint_and_integer_buffers(setup):
    model_a, model_b, _, _ = setup
    ea, eb = entries(model_a), entries(model_b)
    for alpha, expected in ((0.0, ea), (1, eb), (np.float64(0.0), ea), (torch.tensor(1.0), eb)):
        got = entries(conn.interpolate(model_a, model_b, alpha))
        for name, tensor in got.items():
            if tensor.is_floating_point():
                assert torch.equal(tensor, expected[name]), (alpha, name)
            else:  # integer buffers always come from model_a
                assert torch.equal(tensor, ea[name]), (alpha, name)
    mid = entries(conn.interpolate(model_a, model_b, 0.5))
    for name, tensor in mid.items():
        if tensor.is_floating_point():
            assert torch.equal(tensor, ((ea[name].double() + eb[name].double()) / 2).float())
            torch.testing.assert_close(tensor, (ea[name] + eb[name]) / 2, rtol=1e-6, atol=1e-7)


def test_interpolate_integer_buffers_from_a_and_extrapolation():
    model_a, model_b = cnn_batchnorm(1), cnn_batchnorm(2)
    with torch.no_grad():
        model_b[1].num_batches_tracked.fill_(99)
    for alpha in (0.0, 0.3, 1.0, -0.5, 1.5):
        model = conn.interpolate(model_a, model_b, alpha)
        assert model[1].num_batches_tracked.item() == 7
        assert model[1].num_batches_tracked.dtype == torch.long
        expected = (1 - alpha) * model_a[0].weight.double() + alpha * model_b[0].weight.double()
        assert torch.equal(model[0].weight, expected.float())
        torch.testing.assert_close(
            model[1].running_var,
            ((1 - alpha) * model_a[1].running_var.double()
             + alpha * model_b[1].running_var.double()).float(),
        )


def test_interpolate_returns_a_new_model_and_keeps_inputs(setup):
    model_a, model_b, _, _ = setup
    model_a.train()
    model_b.eval()
    before_a, before_b = snapshot(model_a), snapshot(model_b)
    model = conn.interpolate(model_a, model_b, 0.25)
    assert model is not model_a and model.training  # a deep copy of A, A's mode
    for tensor in entries(model).values():
        assert all(tensor is not t for t in entries(model_a).values())
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    assert_unchanged(model_a, before_a)
    assert_unchanged(model_b, before_b)


def test_interpolate_architecture_mismatch_names_first_difference():
    with pytest.raises(ValueError, match=r"model_b has no entry '0\.bias'"):
        conn.interpolate(mlp(1), mlp(2, bias=False), 0.5)
    with pytest.raises(ValueError, match=r"model_a has no entry '0\.bias'"):
        conn.interpolate(mlp(1, bias=False), mlp(2), 0.5)
    with pytest.raises(ValueError, match=re.escape(
            "'0.weight' has shape (16, 8) in model_a but (32, 8) in model_b")):
        conn.interpolate(mlp(1), mlp(2, hidden=32), 0.5)
    with pytest.raises(ValueError, match=re.escape(
            "'0.weight' has shape (4, 3, 3, 3) in model_a but (5, 3, 3, 3) in model_b")):
        conn.interpolate(cnn_batchnorm(1), cnn_batchnorm(2, channels=5), 0.5)
    with pytest.raises(ValueError, match="dtype torch.float32 in model_a but torch.float64"):
        conn.interpolate(mlp(1), mlp(2).double(), 0.5)
    with pytest.raises(ValueError, match="has no entry"):
        conn.interpolation_curve(mlp(1), mlp(2, bias=False), classification_data(10, 0))
    with pytest.raises(TypeError, match="model_b"):
        conn.interpolate(mlp(1), "model", 0.5)


@pytest.mark.parametrize("alpha, error", [
    (float("nan"), ValueError), (float("inf"), ValueError), (-math.inf, ValueError),
    ("0.5", TypeError), (True, TypeError), (None, TypeError), (1 + 2j, TypeError),
])
def test_interpolate_alpha_validation(alpha, error):
    with pytest.raises(error, match="alpha"):
        conn.interpolate(mlp(1), mlp(2), alpha)


# ------------------------------------------------------------------------------------- BatchNorm


@pytest.mark.parametrize("as_loader", [False, True])
def test_batchnorm_estimate_is_the_cumulative_average_of_batch_statistics(as_loader):
    torch.manual_seed(0)
    model = nn.Sequential(nn.BatchNorm1d(5, momentum=0.3))
    with torch.no_grad():
        model[0].running_mean.fill_(3.0)
        model[0].num_batches_tracked.fill_(4)
    x = torch.randn(70, 5, dtype=torch.float64).float() * 2 + 1
    y = torch.zeros(70, dtype=torch.long)
    data = DataLoader(TensorDataset(x, y), batch_size=32) if as_loader else (x, y)
    out = conn.reset_and_estimate_batchnorm(model, data, batch_size=32)
    assert out is model and not model.training
    batches = [x[0:32], x[32:64], x[64:70]]
    mean = torch.stack([b.double().mean(0) for b in batches]).mean(0)
    var = torch.stack([b.double().var(0, unbiased=True) for b in batches]).mean(0)
    torch.testing.assert_close(model[0].running_mean.double(), mean, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(model[0].running_var.double(), var, rtol=1e-6, atol=1e-6)
    assert model[0].num_batches_tracked.item() == 3
    assert model[0].momentum == 0.3


def test_batchnorm2d_estimate_per_channel_and_default_batch_size():
    torch.manual_seed(0)
    model = nn.Sequential(nn.BatchNorm2d(3))
    x = torch.randn(300, 3, 2, 2)
    conn.reset_and_estimate_batchnorm(model, (x, torch.zeros(300, dtype=torch.long)))
    batches = [x[:256], x[256:]]  # the documented default batch size
    mean = torch.stack([b.mean((0, 2, 3)) for b in batches]).mean(0)
    torch.testing.assert_close(model[0].running_mean, mean)
    assert model[0].num_batches_tracked.item() == 2 and model[0].momentum == 0.1


def test_batchnorm_estimate_runs_dropout_in_eval_mode():
    model = mlp_batchnorm_dropout(3)
    x, y = classification_data(64, 5)
    conn.reset_and_estimate_batchnorm(model, (x, y), batch_size=64)
    with torch.no_grad():
        hidden = model[0](x)  # Dropout off: BN sees the evaluation-time activations
    torch.testing.assert_close(model[2].running_mean, hidden.mean(0))
    assert all(not m.training for m in model.modules())


def test_batchnorm_estimate_rejects_empty_and_bad_data():
    model = cnn_batchnorm(1)
    x, y = image_data(4, 0)
    with pytest.raises(ValueError, match="bn_data is empty"):
        conn.reset_and_estimate_batchnorm(model, (x[:0], y[:0]))
    with pytest.raises(ValueError, match="bn_data is empty"):
        conn.reset_and_estimate_batchnorm(model, DataLoader(TensorDataset(x[:0], y[:0])))
    with pytest.raises(TypeError, match="bn_data"):
        conn.reset_and_estimate_batchnorm(model, x)
    with pytest.raises(ValueError, match="bn_data"):
        conn.reset_and_estimate_batchnorm(model, (x, y[:3]))


# ---------------------------------------------------------------------------------------- curves


def barriers_by_definition(alphas, values):
    v0, v1 = values[alphas == 0][0], values[alphas == 1][0]
    chord = np.max(values - ((1 - alphas) * v0 + alphas * v1))
    return chord, np.max(values) - (v0 + v1) / 2


def test_curve_endpoints_reproduce_each_models_own_metrics(setup):
    model_a, model_b, data, bn_data = setup
    curve = conn.interpolation_curve(model_a, model_b, data, alphas=[0.0, 0.5, 1.0],
                                     bn_data=bn_data, batch_size=32)
    for k, model in ((0, model_a), (2, model_b)):
        loss, accuracy = own_metrics(model, data, bn_data, batch_size=32)
        assert curve.loss[k] == pytest.approx(loss, rel=LOSS_RTOL)
        assert curve.accuracy[k] == accuracy
    mid_loss, mid_accuracy = own_metrics(conn.interpolate(model_a, model_b, 0.5), data,
                                         bn_data, batch_size=32)
    assert curve.loss[1] == pytest.approx(mid_loss, rel=LOSS_RTOL)
    assert curve.accuracy[1] == mid_accuracy


def test_curve_fields_and_barriers_follow_the_definitions(setup):
    model_a, model_b, data, bn_data = setup
    before_a, before_b = snapshot(model_a), snapshot(model_b)
    curve = conn.interpolation_curve(model_a, model_b, data, alphas=5, bn_data=bn_data)
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


def test_curve_unsorted_extrapolated_alphas_and_missing_endpoints():
    model_a, model_b, data = mlp(1), mlp(2), classification_data(40, 3)
    alphas = [1.0, -0.25, 0.5, 0.0, 1.25]
    curve = conn.interpolation_curve(model_a, model_b, data, alphas=np.array(alphas))
    np.testing.assert_array_equal(curve.alphas, alphas)
    chord, mean = barriers_by_definition(curve.alphas, curve.loss)
    assert curve.loss_barrier == pytest.approx(chord)
    assert curve.loss_barrier_mean == pytest.approx(mean)
    single = conn.interpolation_curve(model_a, model_b, data, alphas=[-0.25])
    assert single.loss[0] == curve.loss[1]
    partial = conn.interpolation_curve(model_a, model_b, data, alphas=torch.tensor([0.0, 0.5]))
    assert partial.loss_barrier is None and partial.loss_barrier_mean is None
    assert partial.error_barrier is None and partial.error_barrier_mean is None


def test_curve_dict_of_sets_reuses_one_batchnorm_estimate_per_alpha(monkeypatch):
    model_a, model_b = cnn_batchnorm(1), cnn_batchnorm(2)
    sets = {"test": image_data(30, 1), "train": image_data(20, 2)}
    bn_data = image_data(40, 3)
    calls = []
    original = conn.reset_and_estimate_batchnorm
    monkeypatch.setattr(conn, "reset_and_estimate_batchnorm",
                        lambda *args: calls.append(1) or original(*args))
    curves = conn.interpolation_curve(model_a, model_b, sets, alphas=3, bn_data=bn_data)
    assert len(calls) == 3  # once per alpha, shared by both sets
    assert list(curves) == ["test", "train"]
    for name, source in sets.items():
        alone = conn.interpolation_curve(model_a, model_b, source, alphas=3, bn_data=bn_data)
        np.testing.assert_array_equal(curves[name].loss, alone.loss)
        np.testing.assert_array_equal(curves[name].accuracy, alone.accuracy)
        assert curves[name].loss_barrier == alone.loss_barrier


def test_curve_dataloader_equals_tensor_pair():
    model_a, model_b = cnn_batchnorm(1), cnn_batchnorm(2)
    (x, y), (bx, by) = image_data(50, 1), image_data(40, 2)
    pair = conn.interpolation_curve(model_a, model_b, (x, y), alphas=3, bn_data=(bx, by),
                                    batch_size=16)
    loader = conn.interpolation_curve(
        model_a, model_b, DataLoader(TensorDataset(x, y), batch_size=16), alphas=3,
        bn_data=DataLoader(TensorDataset(bx, by), batch_size=16))
    np.testing.assert_array_equal(pair.loss, loader.loss)
    np.testing.assert_array_equal(pair.accuracy, loader.accuracy)


def test_curve_is_deterministic_with_dropout():
    model_a, model_b = mlp_batchnorm_dropout(1), mlp_batchnorm_dropout(2)
    data, bn_data = classification_data(40, 1), classification_data(40, 2)
    torch.manual_seed(0)
    first = conn.interpolation_curve(model_a, model_b, data, alphas=3, bn_data=bn_data)
    torch.manual_seed(123)
    second = conn.interpolation_curve(model_a, model_b, data, alphas=3, bn_data=bn_data)
    np.testing.assert_array_equal(first.loss, second.loss)


def test_curve_custom_loss_fn():
    model_a, model_b, data = mlp(1), mlp(2), classification_data(30, 1)
    base = conn.interpolation_curve(model_a, model_b, data, alphas=3)
    doubled = conn.interpolation_curve(
        model_a, model_b, data, alphas=3,
        loss_fn=lambda logits, y: 2 * F.cross_entropy(logits.double(), y, reduction="none"))
    np.testing.assert_allclose(doubled.loss, 2 * base.loss, rtol=1e-15)
    np.testing.assert_array_equal(doubled.accuracy, base.accuracy)
    with pytest.raises(ValueError, match="loss_fn"):
        conn.interpolation_curve(model_a, model_b, data, alphas=3,
                                 loss_fn=lambda logits, y: F.cross_entropy(logits, y))


def test_curve_input_errors():
    model_a, model_b = mlp(1), mlp(2)
    x, y = classification_data(20, 1)
    bn_a, bn_b = cnn_batchnorm(1), cnn_batchnorm(2)
    with pytest.raises(ValueError, match="bn_data"):
        conn.interpolation_curve(bn_a, bn_b, image_data(10, 0))
    with pytest.raises(ValueError, match="bn_data is empty"):
        conn.interpolation_curve(bn_a, bn_b, image_data(10, 0), bn_data=image_data(0, 1))
    with pytest.raises(ValueError, match="data is empty"):
        conn.interpolation_curve(model_a, model_b, (x[:0], y[:0]))
    with pytest.raises(ValueError, match="data is empty"):
        conn.interpolation_curve(model_a, model_b, DataLoader(TensorDataset(x[:0], y[:0])))
    with pytest.raises(ValueError, match="empty dict"):
        conn.interpolation_curve(model_a, model_b, {})
    with pytest.raises(ValueError, match=r"data\['b'\] is empty"):
        conn.interpolation_curve(model_a, model_b, {"a": (x, y), "b": (x[:0], y[:0])})
    with pytest.raises(TypeError, match="data"):
        conn.interpolation_curve(model_a, model_b, x)
    with pytest.raises(TypeError, match="labels"):
        conn.interpolation_curve(model_a, model_b, (x, y.float()))
    with pytest.raises(ValueError, match="y must have shape"):
        conn.interpolation_curve(model_a, model_b, (x, y[:-1]))
    for alphas in (1, 0, -3, [], [[0.0, 1.0]], [0.0, float("nan")], [0.0, float("inf"), 1.0]):
        with pytest.raises(ValueError, match="alphas"):
            conn.interpolation_curve(model_a, model_b, (x, y), alphas=alphas)
    for alphas in (True, "abc", [0.0, "x"]):
        with pytest.raises(TypeError, match="alphas"):
            conn.interpolation_curve(model_a, model_b, (x, y), alphas=alphas)
    with pytest.raises(ValueError, match="batch_size"):
        conn.interpolation_curve(model_a, model_b, (x, y), batch_size=0)


# ------------------------------------------------------------------------------------- pairwise


def test_pairwise_barriers_symmetric_zero_diagonal_and_match_curves():
    models = [cnn_batchnorm(seed) for seed in (1, 2, 3)]
    before = [snapshot(m) for m in models]
    data, bn_data = image_data(30, 1), image_data(30, 2)
    result = conn.pairwise_barriers(models, data, alphas=3, bn_data=bn_data)
    for model, snap in zip(models, before):
        assert_unchanged(model, snap)
    assert isinstance(result, conn.PairwiseBarriers)
    fields = ("loss_barrier", "loss_barrier_mean", "error_barrier", "error_barrier_mean")
    for field in fields:
        matrix = getattr(result, field)
        assert matrix.dtype == np.float64 and matrix.shape == (3, 3)
        np.testing.assert_array_equal(matrix, matrix.T)
        np.testing.assert_array_equal(np.diag(matrix), 0.0)
    curve = conn.interpolation_curve(models[0], models[2], data, alphas=3, bn_data=bn_data)
    for field in fields:
        assert getattr(result, field)[0, 2] == getattr(curve, field)
    several = conn.pairwise_barriers(models[:2], {"a": data, "b": image_data(20, 5)},
                                     alphas=3, bn_data=bn_data)
    assert list(several) == ["a", "b"]
    np.testing.assert_array_equal(several["a"].loss_barrier, result.loss_barrier[:2, :2])


def test_pairwise_barriers_input_errors():
    data = classification_data(10, 1)
    with pytest.raises(ValueError, match="at least 2"):
        conn.pairwise_barriers([mlp(1)], data)
    with pytest.raises(TypeError, match="models"):
        conn.pairwise_barriers(mlp(1), data)
    with pytest.raises(ValueError, match=r"models\[0\] and models\[2\] differ"):
        conn.pairwise_barriers([mlp(1), mlp(2), mlp(3, bias=False)], data)
    with pytest.raises(ValueError, match="both 0 and 1"):
        conn.pairwise_barriers([mlp(1), mlp(2)], data, alphas=[0.0, 0.5])


# ----------------------------------------------------------------------------------- package


def test_reference_package_exports_connectivity_lazily(tmp_path):
    code = (
        "import sys, mmkern.reference as r; assert 'torch' not in sys.modules; "
        "assert r.interpolation_curve.__module__ == 'mmkern.reference.connectivity'; "
        "assert 'interpolation_curve' in r.__all__ and 'pairwise_barriers' in dir(r)"
    )
    # cwd outside the checkout: `python -c` puts the working directory on sys.path, where the
    # unbuilt source tree would shadow the installed package.
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)
    import mmkern.reference as ref

    for name in ("InterpolationCurve", "PairwiseBarriers"):
        assert f":class:`mmkern.{name}`" in getattr(ref, name).__doc__
    for name in ("interpolate", "interpolation_curve", "pairwise_barriers"):
        assert f":func:`mmkern.{name}`" in getattr(ref, name).__doc__
    assert ":func:`mmkern.interpolation_curve`" in conn.reset_and_estimate_batchnorm.__doc__
