"""Last-layer retraining (LLR), LPFT and the paper's presets: update rules against direct
computation, the frozen features, the settings of finetune_zoo."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn

from _train_helpers import TINY, state_equal, toy_dataset
from mmkern.train import TrainConfig, fine_tune, train_model
from mmkern.train.finetune import PRESETS
from mmkern.train.trainer import batch_bounds
from mmkern.train.zoo_finetune import NAMES, resolve_settings


@pytest.fixture(scope="module")
def trained():
    data = toy_dataset()
    model, _ = train_model(TrainConfig(**{**TINY, "epochs": 3}), data)
    return model, data


def _head(model) -> nn.Linear:
    return [m for m in model.modules() if isinstance(m, nn.Linear)][-1]


def _without_head(model) -> dict:
    head = {f"{name}.{p}" for name, m in model.named_modules() if m is _head(model) for p in ("weight", "bias")}
    return {k: v for k, v in model.state_dict().items() if k not in head}


def test_llr_leaves_the_features_bitwise_unchanged_and_is_seeded(trained):
    model, data = trained
    before = copy.deepcopy(model)
    tuned, record = fine_tune(model, data.train, method="llr", epochs=5, lr=0.1, batch_size=16, seed=2)
    again, _ = fine_tune(model, data.train, method="llr", epochs=5, lr=0.1, batch_size=16, seed=2)
    other, _ = fine_tune(model, data.train, method="llr", epochs=5, lr=0.1, batch_size=16, seed=3)
    assert state_equal(model, before)  # the original is not touched
    kept, base = _without_head(tuned), _without_head(model)
    assert kept.keys() == base.keys() and all(torch.equal(kept[k], base[k]) for k in kept)  # BN buffers too
    assert not torch.equal(_head(tuned).weight, _head(model).weight)
    assert state_equal(tuned, again) and not state_equal(tuned, other)
    assert record["method"] == "llr" and len(record["history"]) == 5
    assert record["history"][-1]["loss"] < record["history"][0]["loss"]


def test_llr_is_sgd_with_momentum_on_a_fresh_head_over_the_frozen_features(trained):
    """The update rule written out in float64: w <- w - lr_t b, b <- mu b + (g + wd w), with the
    head drawn U(-1/sqrt(d), 1/sqrt(d)) from the seed, and lr_t on a cosine from lr to 0."""
    model, data = trained
    lr, mu, wd, epochs, batch, seed = 0.2, 0.9, 1e-3, 3, 16, 5
    tuned, _ = fine_tune(model, data.train, method="llr", epochs=epochs, lr=lr, momentum=mu, weight_decay=wd,
                         batch_size=batch, seed=seed)
    head = _head(model)
    captured = []
    handle = head.register_forward_pre_hook(lambda m, args: captured.append(args[0].detach().clone()))
    model.eval()
    with torch.no_grad():
        model(torch.from_numpy(data.train.x))
    handle.remove()
    features = captured[0].double()
    y = torch.from_numpy(data.train.y)
    g = torch.Generator().manual_seed(seed)
    bound = 1 / math.sqrt(head.in_features)
    w = torch.empty(head.weight.shape).uniform_(-bound, bound, generator=g).double()
    b = torch.empty(head.bias.shape).uniform_(-bound, bound, generator=g).double()
    bounds = batch_bounds(len(y), batch)
    total, step, buf_w, buf_b = epochs * len(bounds), 0, None, None
    for _ in range(epochs):
        perm = torch.randperm(len(y), generator=g)
        for start, stop in bounds:
            idx = perm[start:stop]
            f, t = features[idx], y[idx]
            p = torch.softmax(f @ w.T + b, dim=1)
            p[torch.arange(len(t)), t] -= 1.0
            grad_w, grad_b = p.T @ f / len(t) + wd * w, p.sum(0) / len(t) + wd * b
            buf_w = grad_w if buf_w is None else mu * buf_w + grad_w
            buf_b = grad_b if buf_b is None else mu * buf_b + grad_b
            rate = lr * 0.5 * (1 + math.cos(math.pi * step / total))
            w, b, step = w - rate * buf_w, b - rate * buf_b, step + 1
    np.testing.assert_allclose(_head(tuned).weight.detach().double().numpy(), w.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(_head(tuned).bias.detach().double().numpy(), b.numpy(), rtol=1e-4, atol=1e-5)


def test_lpft_is_llr_then_fine_tuning_of_the_whole_model(trained):
    model, data = trained
    common = dict(batch_size=16, seed=1)
    llr, llr_record = fine_tune(model, data.train, method="llr", epochs=4, lr=0.1, momentum=0.9, weight_decay=0.0,
                                **common)
    lpft, record = fine_tune(model, data.train, method="lpft", probe_lr=0.1, probe_epochs=4, epochs=3, lr=0.02,
                             **common)
    assert record["probe_history"] == [{k: h[k] for k in ("epoch", "loss", "accuracy")}
                                       for h in llr_record["history"]]
    assert len(record["history"]) == 3 and record["probe_lr"] == 0.1 and record["probe_epochs"] == 4
    moved = _without_head(lpft)
    assert any(not torch.equal(moved[k], v) for k, v in _without_head(model).items())  # features tuned too


class _Scaled(nn.Module):
    """A classifier whose output is not its last Linear's."""

    def __init__(self, inputs: int):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(inputs, 8), nn.ReLU(), nn.Linear(8, 3))

    def forward(self, x):
        return 2.0 * self.body(x)


@pytest.mark.parametrize("method", ["llr", "lpft"])
def test_llr_needs_the_output_to_be_the_last_linear(trained, method):
    _, data = trained
    with pytest.raises(ValueError, match="output is not that layer's output"):
        fine_tune(_Scaled(int(np.prod(data.input_shape))), data.train, method=method, epochs=1)
    with pytest.raises(ValueError, match="has none"):
        fine_tune(nn.Sequential(nn.Flatten(), nn.ReLU()), data.train, method=method, epochs=1)


@pytest.mark.parametrize("name", list(PRESETS))
def test_every_preset_runs_as_its_method(trained, name):
    model, data = trained
    preset = {**PRESETS[name], "epochs": 1, "batch_size": 32}
    if "probe_epochs" in preset:
        preset.update(probe_epochs=2, probe_lr=0.1)
    if preset["method"] == "llr":
        preset["lr"] = 0.1
    cue = {"cue_data": data.train} if preset["method"] == "cbft" else {}
    _, record = fine_tune(model, data.train, **preset, **cue)
    assert record["method"] == PRESETS[name]["method"] and record["lr"] == preset["lr"]


def test_the_presets_hold_the_papers_settings():
    for name, lr in (("ftm", 0.01), ("fts", 0.001), ("ftl", 0.1)):
        assert PRESETS[name] == {"method": "naive", "epochs": 20, "batch_size": 256, "momentum": 0.9,
                                 "weight_decay": 1e-4, "lr": lr}
    assert PRESETS["llr"] == {"method": "llr", "epochs": 200, "batch_size": 256, "lr": 30.0, "momentum": 0.9,
                              "weight_decay": 0.0}


def test_zoo_settings_resolve_presets_and_overrides():
    assert resolve_settings("fts") == {"method": "naive", "preset": "fts", "epochs": 20, "lr": 0.001,
                                       "batch_size": 256, "momentum": 0.9, "weight_decay": 1e-4}
    assert resolve_settings("fts", lr=0.002, epochs=3)["lr"] == 0.002
    assert resolve_settings("lpft")["probe_lr"] == 0.1 and "margin" not in resolve_settings("lpft")
    assert set(NAMES) == {"naive", "llr", "lpft", "cbft", "ftm", "fts", "ftl"}
    with pytest.raises(ValueError, match="margin do not apply to method 'naive'"):
        resolve_settings("ftm", margin=2.0)
    with pytest.raises(ValueError, match="method must be one of"):
        resolve_settings("sgd")
    with pytest.raises(ValueError, match="probe_lr"):
        resolve_settings("lpft", probe_lr=-1.0)


def test_paths_are_evaluated_on_one_fixed_subset_of_each_large_set():
    from mmkern.data import load_dataset
    from mmkern.train.zoo_finetune import BN_SAMPLES, PATH_SAMPLES, path_sets

    cued = load_dataset("mnist5k", spurious=1.0)  # 1,000 test images in each set
    sets, (bn_x, _) = path_sets(cued)
    assert set(sets) == {"test", "cue-none", "cue", "cue-random", "image-random"}
    rows = {row.tobytes(): i for i, row in enumerate(np.asarray(cued.test.x).reshape(len(cued.test), -1))}
    keep = [rows[row.tobytes()] for row in sets["test"][0].numpy().reshape(PATH_SAMPLES, -1)]
    assert keep == sorted(set(keep))  # distinct test images, in the sets' order
    for name, (x, y) in sets.items():  # the same images in every set
        full = cued.test if name == "test" else cued.ood[name]
        assert len(y) == PATH_SAMPLES < len(full)
        assert np.array_equal(x.numpy(), np.asarray(full.x)[keep])
        assert np.array_equal(y.numpy(), np.asarray(full.y)[keep])
    assert bn_x.shape[0] == BN_SAMPLES
    small = load_dataset("digits", spurious=1.0)  # 360 test images: all of them
    sets, _ = path_sets(small)
    assert np.array_equal(sets["cue"][0].numpy(), np.asarray(small.ood["cue"].x))
