"""Tests specific to the plain reference connectivity evaluation (BatchNorm re-estimation, the
per-alpha loop, lazy exports). The API tests shared with the fast path are in test_connectivity."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

import mmkern.reference.connectivity as conn  # noqa: E402
from _models import (  # noqa: E402
    classification_data,
    cnn_batchnorm,
    image_data,
    mlp_batchnorm_dropout,
)

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


# ----------------------------------------------------------------------------------- package


@pytest.mark.parametrize("package, module", [
    ("mmkern", "mmkern.connectivity"),
    ("mmkern.reference", "mmkern.reference.connectivity"),
])
def test_packages_export_connectivity_lazily(tmp_path, package, module):
    code = (
        f"import sys, {package} as r; assert 'torch' not in sys.modules; "
        f"assert r.interpolation_curve.__module__ == {module!r}; "
        "assert 'interpolation_curve' in r.__all__ and 'pairwise_barriers' in dir(r)"
    )
    # cwd outside the checkout: `python -c` puts the working directory on sys.path, where the
    # unbuilt source tree would shadow the installed package.
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)


def test_reference_docstrings_name_their_fast_counterparts():
    import mmkern
    import mmkern.reference as ref

    for name in ("InterpolationCurve", "PairwiseBarriers"):  # one result type for both
        assert getattr(ref, name) is getattr(mmkern, name)
    for name in ("interpolate", "interpolation_curve", "pairwise_barriers"):
        assert f":func:`mmkern.{name}`" in getattr(ref, name).__doc__
    assert ":func:`mmkern.interpolation_curve`" in conn.reset_and_estimate_batchnorm.__doc__
