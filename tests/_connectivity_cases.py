"""Connectivity test cases shared by the reference and the fast-path tests.

The model zoo of :mod:`_models` by case name (the ``setup`` fixture of conftest.py), a direct
computation of a model's own metrics, the barrier definitions, and the two implementations
(the ``impl`` fixture).
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch.nn import functional as F

import mmkern.connectivity as fast
import mmkern.reference.connectivity as conn
from _models import (
    classification_data,
    cnn_batchnorm,
    cnn_layer_group_norm,
    image_data,
    mlp,
    mlp_batchnorm_dropout,
    mlp_dropout,
)


#: The connectivity modules under test, by the ids of the ``impl`` fixture (conftest.py).
IMPLEMENTATIONS = {"reference": conn, "mmkern": fast}


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


def make_setup(name: str):
    """(model_a, model_b, data, bn_data) of one MODELS case (the ``setup`` fixture)."""
    build, make_data, needs_bn = MODELS[name]
    model_a, model_b = build(1), build(2)
    data = make_data(70, seed=10)
    bn_data = make_data(50, seed=11) if needs_bn else None
    return model_a, model_b, data, bn_data


def entries(model):
    return dict(list(model.named_parameters()) + list(model.named_buffers()))


def own_metrics(model, data, bn_data, batch_size=conn.BN_BATCH_SIZE):
    """A model's own loss and accuracy, computed directly (BN re-estimated on a copy)."""
    model = copy.deepcopy(model)
    if bn_data is not None:
        conn.reset_and_estimate_batchnorm(model, bn_data, batch_size)
    model.eval()
    x, y = data
    with torch.no_grad():
        logits = model(x)
    loss = F.cross_entropy(logits.double(), y).item()
    return loss, (logits.argmax(1) == y).double().mean().item()


def barriers_by_definition(alphas, values):
    v0, v1 = values[alphas == 0][0], values[alphas == 1][0]
    chord = np.max(values - ((1 - alphas) * v0 + alphas * v1))
    return chord, np.max(values) - (v0 + v1) / 2


