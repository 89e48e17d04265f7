"""Curved paths (Garipov et al. 2018): fitting a Bezier or polychain bend, and evaluating it on the
engine and in the reference."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from _models import classification_data, cnn_batchnorm, image_data, mlp  # noqa: E402

import mmkern  # noqa: E402
from mmkern import reference  # noqa: E402
from mmkern.connectivity._path import coefficients  # noqa: E402
from mmkern.train import TrainingDiverged  # noqa: E402


@pytest.fixture(scope="module")
def trained():
    """Two MLPs trained on MNIST-1D from different seeds (a clear linear barrier), and the data."""
    from mmkern.data import load_dataset
    from mmkern.train import TrainConfig, train_model

    data = load_dataset("mnist1d", num_samples=2000, ood=None)
    models = [train_model(TrainConfig(dataset="mnist1d", model="mlp", width=0.5, epochs=10, lr=0.05,
                                      batch_size=64, init_seed=s, order_seed=s), data, threads=1)[0]
              for s in (0, 1)]
    as_pair = lambda split: (torch.from_numpy(split.x), torch.from_numpy(split.y))  # noqa: E731
    return models, as_pair(data.test), as_pair(data.train)


@pytest.mark.parametrize("kind", ["bezier", "polychain"])
def test_a_fitted_path_has_lower_loss_than_the_line(trained, kind):
    models, test, train = trained
    path = mmkern.fit_curve(*models, train, kind, epochs=10, lr=0.05)
    line = mmkern.interpolation_curve(*models, test, 11)
    curve = mmkern.interpolation_curve(*models, test, 11, path=path)
    assert curve.loss.max() < line.loss.max() - 0.2
    assert curve.loss_barrier < line.loss_barrier / 2
    np.testing.assert_array_equal(curve.loss[[0, -1]], line.loss[[0, -1]])  # the endpoints exactly
    assert len(path.history) == 10 and path.history[-1]["loss"] < path.history[0]["loss"]
    slow = reference.interpolation_curve(*models, test, 11, path=path)
    np.testing.assert_allclose(curve.loss, slow.loss, rtol=1e-6)
    np.testing.assert_array_equal(curve.accuracy, slow.accuracy)


def test_path_endpoints_evaluate_exactly_to_the_models_with_batchnorm():
    a, b = cnn_batchnorm(1), cnn_batchnorm(2)
    data, bn = image_data(32, 0), image_data(48, 1)
    path = mmkern.fit_curve(a, b, bn, epochs=1, batch_size=16)
    curve = mmkern.interpolation_curve(a, b, data, [0.0, 0.5, 1.0], bn_data=bn, path=path)
    line = mmkern.interpolation_curve(a, b, data, [0.0, 1.0], bn_data=bn)
    np.testing.assert_array_equal(curve.loss[[0, 2]], line.loss)
    slow = reference.interpolation_curve(a, b, data, [0.0, 0.5, 1.0], bn_data=bn, path=path)
    np.testing.assert_allclose(curve.loss, slow.loss, rtol=1e-5)


@pytest.mark.parametrize("kind", ["bezier", "polychain"])
def test_path_coefficients(kind):
    for t in np.linspace(0, 1, 11):
        c = coefficients(kind, float(t))
        assert sum(c) == pytest.approx(1.0) and min(c) >= 0.0
    assert coefficients(kind, 0.0) == (1.0, 0.0, 0.0) and coefficients(kind, 1.0) == (0.0, 0.0, 1.0)
    assert coefficients(kind, 0.5)[1] == (0.5 if kind == "bezier" else 1.0)


def test_fit_curve_is_deterministic_and_leaves_the_models_alone():
    a, b = mlp(1), mlp(2)
    before = [p.detach().clone() for p in a.parameters()]
    data = classification_data(64, 0)
    first = mmkern.fit_curve(a, b, data, epochs=2, seed=3)
    second = mmkern.fit_curve(a, b, data, epochs=2, seed=3)
    assert all(torch.equal(p, q) for p, q in zip(first.bend.state_dict().values(), second.bend.state_dict().values()))
    assert all(torch.equal(p, q) for p, q in zip(before, a.parameters()))


ARGUMENTS = [
    ("kind unknown", lambda a, b, d: mmkern.fit_curve(a, b, d, "spline"), ValueError, "^kind must be one of"),
    ("epochs 0", lambda a, b, d: mmkern.fit_curve(a, b, d, epochs=0), ValueError, "^epochs must be >= 1"),
    ("lr nan", lambda a, b, d: mmkern.fit_curve(a, b, d, lr=float("nan")), ValueError, "^lr must be > 0"),
    ("a DataLoader", lambda a, b, d: mmkern.fit_curve(a, b, torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(*d))), TypeError, "train_data must be an"),
    ("labels beyond outputs", lambda a, b, d: mmkern.fit_curve(a, b, (d[0], d[1] + 5)), ValueError,
     "^train_data: y holds the label 7, but the model has 3 outputs"),
    ("different architectures", lambda a, b, d: mmkern.fit_curve(a, mlp(3, hidden=8), d), ValueError, "has shape"),
    ("path of other models", lambda a, b, d: mmkern.interpolation_curve(
        a, mlp(3), d, path=mmkern.fit_curve(a, b, d, epochs=1)), ValueError, "path was fitted between other models"),
    ("path not a Path", lambda a, b, d: mmkern.interpolation_curve(a, b, d, path="bezier"), TypeError,
     "^path must be a Path"),
    ("t beyond 1", lambda a, b, d: mmkern.interpolation_curve(a, b, d, [0.0, 1.5], path=mmkern.fit_curve(
        a, b, d, epochs=1)), ValueError, r"defined for t in \[0, 1\]"),
    ("path with repair", lambda a, b, d: mmkern.interpolation_curve(a, b, d, bn_data=d, repair=True,
                                                                    path=mmkern.fit_curve(a, b, d, epochs=1)),
     ValueError, "repair applies to straight lines"),
    ("diverging", lambda a, b, d: mmkern.fit_curve(a, b, d, lr=1e30, momentum=0.0), TrainingDiverged,
     "fitting the bezier path diverged"),
]


@pytest.mark.parametrize("case", ARGUMENTS, ids=[c[0] for c in ARGUMENTS])
def test_argument_errors(case):
    _, call, error, message = case
    with pytest.raises(error, match=message):
        call(mlp(1), mlp(2), classification_data(32, 0))
