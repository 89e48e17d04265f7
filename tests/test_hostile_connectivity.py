"""Hostile inputs to the connectivity functions, on the fast path and the reference alike: labels
outside the model's outputs, non-finite data, models that diverge along the line, architectures
that differ only in their forward, and the argument vocabulary.
"""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

from _models import N_CLASSES, classification_data, cnn_batchnorm, image_data, mlp  # noqa: E402

import mmkern  # noqa: E402
from mmkern import reference  # noqa: E402

IMPLS = {"mmkern": mmkern, "reference": reference}


def _source(x, y, kind: str):
    return (x, y) if kind == "pair" else DataLoader(TensorDataset(x, y), batch_size=16)


@pytest.mark.parametrize("kind", ["pair", "loader"])
@pytest.mark.parametrize("label", [-100, -1, N_CLASSES, N_CLASSES + 5])
@pytest.mark.parametrize("impl", IMPLS)
def test_labels_outside_the_models_outputs_are_refused(impl, label, kind):
    x, y = classification_data(40, 0)
    y = y.clone()
    y[17] = label
    if label < 0:
        message = rf"^data: y holds the label {label}; labels must be class indices >= 0"
    else:
        message = rf"^data: y holds the label {label}, but the model has {N_CLASSES} outputs"
    with pytest.raises(ValueError, match=message):
        IMPLS[impl].interpolation_curve(mlp(1), mlp(2), _source(x, y, kind), alphas=3)


@pytest.mark.parametrize("impl", IMPLS)
def test_ignore_index_is_explained(impl):
    x, y = classification_data(40, 0)
    with pytest.raises(ValueError, match=r"-100 is torch's ignore_index"):
        IMPLS[impl].interpolation_curve(mlp(1), mlp(2), (x, torch.full_like(y, -100)), alphas=3)


@pytest.mark.parametrize("impl", IMPLS)
def test_a_bad_label_in_one_of_several_sets_names_that_set(impl):
    x, y = classification_data(40, 0)
    bad = y.clone()
    bad[0] = 9
    with pytest.raises(ValueError, match=r"^data\['ood'\]: y holds the label 9"):
        IMPLS[impl].pairwise_barriers([mlp(1), mlp(2), mlp(3)], {"test": (x, y), "ood": (x, bad)}, alphas=3)


@pytest.mark.parametrize("kind", ["pair", "loader"])
@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")], ids=["nan", "inf", "-inf"])
@pytest.mark.parametrize("where", ["data", "bn_data"])
@pytest.mark.parametrize("impl", IMPLS)
def test_non_finite_data_is_refused_naming_the_set(impl, where, value, kind):
    x, y = image_data(32, 0)
    bad = x.clone()
    bad[5, 1, 2, 3] = value
    data = _source(bad if where == "data" else x, y, kind)
    bn_data = _source(bad if where == "bn_data" else x, y, kind)
    with pytest.raises(ValueError, match=rf"^{where}: x contains NaN or infinity \(1 entries\)"):
        IMPLS[impl].interpolation_curve(cnn_batchnorm(1), cnn_batchnorm(2), data, alphas=3, bn_data=bn_data)


def _diverging_pair():
    """Two models whose midpoint overflows float32: finite at alpha 0 and 1, inf at 0.5. Model a
    has a huge first layer and a tiny last one, model b the other way round: the products of the
    two layers are moderate at the ends and about 1e60 halfway."""
    a, b = mlp(1), mlp(2)
    with torch.no_grad():
        for model in (a, b):
            model[0].bias.zero_()
            model[2].bias.zero_()
        a[0].weight.mul_(1e30)
        a[2].weight.mul_(1e-30)
        b[0].weight.mul_(1e-30)
        b[2].weight.mul_(1e30)
    return a, b


@pytest.mark.parametrize("impl", IMPLS)
def test_outputs_that_become_non_finite_give_inf_loss_and_error_one(impl):
    a, b = _diverging_pair()
    x, y = classification_data(30, 0)
    with pytest.warns(RuntimeWarning, match=r"non-finite outputs on data at alpha = 0\.5: those samples "
                                            r"count as loss inf and error 1"):
        curve = IMPLS[impl].interpolation_curve(a, b, (x, y), alphas=[0.0, 0.5, 1.0])
    assert np.isfinite(curve.loss[[0, 2]]).all() and curve.loss[1] == np.inf
    assert curve.accuracy[1] == 0.0
    assert curve.loss_barrier == np.inf and curve.loss_barrier_mean == np.inf
    assert not np.isnan(curve.error_barrier) and curve.error_barrier == pytest.approx(
        1.0 - 0.5 * ((1 - curve.accuracy[0]) + (1 - curve.accuracy[2])))


@pytest.mark.parametrize("impl", IMPLS)
def test_pairwise_barriers_of_diverging_pairs_are_inf_never_nan(impl):
    a, b = _diverging_pair()
    x, y = classification_data(30, 0)
    with pytest.warns(RuntimeWarning, match="non-finite outputs"):
        result = IMPLS[impl].pairwise_barriers([a, b, a], (x, y), alphas=[0.0, 0.5, 1.0])
    for field in ("loss_barrier", "loss_barrier_mean", "error_barrier", "error_barrier_mean"):
        matrix = getattr(result, field)
        assert not np.isnan(matrix).any(), field
    assert result.loss_barrier[0, 1] == np.inf and result.loss_barrier[0, 2] == 0.0


@pytest.mark.parametrize("value", [float("nan"), float("inf")], ids=["nan", "inf"])
@pytest.mark.parametrize("end", ["model_a", "model_b"])
@pytest.mark.parametrize("function", ["interpolate", "interpolation_curve"])
@pytest.mark.parametrize("impl", IMPLS)
def test_non_finite_weights_are_refused_naming_the_model(impl, function, end, value):
    """(0 * NaN is NaN: one non-finite weight would spoil every point of the line.)"""
    good, bad = mlp(1), mlp(2)
    with torch.no_grad():
        bad[2].bias[1] = value
    pair = (bad, good) if end == "model_a" else (good, bad)
    with pytest.raises(ValueError, match=rf"^{end}: '2.bias' contains NaN or infinity"):
        if function == "interpolate":
            IMPLS[impl].interpolate(*pair, 0.5)
        else:
            IMPLS[impl].interpolation_curve(*pair, classification_data(20, 0), alphas=3)


@pytest.mark.parametrize("impl", IMPLS)
def test_a_non_finite_member_of_a_population_is_named(impl):
    models = [mlp(1), mlp(2), mlp(3)]
    with torch.no_grad():
        models[2][0].weight[0, 0] = float("inf")
    with pytest.raises(ValueError, match=r"^models\[2\]: '0.weight' contains NaN or infinity"):
        IMPLS[impl].pairwise_barriers(models, classification_data(20, 0), alphas=3)


@pytest.mark.parametrize("end", ["model_a", "model_b"])
@pytest.mark.parametrize("impl", IMPLS)
def test_an_endpoint_whose_outputs_overflow_is_refused_naming_it(impl, end):
    huge = mlp(1)
    with torch.no_grad():
        huge[0].weight.mul_(1e30)
        huge[2].weight.mul_(1e30)  # finite weights, outputs ~1e60: inf in float32
    pair = (huge, mlp(2)) if end == "model_a" else (mlp(2), huge)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(ValueError, match=rf"^{end} gives non-finite outputs or losses on data"):
            IMPLS[impl].interpolation_curve(*pair, classification_data(20, 0), alphas=3)


def _swap(model: nn.Module, index: int, module: nn.Module) -> nn.Module:
    model = copy.deepcopy(model)
    model[index] = module
    return model


VARIANTS = {
    "ReLU vs Tanh": (lambda m: _swap(m, 1, nn.Tanh()), r"module '1' is ReLU\(\) in model_a but Tanh\(\) in model_b"),
    "ReLU vs GELU": (lambda m: _swap(m, 1, nn.GELU()), "module '1' is ReLU"),
    "LeakyReLU slope": (lambda m: _swap(_swap(m, 1, nn.LeakyReLU(0.1)), 1, nn.LeakyReLU(0.2)),
                        r"LeakyReLU\(negative_slope=0.1\) in model_a but LeakyReLU\(negative_slope=0.2\)"),
    "extra Dropout": (lambda m: nn.Sequential(*m, nn.Dropout(0.5)), "module '3' is absent in model_a"),
}


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("function", ["interpolate", "interpolation_curve", "pairwise_barriers"])
@pytest.mark.parametrize("impl", IMPLS)
def test_same_parameters_different_forward_is_refused(impl, function, variant):
    change, message = VARIANTS[variant]
    a = mlp(1)
    if variant == "LeakyReLU slope":
        a, b = _swap(a, 1, nn.LeakyReLU(0.1)), change(mlp(2))
    else:
        b = change(mlp(2))
    api = IMPLS[impl]
    with pytest.raises(ValueError, match=message.replace("model_a", "models\\[0\\]").replace(
            "model_b", "models\\[1\\]") if function == "pairwise_barriers" else message):
        if function == "interpolate":
            api.interpolate(a, b, 0.5)
        elif function == "interpolation_curve":
            api.interpolation_curve(a, b, classification_data(20, 0), alphas=3)
        else:
            api.pairwise_barriers([a, b], classification_data(20, 0), alphas=3)


@pytest.mark.parametrize("impl", IMPLS)
def test_conv_stride_difference_is_refused(impl):
    a, b = cnn_batchnorm(1), cnn_batchnorm(2)
    b[0].stride = (2, 2)
    with pytest.raises(ValueError, match=r"module '0' is Conv2d\(.*stride=\(1, 1\).* but Conv2d\(.*stride=\(2, 2\)"):
        IMPLS[impl].interpolate(a, b, 0.5)


@pytest.mark.parametrize("impl", IMPLS)
def test_inplace_only_difference_is_accepted(impl):
    a, b = mlp(1), _swap(mlp(2), 1, nn.ReLU(inplace=True))
    curve = IMPLS[impl].interpolation_curve(a, b, classification_data(20, 0), alphas=3)
    assert np.isfinite(curve.loss).all()


DATA = classification_data(20, 0)
ARGUMENTS = [
    ("batch_size float", lambda: mmkern.interpolation_curve(mlp(1), mlp(2), DATA, batch_size=2.0),
     TypeError, "^batch_size must be an int"),
    ("batch_size 0", lambda: mmkern.interpolation_curve(mlp(1), mlp(2), DATA, batch_size=0),
     ValueError, "^batch_size must be >= 1"),
    ("batch_size bool", lambda: mmkern.pairwise_barriers([mlp(1), mlp(2)], DATA, batch_size=True),
     TypeError, "^batch_size must be an int"),
    ("reference batch_size float", lambda: reference.interpolation_curve(mlp(1), mlp(2), DATA, batch_size=2.0),
     TypeError, "^batch_size must be an int"),
    ("eval_batch_size str", lambda: mmkern.interpolation_curve(mlp(1), mlp(2), DATA, eval_batch_size="8"),
     TypeError, "^eval_batch_size must be an int"),
    ("memory_budget 0", lambda: mmkern.interpolation_curve(mlp(1), mlp(2), DATA, memory_budget=0),
     ValueError, "^memory_budget must be >= 1"),
    ("allow_tf32 str", lambda: mmkern.interpolation_curve(mlp(1), mlp(2), DATA, allow_tf32="yes"),
     TypeError, r"^allow_tf32 must be a bool \(True or False\)"),
    ("alphas nan", lambda: mmkern.interpolation_curve(mlp(1), mlp(2), DATA, alphas=[0.0, float("nan")]),
     ValueError, "^alphas must be finite"),
    ("alphas 1", lambda: mmkern.interpolation_curve(mlp(1), mlp(2), DATA, alphas=1),
     ValueError, "K >= 2"),
    ("alpha str", lambda: mmkern.interpolate(mlp(1), mlp(2), "0.5"), TypeError, "^alpha must be a real number"),
    ("float labels", lambda: mmkern.interpolation_curve(mlp(1), mlp(2), (DATA[0], DATA[1].float())),
     TypeError, "labels y must be integer class indices"),
    ("labels shape", lambda: mmkern.interpolation_curve(mlp(1), mlp(2), (DATA[0], DATA[1][:5])),
     ValueError, r"^data: y must have shape \(20,\)"),
    ("empty data", lambda: mmkern.interpolation_curve(mlp(1), mlp(2), (DATA[0][:0], DATA[1][:0])),
     ValueError, "^data is empty"),
    ("data a list of three", lambda: mmkern.interpolation_curve(mlp(1), mlp(2), [DATA[0], DATA[1], DATA[1]]),
     TypeError, "^data must be a torch DataLoader or an"),
    ("loader of triples", lambda: mmkern.interpolation_curve(
        mlp(1), mlp(2), DataLoader(TensorDataset(DATA[0], DATA[1], DATA[1]), batch_size=8)),
     TypeError, "every DataLoader batch must be an"),
    ("no bn_data", lambda: mmkern.interpolation_curve(cnn_batchnorm(1), cnn_batchnorm(2), image_data(8, 0)),
     ValueError, "give bn_data"),
    ("one model", lambda: mmkern.pairwise_barriers([mlp(1)], DATA), ValueError, "at least 2 models"),
    ("not a module", lambda: mmkern.interpolate(mlp(1), "mlp", 0.5), TypeError, "^model_b must be a torch"),
    ("inputs of the wrong shape", lambda: mmkern.interpolation_curve(mlp(1), mlp(2), (torch.zeros(4, 7), DATA[1][:4])),
     ValueError, r"^data: the model cannot run on inputs of shape \(4, 7\)"),
    ("reference inputs of the wrong shape", lambda: reference.interpolation_curve(
        mlp(1), mlp(2), {"ood": (torch.zeros(4, 7), DATA[1][:4])}),
     ValueError, r"^data\['ood'\]: the model cannot run on inputs of shape \(4, 7\)"),
    ("bn_data of the wrong shape", lambda: mmkern.interpolation_curve(
        cnn_batchnorm(1), cnn_batchnorm(2), image_data(8, 0), bn_data=(torch.zeros(8, 2, 6, 6), DATA[1][:8])),
     ValueError, r"^bn_data: the model cannot run on inputs of shape \(8, 2, 6, 6\)"),
    ("align data of the wrong shape", lambda: mmkern.align(mlp(1), mlp(2), "activations", (torch.zeros(4, 7), DATA[1][:4]),
                                                           example_input=DATA[0][:2]),
     ValueError, r"^data: the model cannot run on inputs of shape \(4, 7\)"),
    ("plane data of the wrong shape", lambda: mmkern.loss_plane([mlp(1), mlp(2), mlp(3)], (torch.zeros(4, 7), DATA[1][:4])),
     ValueError, r"^data: the model cannot run on inputs of shape \(4, 7\)"),
    ("lerp int arrays", lambda: mmkern.connectivity.lerp_many(np.zeros(3, int), np.zeros(3, int), [0.5]),
     TypeError, "float32 or float64"),
]


@pytest.mark.parametrize("case", ARGUMENTS, ids=[c[0] for c in ARGUMENTS])
def test_argument_errors(case):
    _, call, error, message = case
    with pytest.raises(error, match=message):
        call()
