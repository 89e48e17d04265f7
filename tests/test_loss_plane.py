"""Loss planes: through three models (Garipov et al. 2018) and along filter-normalised random
directions (Li et al. 2018), on the engine and in the per-point reference."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from _models import classification_data, cnn_batchnorm, image_data, mlp  # noqa: E402

import mmkern  # noqa: E402
from mmkern import reference  # noqa: E402
from mmkern.connectivity._plane import model_plane, point_state, random_plane  # noqa: E402

CASES = {
    "mlp": (lambda s: mlp(s), lambda n, s: classification_data(n, s), False),
    "cnn-bn": (lambda s: cnn_batchnorm(s), lambda n, s: image_data(n, s), True),
}


def _own(model, data, bn_data):
    """A model's own loss and accuracy, as the curves evaluate it (alpha = 0 of a line to itself)."""
    curve = reference.interpolation_curve(model, model, data, alphas=[0.0], bn_data=bn_data)
    return curve.loss[0], curve.accuracy[0]


@pytest.mark.parametrize("case", CASES)
def test_the_plane_through_three_models_holds_them(case):
    build, data_of, batchnorm = CASES[case]
    models = [build(s) for s in (1, 2, 3)]
    data, bn = data_of(48, 0), data_of(48, 1) if batchnorm else None
    plane = mmkern.loss_plane(models, data, grid=4, bn_data=bn)
    assert plane.loss.shape == plane.accuracy.shape == (4, 4) and plane.directions == "models"
    for i, model in enumerate(models):
        loss, accuracy = _own(model, data, bn)
        assert plane.point_loss[f"models[{i}]"] == pytest.approx(loss, rel=1e-5)
        assert plane.point_accuracy[f"models[{i}]"] == accuracy
    # the points: model 0 at the origin, model 1 on the x axis, distances as in weight space
    p = plane.points
    assert p["models[0]"] == (0.0, 0.0) and p["models[1]"][1] == 0.0 and p["models[2]"][1] > 0
    distance = math.sqrt(sum(float(((a.detach().double() - b.detach().double()) ** 2).sum()) for a, b in
                             zip(models[1].parameters(), models[0].parameters())))
    assert p["models[1]"][0] == pytest.approx(distance, rel=1e-9)
    # the grid covers the three points with the margin
    xs = [q[0] for q in p.values()]
    span = max(xs) - min(xs)
    assert plane.x[0] == pytest.approx(min(xs) - 0.2 * span) and plane.x[-1] == pytest.approx(max(xs) + 0.2 * span)


@pytest.mark.parametrize("directions", ["models", "random"])
@pytest.mark.parametrize("case", CASES)
def test_engine_and_reference_agree(case, directions):
    build, data_of, batchnorm = CASES[case]
    models = [build(s) for s in (1, 2, 3)] if directions == "models" else build(1)
    data = {"test": data_of(40, 0), "other": data_of(30, 2)}
    bn = data_of(48, 1) if batchnorm else None
    fast = mmkern.loss_plane(models, data, grid=(3, 4), directions=directions, bn_data=bn, extent=0.5)
    slow = reference.loss_plane(models, data, grid=(3, 4), directions=directions, bn_data=bn, extent=0.5)
    for key in data:
        np.testing.assert_array_equal(fast[key].x, slow[key].x)
        np.testing.assert_array_equal(fast[key].y, slow[key].y)
        np.testing.assert_allclose(fast[key].loss, slow[key].loss, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(fast[key].accuracy, slow[key].accuracy, atol=1 / 40 + 1e-12)
        assert fast[key].points == slow[key].points


def test_random_directions_are_filter_normalised():
    model = cnn_batchnorm(3)
    base, d1, d2, points = random_plane(model, seed=5)
    assert points == {"center": (0.0, 0.0)}
    params = dict(model.named_parameters())
    for d in (d1, d2):
        for name, theta in params.items():
            direction = d[name]
            if theta.ndim >= 2:
                np.testing.assert_allclose(direction.reshape(theta.shape[0], -1).norm(dim=1).numpy(),
                                           theta.detach().double().reshape(theta.shape[0], -1).norm(dim=1).numpy(),
                                           rtol=1e-12)
            else:  # biases and normalisation weights: Li et al.'s "ignore biasbn"
                assert not direction.any()
        for name in set(base) - set(params):  # buffers do not move
            assert not d[name].any()
    assert not torch.equal(d1["0.weight"], d2["0.weight"])
    again = random_plane(model, seed=5)
    assert all(torch.equal(again[1][k], d1[k]) for k in d1)


def test_random_plane_center_is_the_model():
    model, data = mlp(4), classification_data(40, 0)
    plane = mmkern.loss_plane(model, data, grid=3, directions="random")
    loss, accuracy = _own(model, data, None)
    assert plane.loss[1, 1] == pytest.approx(loss, rel=1e-6) and plane.point_loss["center"] == pytest.approx(loss)
    np.testing.assert_allclose(plane.x, [-1.0, 0.0, 1.0])


def test_plane_basis_is_orthonormal():
    models = [mlp(s) for s in (1, 2, 3)]
    base, d1, d2, points = model_plane(models, ("a", "b", "c"))
    params = [name for name, _ in models[0].named_parameters()]
    dot = lambda u, v: sum(float((u[k] * v[k]).sum()) for k in params)  # noqa: E731
    assert dot(d1, d1) == pytest.approx(1.0) and dot(d2, d2) == pytest.approx(1.0)
    assert abs(dot(d1, d2)) < 1e-12
    for model, label in zip(models, "abc"):  # each model's point rebuilds its weights
        state = point_state(base, d1, d2, *points[label])
        for name, value in model.state_dict().items():
            if value.is_floating_point():
                torch.testing.assert_close(state[name], value.double(), rtol=1e-9, atol=1e-9)


def test_diverging_points_are_inf_with_a_warning():
    a, b, c = mlp(1), mlp(2), mlp(3)
    with torch.no_grad():
        c[0].weight.mul_(1e36)  # far out along the plane, the outputs overflow float32
    with pytest.warns(RuntimeWarning, match="outputs are not finite at .* points of the plane on data"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            plane = mmkern.loss_plane([a, b, c], classification_data(20, 0), grid=3)
    assert np.isinf(plane.loss).any() and not np.isnan(plane.loss).any()


ARGUMENTS = [
    ("two models", lambda: mmkern.loss_plane([mlp(1), mlp(2)], classification_data(10, 0)), ValueError,
     "exactly 3 models, got 2"),
    ("collinear", lambda: mmkern.loss_plane([mlp(1), mlp(2), mmkern.interpolate(mlp(1), mlp(2), 0.5)],
                                            classification_data(10, 0)),
     ValueError, "are \\(nearly\\) on one line"),
    ("the same model thrice", lambda: mmkern.loss_plane([mlp(1)] * 3, classification_data(10, 0)), ValueError,
     "on one line"),
    ("grid 1", lambda: mmkern.loss_plane([mlp(1), mlp(2), mlp(3)], classification_data(10, 0), grid=1),
     ValueError, "^grid must be >= 2"),
    ("grid float", lambda: mmkern.loss_plane([mlp(1), mlp(2), mlp(3)], classification_data(10, 0), grid=3.0),
     TypeError, "^grid must be an int"),
    ("grid pair", lambda: mmkern.loss_plane([mlp(1), mlp(2), mlp(3)], classification_data(10, 0), grid=(3, 1)),
     ValueError, r"^grid\[1\] must be >= 2"),
    ("directions unknown", lambda: mmkern.loss_plane(mlp(1), classification_data(10, 0), directions="pca"),
     ValueError, "^directions must be one of"),
    ("random with three", lambda: mmkern.loss_plane([mlp(1), mlp(2), mlp(3)], classification_data(10, 0),
                                                    directions="random"),
     ValueError, "takes one model"),
    ("different architectures", lambda: mmkern.loss_plane([mlp(1), mlp(2), mlp(3, hidden=8)],
                                                          classification_data(10, 0)),
     ValueError, "models\\[0\\] and models\\[2\\] differ"),
    ("extent 0", lambda: mmkern.loss_plane(mlp(1), classification_data(10, 0), directions="random", extent=0),
     ValueError, "^extent must be > 0"),
    ("margin -1", lambda: mmkern.loss_plane([mlp(1), mlp(2), mlp(3)], classification_data(10, 0), margin=-1),
     ValueError, "^margin must be >= 0"),
    ("no bn_data", lambda: mmkern.loss_plane([cnn_batchnorm(s) for s in (1, 2, 3)], image_data(10, 0)),
     ValueError, "give bn_data"),
    ("labels out of range", lambda: mmkern.loss_plane(mlp(1), (classification_data(10, 0)[0], torch.full((10,), 7)),
                                                      directions="random"),
     ValueError, "^data: y holds the label 7"),
]


@pytest.mark.parametrize("case", ARGUMENTS, ids=[c[0] for c in ARGUMENTS])
def test_argument_errors(case):
    _, call, error, message = case
    with pytest.raises(error, match=message):
        call()
