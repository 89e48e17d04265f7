"""Hostile inputs to the predictive-multiplicity metrics: half-precision probabilities, logits
passed as probabilities, bad metric names and options, labels and shapes. Each case asserts the
exact outcome: the value, or the exception type and the argument its message names.
"""

from __future__ import annotations

import numpy as np
import pytest

import mmkern
from mmkern import reference as ref

pytest.importorskip("torch")
import torch  # noqa: E402

from mmkern._backend import torch_route  # noqa: E402


def _logits(seed: int, m: int = 3, n: int = 200, c: int = 10) -> torch.Tensor:
    return torch.randn((m, n, c), generator=torch.Generator().manual_seed(seed)) * 3


HALF = [torch.float16, torch.bfloat16]
FUNCTIONS = {
    "soft_disagreement_matrix": lambda p: mmkern.soft_disagreement_matrix(p),
    "rashomon_capacity": lambda p: mmkern.rashomon_capacity(p),
    "predictive_multiplicity": lambda p: mmkern.predictive_multiplicity(p).mean_disagreement,
}
#: The references take the values as given (no check of the row sums).
REFERENCES = {
    "soft_disagreement_matrix": lambda p: ref.soft_disagreement_matrix(p),
    "rashomon_capacity": lambda p: ref.rashomon_capacity(p),
    "predictive_multiplicity": lambda p: ref.predictive_multiplicity(p).mean_disagreement,
}


def _host(value):
    return value.double().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)


@pytest.mark.parametrize("route", ["host", "torch-route"])
@pytest.mark.parametrize("classes", [2, 10, 100])
@pytest.mark.parametrize("dtype", HALF, ids=["float16", "bfloat16"])
@pytest.mark.parametrize("name", FUNCTIONS)
def test_half_precision_softmax_outputs_are_accepted(name, dtype, classes, route):
    """A softmax rounded to float16 / bfloat16 sums to 1 only within its precision."""
    probs = torch.softmax(_logits(classes, c=classes), dim=-1).to(dtype)
    expected = REFERENCES[name](probs.double().numpy())  # the upcast values, used as given
    if route == "host":
        got = FUNCTIONS[name](probs)
    else:
        with torch_route():
            got = FUNCTIONS[name](probs)
    np.testing.assert_allclose(_host(got), _host(expected), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("route", ["host", "torch-route"])
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64],
                         ids=["float16", "bfloat16", "float32", "float64"])
def test_logits_as_probabilities_suggest_from_logits(dtype, route):
    logits = _logits(1).abs().to(dtype)  # non-negative, rows far from summing to 1
    name = str(dtype).replace("torch.", "")
    message = rf"^rows of probs must sum to 1 within .* for {name} input .*; pass from_logits=True"
    with pytest.raises(ValueError, match=message):
        if route == "host":
            mmkern.soft_disagreement_matrix(logits)
        else:
            with torch_route():
                mmkern.soft_disagreement_matrix(logits)


@pytest.mark.parametrize("off", [1.002e-2, 2e-2], ids=["1e-2", "2e-2"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_slightly_unnormalised_probabilities_suggest_renormalising(dtype, off):
    probs = np.full((2, 5, 4), 0.25 * (1 + off), dtype=dtype)
    with pytest.raises(ValueError, match=r"renormalise them \(p / p.sum\(-1, keepdims=True\)\)$"):
        mmkern.soft_disagreement_matrix(probs)


UNIFORM = np.full((2, 6, 3), 1 / 3)
ARGUMENTS = [
    ("metric list", lambda: mmkern.soft_disagreement_matrix(UNIFORM, ["tv"]), TypeError,
     "^metric must be a str, one of 'tv', 'js', 'hellinger', 'kl'; got list"),
    ("metric None", lambda: mmkern.soft_disagreement_matrix(UNIFORM, None), TypeError, "^metric must be a str"),
    ("metric int", lambda: mmkern.soft_disagreement_matrix(UNIFORM, 0), TypeError, "^metric must be a str"),
    ("metric dict", lambda: mmkern.soft_disagreement_matrix(UNIFORM, {"tv": 1}), TypeError,
     "^metric must be a str"),
    ("metric unknown", lambda: mmkern.soft_disagreement_matrix(UNIFORM, "l2"), ValueError,
     "^metric must be one of 'tv'"),
    ("metric case", lambda: mmkern.soft_disagreement_matrix(UNIFORM, "TV"), ValueError,
     "^metric must be one of"),
    ("tol str", lambda: mmkern.rashomon_capacity(UNIFORM, tol="1e-6"), TypeError, "^tol must be a real number"),
    ("tol bool", lambda: mmkern.rashomon_capacity(UNIFORM, tol=True), TypeError, "^tol must be a real number"),
    ("tol nan", lambda: mmkern.rashomon_capacity(UNIFORM, tol=float("nan")), ValueError, "^tol must be > 0"),
    ("tol 0", lambda: mmkern.rashomon_capacity(UNIFORM, tol=0.0), ValueError, "^tol must be > 0"),
    ("tol -1", lambda: mmkern.rashomon_capacity(UNIFORM, tol=-1), ValueError, "^tol must be > 0"),
    ("max_iter float", lambda: mmkern.rashomon_capacity(UNIFORM, max_iter=10.0), TypeError,
     "^max_iter must be an int"),
    ("max_iter 0", lambda: mmkern.rashomon_capacity(UNIFORM, max_iter=0), ValueError, "^max_iter must be >= 1"),
    ("ragged preds", lambda: mmkern.disagreement_matrix([[0, 1], [1]]), ValueError,
     "^preds is a ragged nested sequence"),
    ("ragged probs", lambda: mmkern.soft_disagreement_matrix([[[0.5, 0.5]], [[1.0]]]), ValueError,
     "^probs is a ragged nested sequence"),
    ("one model", lambda: mmkern.disagreement_matrix(np.zeros((1, 4), int)), ValueError, "preds"),
    ("1-D preds", lambda: mmkern.disagreement_matrix(np.zeros(4, int)), ValueError, "^preds must be"),
    ("NaN probs", lambda: mmkern.soft_disagreement_matrix(np.where(np.arange(36).reshape(2, 6, 3) == 4,
                                                                   np.nan, UNIFORM)),
     ValueError, r"^probs contains NaN or infinity \(1 entries\)"),
    ("negative probs", lambda: mmkern.soft_disagreement_matrix(UNIFORM - 0.5), ValueError,
     "^probs has 36 negative entries"),
    ("NaN logits", lambda: mmkern.soft_disagreement_matrix(np.full((2, 3, 2), np.nan), from_logits=True),
     ValueError, "^probs contains NaN or infinity"),
    ("int probs", lambda: mmkern.soft_disagreement_matrix(np.ones((2, 3, 2), int)), TypeError,
     "^probs must be a floating-point"),
    ("labels negative", lambda: mmkern.predictive_multiplicity(UNIFORM, np.array([0, 1, 2, -1, 0, 0])),
     ValueError, "^labels holds the label -1"),
    ("labels beyond classes", lambda: mmkern.predictive_multiplicity(UNIFORM, np.array([0, 1, 2, 3, 0, 0])),
     ValueError, r"^labels holds the label 3, outside the class range \[0, 3\)"),
    ("labels -100", lambda: mmkern.predictive_multiplicity(UNIFORM, np.full(6, -100)), ValueError,
     "^labels holds the label -100"),
    ("float labels", lambda: mmkern.predictive_multiplicity(UNIFORM, np.zeros(6)), TypeError,
     "^labels must hold integer class labels"),
    ("labels shape", lambda: mmkern.predictive_multiplicity(UNIFORM, np.zeros(5, int)), ValueError,
     r"^labels must have shape \(6,\)"),
    ("reference out of range", lambda: mmkern.predictive_multiplicity(UNIFORM, reference=2), ValueError,
     "reference"),
    ("meta probs", lambda: mmkern.soft_disagreement_matrix(torch.empty(2, 3, 2, device="meta")), ValueError,
     "^probs is a torch tensor on meta"),
    ("meta labels", lambda: mmkern.predictive_multiplicity(torch.full((2, 6, 3), 1 / 3),
                                                           torch.empty(6, dtype=torch.long, device="meta")),
     ValueError, "^labels is a torch tensor on meta"),
]


@pytest.mark.parametrize("case", ARGUMENTS, ids=[c[0] for c in ARGUMENTS])
def test_argument_errors(case):
    _, call, error, message = case
    with pytest.raises(error, match=message):
        call()
